-- 0008: API tokens with roles, and the append-only, hash-chained audit log (docs/security.md).

-- Tokens created through the API (engine.toml's tokens are bootstrap admins and are not
-- stored). Only a SHA-256 of the token is kept: the token itself is 256 random bits, shown once.
CREATE TABLE api_tokens (
    token_id    text COLLATE "C" PRIMARY KEY CHECK (token_id ~ '^tok_[0-9a-f]{16}$'),
    hash        bytea       NOT NULL UNIQUE CHECK (length(hash) = 32),
    label       text        NOT NULL CHECK (label <> ''),
    role        text        NOT NULL
                CHECK (role IN ('admin', 'supervisor', 'agent', 'integration', 'auditor')),
    -- The agent role is bound to one agent id; no other role has one.
    agent_id    text,
    rate_per_s  double precision CHECK (rate_per_s > 0),
    rate_burst  integer     CHECK (rate_burst >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz,
    CHECK ((role = 'agent') = (agent_id IS NOT NULL))
);

-- The audit log of 0001 gains who/role/source/result, an idempotency key (the outbox may
-- deliver a row twice after a crash) and the hash chain.
ALTER TABLE audit_log
    ADD COLUMN event_id  text COLLATE "C",
    ADD COLUMN role      text NOT NULL DEFAULT '',
    ADD COLUMN source_ip text NOT NULL DEFAULT '',
    ADD COLUMN result    text NOT NULL DEFAULT '',
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash      bytea;
CREATE UNIQUE INDEX audit_log_event_id_idx ON audit_log (event_id);
-- Rows written before 0008 (none in production: nothing wrote the table) stay unchained;
-- every new row must carry its chain (NOT VALID: checked for new rows only).
ALTER TABLE audit_log
    ADD CONSTRAINT audit_log_chained
    CHECK (hash IS NOT NULL AND prev_hash IS NOT NULL AND event_id IS NOT NULL) NOT VALID;

-- Append-only: UPDATE, DELETE and TRUNCATE are refused for everyone, the engine included.
-- A superuser can still disable the trigger; the hash chain (python -m engine audit verify)
-- is what shows such an edit afterwards.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
