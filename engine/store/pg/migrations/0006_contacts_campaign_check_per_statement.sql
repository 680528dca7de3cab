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
