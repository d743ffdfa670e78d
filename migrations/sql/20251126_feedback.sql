BEGIN;

-- Running upgrade 20251125_runtime_state -> 20251126_feedback

CREATE TABLE feedback (
    id UUID NOT NULL, 
    user_id VARCHAR(128) NOT NULL, 
    turn_id UUID NOT NULL, 
    sentiment INTEGER NOT NULL, 
    rating INTEGER NOT NULL, 
    accepted_challenge BOOLEAN, 
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, 
    PRIMARY KEY (id)
);

CREATE INDEX idx_feedback_user_created ON feedback (user_id, created_at DESC);

CREATE UNIQUE INDEX idx_feedback_turn ON feedback (turn_id);

UPDATE alembic_version SET version_num='20251126_feedback' WHERE alembic_version.version_num = '20251125_runtime_state';

COMMIT;

