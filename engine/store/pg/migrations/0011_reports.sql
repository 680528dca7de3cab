-- 0011: KPI reports (docs/reports.md): 15-minute interval tables per queue, agent, campaign and
-- trunk, the columns the KPIs need that the raw rows lacked, and the dirty-bucket queue that
-- keeps the intervals filled as calls end.
--
-- The intervals hold sums only (counts, seconds), never ratios, so any longer interval (an
-- hour, a day, 30 days) is the sum of its 15-minute rows and every rate is computed from
-- those sums at read time (engine/reports/kpi.py).
--
-- Filling: triggers on the raw tables mark the (dimension, key, bucket) a written row
-- changes, in the writer's own transaction (the outbox lanes' sinks: never the call path);
-- the engine's refresher recomputes the marked buckets from the raw rows with the same SQL
-- the rebuild runs over a whole range (engine/reports/fill.py), so the two cannot disagree.

-- Post-dial delay needs the first ringing (180/183) of the leg.
ALTER TABLE cdr ADD COLUMN ringing_at timestamptz;
-- AHT needs the wrap-up after the call; A/B results need the routing strategy that placed it.
ALTER TABLE queue_entries ADD COLUMN wrap_up_s double precision CHECK (wrap_up_s >= 0);
ALTER TABLE queue_entries ADD COLUMN strategy text;

