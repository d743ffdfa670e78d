"""The built-in plugins: orchestrators, generators and guardrails, using only the public hooks."""
