-- 0001: call detail records and the audit log.
-- Applied once by engine.store.pg.migrations inside a transaction; never edit
-- after release (the checksum is recorded), add 0002_... instead.

-- One row per call leg attempt. (call_id, attempt) is the natural key: the
-- engine may write the same CDR twice (retry after a lost reply, or a resync
-- after a switch reconnect), and the second write must be a no-op.
CREATE TABLE cdr (
    -- COLLATE "C": ids are opaque; byte order keeps keyset pagination
    -- identical on every server regardless of its default locale.
    call_id        text COLLATE "C" NOT NULL CHECK (call_id <> ''),
    attempt        integer          NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    switch         text             NOT NULL,
    direction      text             NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    channel        text             NOT NULL,
    caller_id_num  text             NOT NULL DEFAULT '',
    caller_id_name text             NOT NULL DEFAULT '',
    destination    text             NOT NULL,
    endpoint       text,
    trunk          text,
    started_at     timestamptz      NOT NULL,
    answered_at    timestamptz,
    ended_at       timestamptz      NOT NULL,
    -- Derived, so they can never disagree with the timestamps.
    duration_s     double precision GENERATED ALWAYS AS
                       (extract(epoch FROM (ended_at - started_at))::double precision) STORED,
    billsec_s      double precision GENERATED ALWAYS AS
                       (coalesce(extract(epoch FROM (ended_at - answered_at))::double precision, 0))
                       STORED,
    final_state    text             NOT NULL,
    cause          integer          CHECK (cause BETWEEN 0 AND 127),  -- Q.850
    cause_text     text             NOT NULL DEFAULT '',
    sip_code       integer          CHECK (sip_code BETWEEN 100 AND 699),
    variables      jsonb            NOT NULL DEFAULT '{}'::jsonb
                       CHECK (jsonb_typeof(variables) = 'object'),
    -- True when the engine lost the switch link mid-call and closed this CDR
    -- from the post-reconnect resync; timings are then approximate.
    interrupted    boolean          NOT NULL DEFAULT false,
    inserted_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, attempt),
    CHECK (ended_at >= started_at),
    CHECK (answered_at IS NULL OR (answered_at >= started_at AND answered_at <= ended_at))
);

-- Newest-first listing with keyset pagination (started_at, call_id, attempt).
CREATE INDEX cdr_recent_idx ON cdr (started_at DESC, call_id DESC, attempt DESC);
CREATE INDEX cdr_trunk_idx ON cdr (trunk, started_at DESC) WHERE trunk IS NOT NULL;

-- Who did what through the control API (originate, hangup, config reload...).
CREATE TABLE audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target      text        NOT NULL DEFAULT '',
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
