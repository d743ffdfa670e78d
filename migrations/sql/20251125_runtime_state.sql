BEGIN;

-- Running upgrade 20250901_consciousness_turn_meta -> 20251125_runtime_state

CREATE TABLE runtime_flags (
    key VARCHAR(64) NOT NULL, 
    value JSONB, 
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    updated_by VARCHAR(128) NOT NULL, 
    reason VARCHAR(500) NOT NULL, 
    PRIMARY KEY (key)
);

CREATE TABLE service_mode (
    name VARCHAR(32) NOT NULL, 
    mode VARCHAR(16) NOT NULL, 
    reason VARCHAR(500) NOT NULL, 
    since TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (name)
);

CREATE TABLE mode_transitions (
    id SERIAL NOT NULL, 
    at TIMESTAMP WITH TIME ZONE NOT NULL, 
    from_mode VARCHAR(16) NOT NULL, 
    to_mode VARCHAR(16) NOT NULL, 
    reason VARCHAR(500) NOT NULL, 
    actor VARCHAR(128) NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX ix_mode_transitions_at ON mode_transitions (at);

CREATE TABLE leases (
    name VARCHAR(64) NOT NULL, 
    holder VARCHAR(128) NOT NULL, 
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (name)
);

UPDATE alembic_version SET version_num='20251125_runtime_state' WHERE alembic_version.version_num = '20250901_consciousness_turn_meta';

COMMIT;

