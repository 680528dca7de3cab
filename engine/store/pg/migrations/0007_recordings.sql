-- 0007: the recordings index (docs/recordings.md). One row per recording; the audio itself is an
-- encrypted file in the engine's store directory. wrapped_key is the file's data key wrapped by
-- the KEK named key_id: setting it to NULL (a delete) makes the audio unreadable for good.
CREATE TABLE IF NOT EXISTS recordings (
    recording_id    uuid        PRIMARY KEY,
    call_id         text        NOT NULL,
    switch          text        NOT NULL,
    agent_id        text,
    queue           text,
    campaign        text,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    duration_s      double precision,
    channels        text        NOT NULL CHECK (channels IN ('mono', 'dual')),
    pause_mode      text        NOT NULL CHECK (pause_mode IN ('silence', 'gap')),
    sample_rate     integer,
    state           text        NOT NULL
        CHECK (state IN ('recording', 'paused', 'finishing', 'ready', 'deleted', 'failed')),
    key_id          text,
    wrapped_key     bytea,
    size            bigint,
    encrypted_size  bigint,
    sha256          text,
    file            text,
    legal_hold      boolean     NOT NULL DEFAULT false,
    retention_days  integer     NOT NULL DEFAULT 0,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX IF NOT EXISTS recordings_started_idx ON recordings (started_at DESC, recording_id DESC);
CREATE INDEX IF NOT EXISTS recordings_call_idx ON recordings (call_id);
-- The sweeper's walk: ready rows whose retention ran out, legal holds excluded.
CREATE INDEX IF NOT EXISTS recordings_retention_idx ON recordings (ended_at)
    WHERE state = 'ready' AND NOT legal_hold AND retention_days > 0;
CREATE INDEX IF NOT EXISTS recordings_key_idx ON recordings (key_id) WHERE wrapped_key IS NOT NULL;
