BEGIN;

-- Running upgrade 20251128_rollout -> 20251129_turn_time_index

COMMIT;

CREATE INDEX CONCURRENTLY idx_ctm_created ON consciousness_turn_meta (created_at);

BEGIN;

UPDATE alembic_version SET version_num='20251129_turn_time_index' WHERE alembic_version.version_num = '20251128_rollout';

COMMIT;

