-- 0012: supervisor controls (issue 14 item 4, docs/supervisor.md). An agent's queue roster
-- after a supervisor's move: one row per agent, the newest move wins (engine/acd/history.py
-- writes it through the "acd" outbox lane; a re-delivered older row changes nothing). No row:
-- the agent serves every queue its skills fit, as configured. Who moved it and why is in the
-- audit trail (audit_log) as well.
CREATE TABLE agent_queue_membership (
    agent_id    text COLLATE "C" PRIMARY KEY CHECK (agent_id <> ''),
    queues      text[]           NOT NULL,
    changed_at  timestamptz      NOT NULL,
    actor       text             NOT NULL DEFAULT ''
);
