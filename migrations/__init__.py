"""Alembic migrations for the service's tables (installed as ``spiralogic_migrations``)."""
