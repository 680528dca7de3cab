-- 0006: the contacts' campaign is checked once per statement, not once per row.
--
-- The foreign key contacts.campaign_id -> campaigns (0003) runs PostgreSQL's referential check
-- for every inserted row: about 2.6 µs of the backend's CPU a row, an eighth of what loading a
-- contact costs PostgreSQL (measured on the 1,000,000-row bench list; docs/contacts.md). These
-- triggers keep what the key guaranteed:
--   * an INSERT of contacts whose campaign does not exist fails (SQLSTATE 23503, as before);
--   * the inserting transaction holds FOR KEY SHARE on each campaign it adds contacts to, as
--     the key's check did, so a concurrent DELETE of that campaign waits for it to end;
--   * deleting a campaign deletes its contacts (was ON DELETE CASCADE); TRUNCATE too;
--   * a contact's campaign_id never changes, nor a campaign's id while it has contacts (was the
--     key's NO ACTION on update; nothing in the engine does either).

ALTER TABLE contacts DROP CONSTRAINT IF EXISTS contacts_campaign_id_fkey;

CREATE FUNCTION contacts_campaign_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    PERFORM 1 FROM campaigns c
    WHERE c.campaign_id IN (SELECT DISTINCT n.campaign_id FROM new_contacts n)
    FOR KEY SHARE OF c;
    SELECT n.campaign_id INTO missing FROM new_contacts n
    WHERE NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.campaign_id = n.campaign_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation
            USING MESSAGE = format('contacts: no campaign %L', missing),
                  TABLE = 'contacts', COLUMN = 'campaign_id';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_campaign_check AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION contacts_campaign_check();

CREATE FUNCTION contacts_campaign_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE foreign_key_violation
        USING MESSAGE = format('%s: campaign_id cannot change (%L to %L)', TG_TABLE_NAME,
                               OLD.campaign_id, NEW.campaign_id);
END
$$;

-- Fires only for an UPDATE that sets campaign_id (the runner's updates never do).
CREATE TRIGGER contacts_campaign_fixed BEFORE UPDATE OF campaign_id ON contacts
    FOR EACH ROW WHEN (OLD.campaign_id IS DISTINCT FROM NEW.campaign_id)
    EXECUTE FUNCTION contacts_campaign_fixed();

CREATE FUNCTION campaigns_id_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM contacts c WHERE c.campaign_id = OLD.campaign_id) THEN
        RAISE foreign_key_violation
            USING MESSAGE = format('campaigns: %L has contacts; its id cannot change',
                                   OLD.campaign_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER campaigns_id_fixed BEFORE UPDATE OF campaign_id ON campaigns
    FOR EACH ROW WHEN (OLD.campaign_id IS DISTINCT FROM NEW.campaign_id)
    EXECUTE FUNCTION campaigns_id_fixed();

CREATE FUNCTION campaigns_delete_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE contacts;
    ELSE
        DELETE FROM contacts c WHERE c.campaign_id = OLD.campaign_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER campaigns_delete_contacts AFTER DELETE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_delete_contacts();
CREATE TRIGGER campaigns_truncate_contacts BEFORE TRUNCATE ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION campaigns_delete_contacts();

-- The hopper's pick in one round trip (engine/campaigns/hopper.py): the (rank, priority) groups
-- in pick order, each read per open zone for what is still needed (the group query is the
-- Python PICK's, parameters named), until the batch is full; then the priorities the caller
-- does not know yet (PICK_REST). The client used to probe every (zone, group) first, then read
-- the groups, one statement each: two or more round trips and every group's index range
-- touched, where the batch is mostly filled by the first group or two (docs/campaigns.md).
CREATE FUNCTION hopper_pick(
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
            WHERE c.campaign_id = p_campaign AND c.state = 'ready' AND c.tz = z.tz
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
            WHERE c.campaign_id = p_campaign AND c.state = 'ready' AND c.tz = z.tz
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
