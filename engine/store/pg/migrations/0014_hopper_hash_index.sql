-- 0014: the hopper's index on fixed-width keys (docs/contacts.md, "Figures").
--
-- contacts_hopper_tz_idx (0004) led with two text columns, campaign_id and tz. A btree compares
-- and stores a text key as a variable-length value, so every comparison of an insert walked
-- the tuple to reach rank, priority, next_at and contact_id, and each entry carried both
-- names: 3.5-4 µs of PostgreSQL CPU per imported contact and 113 MB for the bench's 923,590
-- contacts. Keyed on hashtext() of the two names instead, every column of the index is fixed
-- width: 0.4 µs a contact more than no hopper index at all, 80 MB (measured on the same
-- rows, docs/contacts.md). The order inside one (campaign, zone) range is unchanged (rank,
-- priority DESC, next_at, contact_id), so the hopper reads the same ranges in the same order;
-- its queries also compare the names themselves on the row, so two names with one hash (the
-- hash is 32 bits) only make it read the other's entries and drop them, never pick wrongly.
CREATE INDEX contacts_hopper_hash_idx
    ON contacts (hashtext(campaign_id), hashtext(tz), rank, priority DESC, next_at, contact_id)
    WHERE state = 'ready';
DROP INDEX IF EXISTS contacts_hopper_tz_idx;

-- hopper_pick (0006) with the hashed keys in its queries (engine/campaigns/hopper.py PICK and
-- PICK_REST, which tests/integration/test_contacts_pg.py compares with this text).
CREATE OR REPLACE FUNCTION hopper_pick(
    p_campaign text, p_now timestamptz, p_zones text[], p_max_attempts integer,
    p_max_per_day integer, p_limit integer, p_ranks smallint[], p_priorities integer[]
) RETURNS TABLE (
    contact_id bigint, phone text, tz text, fields jsonb, priority integer, rank smallint,
    next_at timestamptz, attempts integer, attempts_day date, attempts_today integer,
    callback_agent text
) LANGUAGE plpgsql STABLE
-- One plan per query for the session's life: planned once, never re-planned per call, never
-- flipping between a custom and a generic plan (the generic one is the index range plan the
-- group query is written for: tests/integration/test_contacts_pg.py). No JIT on this path: a
-- compile costs more than the whole pick.
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    need integer := p_limit;
    got integer;
    g_rank smallint[];
    g_priority integer[];
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ranks, 1), 0) LOOP
        EXIT WHEN need <= 0;
        g_rank := ARRAY[p_ranks[i]];
        g_priority := ARRAY[p_priorities[i]];
        RETURN QUERY
        SELECT p.* FROM unnest(p_zones::text[]) AS z(tz)
        CROSS JOIN unnest(g_rank::smallint[], g_priority::int[]) AS g(rank, priority)
        CROSS JOIN LATERAL (
            SELECT c.contact_id, c.phone, c.tz, c.fields, c.priority, c.rank, c.next_at, c.attempts,
                   c.attempts_day, c.attempts_today, c.callback_agent
            FROM contacts c
            WHERE hashtext(c.campaign_id) = hashtext(p_campaign) AND hashtext(c.tz) = hashtext(z.tz)
              AND c.campaign_id = p_campaign AND c.state = 'ready' AND c.tz = z.tz
              AND c.rank = g.rank AND c.priority = g.priority
              AND c.next_at <= p_now
              AND c.attempts < p_max_attempts
              AND (c.attempts_day IS DISTINCT FROM (p_now AT TIME ZONE c.tz)::date OR c.attempts_today < p_max_per_day)
              AND NOT EXISTS (
                  SELECT 1 FROM dnc d WHERE d.campaign_id IN ('', c.campaign_id) AND d.phone = c.phone
              )
            ORDER BY c.next_at, c.contact_id
            LIMIT need
        ) p
        ORDER BY p.rank, p.priority DESC, p.next_at, p.contact_id
        LIMIT need;
        GET DIAGNOSTICS got = ROW_COUNT;
        need := need - got;
    END LOOP;
    IF need > 0 THEN
        RETURN QUERY
        SELECT p.* FROM unnest(p_zones::text[]) AS z(tz)
        CROSS JOIN LATERAL (
            SELECT c.contact_id, c.phone, c.tz, c.fields, c.priority, c.rank, c.next_at, c.attempts,
                   c.attempts_day, c.attempts_today, c.callback_agent
            FROM contacts c
            WHERE hashtext(c.campaign_id) = hashtext(p_campaign) AND hashtext(c.tz) = hashtext(z.tz)
              AND c.campaign_id = p_campaign AND c.state = 'ready' AND c.tz = z.tz
              AND c.priority <> ALL(p_priorities::int[])
              AND c.next_at <= p_now
              AND c.attempts < p_max_attempts
              AND (c.attempts_day IS DISTINCT FROM (p_now AT TIME ZONE c.tz)::date OR c.attempts_today < p_max_per_day)
              AND NOT EXISTS (
                  SELECT 1 FROM dnc d WHERE d.campaign_id IN ('', c.campaign_id) AND d.phone = c.phone
              )
            ORDER BY c.rank, c.priority DESC, c.next_at, c.contact_id
            LIMIT need
        ) p
        ORDER BY p.rank, p.priority DESC, p.next_at, p.contact_id
        LIMIT need;
    END IF;
END
$$;
