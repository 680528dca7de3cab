-- 0018: a campaign report interval counts an attempt as GET /v1/campaigns/{id}/stats and the
-- runner's abandon baseline count a period (engine/campaigns/period.py; docs/reports.md
-- "Definitions"): its dial in the bucket it was placed in, all that follows an answer (live
-- answers, machines, abandons, connections, dispositions) in the bucket of the answer, as the
-- pacing simulator books live answers and abandons. It counted everything by the dial.
--
-- The answer moment, one definition read by the stats' query, the reports' fill and the
-- trigger below: the answer time, or the end when no answer time was recorded, held between
-- the dial and an hour after it (an attempt rings for ring_timeout_s <= 120 s; the bounds only
-- matter for a row without an answer time, or for a clock skew between the engine that stamps
-- the answer and the database that stamps the dial). NULL while the attempt has neither.
-- A function of the row alone: every span is additive, and the attempts answered in a span
-- were created from an hour before it until its end (the created_at indexes find them).
CREATE FUNCTION campaign_answer_at(created timestamptz, answered timestamptz, ended timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN coalesce(answered, ended) IS NOT NULL
    THEN least(greatest(coalesce(answered, ended), created), created + interval '1 hour') END;

-- A written attempt changes its dial bucket and its answer bucket (0011 marked the first only);
-- an update may also move the answer out of a bucket (the old row's answer bucket).
CREATE OR REPLACE FUNCTION report_mark_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_dirty (dim, key, bucket)
    SELECT 'campaign', n.campaign_id, report_bucket(n.created_at) FROM new_rows n
    UNION
    SELECT 'campaign', n.campaign_id,
           report_bucket(campaign_answer_at(n.created_at, n.answered_at, n.ended_at))
    FROM new_rows n
    WHERE coalesce(n.answered_at, n.ended_at) IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION report_mark_attempts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_dirty (dim, key, bucket)
    SELECT 'campaign', n.campaign_id, report_bucket(n.created_at) FROM new_rows n
    UNION
    SELECT 'campaign', n.campaign_id,
           report_bucket(campaign_answer_at(n.created_at, n.answered_at, n.ended_at))
    FROM new_rows n
    WHERE coalesce(n.answered_at, n.ended_at) IS NOT NULL
    UNION
    SELECT 'campaign', o.campaign_id,
           report_bucket(campaign_answer_at(o.created_at, o.answered_at, o.ended_at))
    FROM old_rows o
    WHERE coalesce(o.answered_at, o.ended_at) IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
DROP TRIGGER report_mark_attempts_upd ON campaign_attempts;
CREATE TRIGGER report_mark_attempts_upd AFTER UPDATE ON campaign_attempts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION report_mark_attempts_moved();

-- The campaign intervals already filled were counted by the dial: mark them, and the hour after
-- each (where their answers now count), for the refresher to recount by this definition (1,000
-- marks a round, a round every [reports] refresh_s; `python -m engine reports rebuild` over the
-- range does it at once).
INSERT INTO report_dirty (dim, key, bucket)
SELECT DISTINCT 'campaign', i.campaign_id, b
FROM report_campaign_intervals i
CROSS JOIN LATERAL generate_series(i.bucket, i.bucket + interval '1 hour', interval '15 minutes') AS b
ON CONFLICT DO NOTHING;
