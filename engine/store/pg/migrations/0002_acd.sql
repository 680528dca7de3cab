-- 0002: the ACD's history (engine/acd/history.py writes it through the "acd"
-- outbox lane). Rows are written at least once: every insert is idempotent on
-- its natural key, and a queue entry row is replaced by a newer snapshot of
-- the same entry only (the lane delivers in order).

-- One row per agent login session.
CREATE TABLE agent_sessions (
    session_id  text COLLATE "C" PRIMARY KEY CHECK (session_id <> ''),
    agent_id    text COLLATE "C" NOT NULL,
    started_at  timestamptz      NOT NULL,
    ended_at    timestamptz,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX agent_sessions_agent_idx ON agent_sessions (agent_id, started_at DESC);

-- Every agent state change (AgentStateChanged), in order per agent.
CREATE TABLE agent_state_history (
    change_id            text COLLATE "C" PRIMARY KEY,
    agent_id             text COLLATE "C" NOT NULL,
    session_id           text COLLATE "C",
    at                   timestamptz      NOT NULL,
    state                text             NOT NULL CHECK (state IN
                             ('logged_out', 'available', 'reserved', 'on_call', 'wrap_up', 'paused')),
    previous             text             NOT NULL,
    pause_reason         text,
    call_id              text,
    queue                text,
    time_in_previous_s   double precision NOT NULL CHECK (time_in_previous_s >= 0)
);
CREATE INDEX agent_state_history_agent_idx ON agent_state_history (agent_id, at);

-- One row per stay of a caller in a queue, with its outcome and timings, so
-- every KPI can be recomputed from history (docs/acd.md "KPIs").
CREATE TABLE queue_entries (
    entry_id        text COLLATE "C" PRIMARY KEY,
    call_id         text COLLATE "C" NOT NULL,
    queue           text             NOT NULL,
    priority        integer          NOT NULL,
    tags            jsonb            NOT NULL DEFAULT '[]'::jsonb,
    intent          text,
    entered_at      timestamptz      NOT NULL,
    first_offer_at  timestamptz,
    answered_at     timestamptz,
    ended_at        timestamptz,
    -- waiting | ringing | connected | answered | abandoned | overflow-ivr | max-wait | interrupted
    outcome         text             NOT NULL,
    agent_id        text,
    offers          integer          NOT NULL DEFAULT 0,
    missed          integer          NOT NULL DEFAULT 0,
    overflow_stage  integer          NOT NULL DEFAULT 0,
    exit_flow       text,
    wait_s          double precision,
    talk_s          double precision,
    requeued_from   text,
    version         integer          NOT NULL DEFAULT 0,
    CHECK (ended_at IS NULL OR ended_at >= entered_at)
);
CREATE INDEX queue_entries_queue_idx ON queue_entries (queue, entered_at DESC);
CREATE INDEX queue_entries_call_idx ON queue_entries (call_id);
