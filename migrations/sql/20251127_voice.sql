BEGIN;

-- Running upgrade 20251126_feedback -> 20251127_voice

CREATE TABLE voice_jobs (
    id UUID NOT NULL, 
    user_id VARCHAR(128) NOT NULL, 
    turn_id UUID, 
    status VARCHAR(16) NOT NULL, 
    backend VARCHAR(64) NOT NULL, 
    preset VARCHAR(32) NOT NULL, 
    text TEXT NOT NULL, 
    chars INTEGER NOT NULL, 
    memo_key VARCHAR(64) NOT NULL, 
    memo_hit BOOLEAN NOT NULL, 
    attempts INTEGER NOT NULL, 
    claimed_by VARCHAR(64), 
    lease_until TIMESTAMP WITH TIME ZONE, 
    enqueued_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    started_at TIMESTAMP WITH TIME ZONE, 
    finished_at TIMESTAMP WITH TIME ZONE, 
    queue_age_ms INTEGER, 
    cost_usd FLOAT, 
    error VARCHAR(500), 
    PRIMARY KEY (id)
);

CREATE INDEX idx_voice_jobs_status_enqueued ON voice_jobs (status, enqueued_at);

CREATE INDEX idx_voice_jobs_started ON voice_jobs (started_at);

CREATE INDEX idx_voice_jobs_finished ON voice_jobs (finished_at);

CREATE INDEX idx_voice_jobs_created ON voice_jobs (created_at);

CREATE TABLE voice_audio (
    key VARCHAR(64) NOT NULL, 
    backend VARCHAR(64) NOT NULL, 
    preset VARCHAR(32) NOT NULL, 
    content_type VARCHAR(64) NOT NULL, 
    audio BYTEA NOT NULL, 
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
    PRIMARY KEY (key)
);

CREATE INDEX idx_voice_audio_created ON voice_audio (created_at);

CREATE TABLE voice_usage (
    user_id VARCHAR(128) NOT NULL, 
    day DATE NOT NULL, 
    chars INTEGER NOT NULL, 
    PRIMARY KEY (user_id, day)
);

UPDATE alembic_version SET version_num='20251127_voice' WHERE alembic_version.version_num = '20251126_feedback';

COMMIT;

