BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 20250901_consciousness_turn_meta

CREATE TABLE consciousness_turn_meta (
    id UUID NOT NULL, 
    user_id VARCHAR(128) NOT NULL, 
    session_id VARCHAR(128), 
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
    orchestrator VARCHAR(32) NOT NULL, 
    orchestrator_mode VARCHAR(16) NOT NULL, 
    element VARCHAR(16), 
    metadata JSONB NOT NULL, 
    resonance JSONB NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX idx_ctm_user_created ON consciousness_turn_meta (user_id, created_at DESC);

CREATE INDEX idx_ctm_top_resonance ON consciousness_turn_meta ((resonance ->> 'top'));

INSERT INTO alembic_version (version_num) VALUES ('20250901_consciousness_turn_meta') RETURNING alembic_version.version_num;

COMMIT;

