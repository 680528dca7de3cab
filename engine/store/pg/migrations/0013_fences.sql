-- 0013: fencing tokens of the switch leases (issue 15: several engines, docs/architecture.md
-- "Several engines"). One row per lease: the highest token an owner has shown. The engine that
-- takes lease switch:<name> raises it to its token (never lowers it); a CDR written on behalf of
-- a switch carries the token its owner had, and is refused, in the transaction that would
-- insert it, when the row holds a larger one: an engine that woke after a takeover cannot write.
-- (Campaigns keep theirs in campaigns.fence, 0003.)
CREATE TABLE fences (
    name   text COLLATE "C" PRIMARY KEY CHECK (name <> ''),
    token  bigint           NOT NULL CHECK (token > 0)
);