-- The 15-minute bucket of a time (UTC, aligned on the epoch). Immutable: usable in indexes.
CREATE FUNCTION report_bucket(ts timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_bin('15 minutes', ts, timestamptz '2000-01-01 00:00:00+00');

CREATE TABLE report_queue_intervals (
    queue               text COLLATE "C" NOT NULL,
    bucket              timestamptz      NOT NULL,
    offered             integer          NOT NULL,
    answered            integer          NOT NULL,
    abandoned           integer          NOT NULL,  -- after the short-abandon threshold
    short_abandoned     integer          NOT NULL,  -- before it: in neither rate
    overflowed          integer          NOT NULL,  -- left to an IVR flow or by max-wait
    answered_in_sl      integer          NOT NULL,
    wait_answered_s     double precision NOT NULL,
    wait_abandoned_s    double precision NOT NULL,
    handled             integer          NOT NULL,  -- answered and wrap-up over
    talk_s              double precision NOT NULL,  -- of the handled calls
    wrap_up_s           double precision NOT NULL,  -- of the handled calls
    max_wait_s          double precision NOT NULL,
    PRIMARY KEY (bucket, queue)
);

CREATE TABLE report_agent_intervals (
    agent_id            text COLLATE "C" NOT NULL,
    bucket              timestamptz      NOT NULL,
    available_s         double precision NOT NULL,
    reserved_s          double precision NOT NULL,
    on_call_s           double precision NOT NULL,
    wrap_up_s           double precision NOT NULL,
    paused_s            double precision NOT NULL,
    answered            integer          NOT NULL,  -- calls it answered in the bucket
    talk_s              double precision NOT NULL,  -- their talk time
    PRIMARY KEY (bucket, agent_id)
);

CREATE TABLE report_campaign_intervals (
    campaign_id         text COLLATE "C" NOT NULL,
    bucket              timestamptz      NOT NULL,
    dials               integer          NOT NULL,
    answered            integer          NOT NULL,
    human               integer          NOT NULL,  -- live answers (abandoned ones included)
    machine             integer          NOT NULL,
    abandoned           integer          NOT NULL,
    connected           integer          NOT NULL,  -- reached an agent
    PRIMARY KEY (bucket, campaign_id)
);

CREATE TABLE report_campaign_dispositions (
    campaign_id         text COLLATE "C" NOT NULL,
    bucket              timestamptz      NOT NULL,
    disposition         text COLLATE "C" NOT NULL,
    calls               integer          NOT NULL,
    PRIMARY KEY (bucket, campaign_id, disposition)
);

CREATE TABLE report_trunk_intervals (
    trunk               text COLLATE "C" NOT NULL,
    bucket              timestamptz      NOT NULL,
    seizures            integer          NOT NULL,
    answered            integer          NOT NULL,
    pdd_calls           integer          NOT NULL,  -- legs that rang or answered
    pdd_s               double precision NOT NULL,
    billsec_s           double precision NOT NULL,
    PRIMARY KEY (bucket, trunk)
);

-- The same sums per UTC day, recomputed from the 15-minute rows whenever those change: a
-- long report reads 96 times fewer rows (a 30-day agent report: 6,000 instead of 576,000).
CREATE TABLE report_queue_days (LIKE report_queue_intervals INCLUDING ALL);
CREATE TABLE report_agent_days (LIKE report_agent_intervals INCLUDING ALL);
CREATE TABLE report_campaign_days (LIKE report_campaign_intervals INCLUDING ALL);
CREATE TABLE report_campaign_disposition_days (LIKE report_campaign_dispositions INCLUDING ALL);
CREATE TABLE report_trunk_days (LIKE report_trunk_intervals INCLUDING ALL);

-- Buckets to recompute: marked by the triggers below, taken by the refresher.
CREATE TABLE report_dirty (
    dim     text COLLATE "C" NOT NULL CHECK (dim IN ('queue', 'agent', 'campaign', 'trunk')),
    key     text COLLATE "C" NOT NULL,
    bucket  timestamptz      NOT NULL,
    PRIMARY KEY (dim, bucket, key)
);

-- Raw-row indexes the fill reads by (key, time) or by time over every key.
CREATE INDEX cdr_started_idx ON cdr (started_at) WHERE trunk IS NOT NULL;
CREATE INDEX queue_entries_entered_idx ON queue_entries (entered_at);
CREATE INDEX queue_entries_agent_answered_idx ON queue_entries (agent_id, answered_at)
    WHERE answered_at IS NOT NULL;
CREATE INDEX agent_state_history_at_idx ON agent_state_history (at);
CREATE INDEX campaign_attempts_created_idx ON campaign_attempts (created_at);

-- Statement-level triggers with transition tables: one INSERT ... SELECT per statement,
-- whatever the number of rows (a COPY of a million rows marks its buckets once).
CREATE FUNCTION report_mark_cdr() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_dirty (dim, key, bucket)
    SELECT DISTINCT 'trunk', n.trunk, report_bucket(n.started_at) FROM new_rows n
    WHERE n.trunk IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_mark_cdr AFTER INSERT ON cdr
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_mark_cdr();

CREATE FUNCTION report_mark_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_dirty (dim, key, bucket)
    SELECT DISTINCT 'queue', n.queue, report_bucket(n.entered_at) FROM new_rows n
    UNION
    SELECT DISTINCT 'agent', n.agent_id, report_bucket(n.answered_at) FROM new_rows n
    WHERE n.agent_id IS NOT NULL AND n.answered_at IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_mark_entries_ins AFTER INSERT ON queue_entries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_mark_entries();
CREATE TRIGGER report_mark_entries_upd AFTER UPDATE ON queue_entries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_mark_entries();

-- A state change at `at` closes the previous state, which ran for time_in_previous_s before
-- it: every bucket that span touches changes.
CREATE FUNCTION report_mark_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_dirty (dim, key, bucket)
    SELECT DISTINCT 'agent', n.agent_id, b
    FROM new_rows n
    CROSS JOIN LATERAL generate_series(
        report_bucket(n.at - n.time_in_previous_s * interval '1 second'),
        report_bucket(n.at), interval '15 minutes') AS b
    WHERE n.previous NOT IN ('logged_out') AND n.time_in_previous_s > 0
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_mark_states AFTER INSERT ON agent_state_history
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_mark_states();

CREATE FUNCTION report_mark_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_dirty (dim, key, bucket)
    SELECT DISTINCT 'campaign', n.campaign_id, report_bucket(n.created_at) FROM new_rows n
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_mark_attempts_ins AFTER INSERT ON campaign_attempts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_mark_attempts();
CREATE TRIGGER report_mark_attempts_upd AFTER UPDATE ON campaign_attempts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_mark_attempts();
