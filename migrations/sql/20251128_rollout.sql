BEGIN;

-- Running upgrade 20251127_voice -> 20251128_rollout

CREATE TABLE flag_changes (
    id SERIAL NOT NULL, 
    at TIMESTAMP WITH TIME ZONE NOT NULL, 
    key VARCHAR(64) NOT NULL, 
    value JSONB, 
    actor VARCHAR(128) NOT NULL, 
    reason VARCHAR(500) NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX ix_flag_changes_at ON flag_changes (at);

CREATE TABLE alert_state (
    name VARCHAR(64) NOT NULL, 
    state VARCHAR(16) NOT NULL, 
    since TIMESTAMP WITH TIME ZONE NOT NULL, 
    value FLOAT, 
    evaluated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (name)
);

CREATE TABLE alert_events (
    id SERIAL NOT NULL, 
    at TIMESTAMP WITH TIME ZONE NOT NULL, 
    name VARCHAR(64) NOT NULL, 
    from_state VARCHAR(16) NOT NULL, 
    to_state VARCHAR(16) NOT NULL, 
    value FLOAT, 
    summary VARCHAR(500) NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX ix_alert_events_at ON alert_events (at);

UPDATE alembic_version SET version_num='20251128_rollout' WHERE alembic_version.version_num = '20251127_voice';

COMMIT;

