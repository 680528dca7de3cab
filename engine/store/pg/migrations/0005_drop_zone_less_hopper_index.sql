-- 0005: contacts_hopper_idx (0003) is no longer read: the hopper walks contacts_hopper_tz_idx
-- (0004), zone by zone. Every index costs each imported row its upkeep (the import is bound by
-- PostgreSQL's inserts: docs/contacts.md), so the unused one goes.
DROP INDEX IF EXISTS contacts_hopper_idx;
