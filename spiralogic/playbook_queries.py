"""The launch playbook's four monitoring queries, verbatim, for PostgreSQL.

Operators paste these into psql; the service and its tests run the very same
text, so the table must keep answering them unchanged.
"""

LATENCY_DISTRIBUTION = """SELECT 
  date_trunc('minute', created_at) as minute,
  percentile_disc(0.5) WITHIN GROUP (ORDER BY (metadata->>'latencyMs')::int) as p50,
  percentile_disc(0.95) WITHIN GROUP (ORDER BY (metadata->>'latencyMs')::int) as p95,
  percentile_disc(0.99) WITHIN GROUP (ORDER BY (metadata->>'latencyMs')::int) as p99
FROM consciousness_turn_meta
WHERE created_at > NOW() - INTERVAL '2 hours'
GROUP BY 1 ORDER BY 1;"""

MODE_DISTRIBUTION = """SELECT 
  orchestrator_mode as mode, 
  COUNT(*) as count,
  ROUND(COUNT(*) * 100.0 / SUM(COUNT(*)) OVER (), 2) as percentage
FROM consciousness_turn_meta
WHERE created_at > NOW() - INTERVAL '1 day'
GROUP BY 1 ORDER BY 2 DESC;"""

CACHE_HIT_RATIO = """SELECT
  DATE_TRUNC('hour', created_at) as hour,
  COUNT(*) FILTER (WHERE resonance ? 'cache_hit') * 1.0 / COUNT(*) as cache_hit_ratio
FROM consciousness_turn_meta
WHERE created_at > NOW() - INTERVAL '24 hours'
GROUP BY 1 ORDER BY 1;"""

ERROR_RATE = """SELECT
  DATE_TRUNC('minute', created_at) as minute,
  COUNT(*) FILTER (WHERE resonance ? 'error')::float / COUNT(*) as error_rate
FROM consciousness_turn_meta
WHERE created_at > NOW() - INTERVAL '1 hour'
GROUP BY 1 ORDER BY 1;"""

PLAYBOOK_QUERIES = {
    "latency": LATENCY_DISTRIBUTION,
    "modes": MODE_DISTRIBUTION,
    "cache_hit_ratio": CACHE_HIT_RATIO,
    "error_rate": ERROR_RATE,
}
