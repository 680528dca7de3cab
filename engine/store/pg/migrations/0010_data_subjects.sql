-- 0010: data-subject requests (docs/privacy.md): export and erase find one person's rows by
-- phone number. Without these indexes each request scanned every contact, attempt, CDR and
-- stored webhook event. No new table: an erase is one transaction over the existing ones, and
-- a rerun finds its own earlier changes through the keyed pseudonym.
CREATE INDEX IF NOT EXISTS contacts_phone_idx ON contacts (phone);
CREATE INDEX IF NOT EXISTS campaign_attempts_phone_idx ON campaign_attempts (phone);
CREATE INDEX IF NOT EXISTS cdr_caller_id_num_idx ON cdr (caller_id_num);
CREATE INDEX IF NOT EXISTS cdr_destination_idx ON cdr (destination);
CREATE INDEX IF NOT EXISTS webhook_events_order_key_idx ON webhook_events (order_key);
