-- 0015: when each fence was last raised (docs/architecture.md "Several engines").
-- A CDR records a fact: a call that ENDED while its engine still held the switch lease is a
-- true record even if the engine died before its outbox delivered it, and the new owner never
-- adopts an ended call, so refusing it would lose it. A CDR is refused only when its token is
-- stale AND its call ended after the takeover raised the fence (an engine acting after it lost
-- the lease). CDR inserts stay idempotent on (call_id, attempt).
ALTER TABLE fences ADD COLUMN taken_at timestamptz NOT NULL DEFAULT now();
