-- 0017: a voicemail message's plaintext stays on the switch's disk while its call lives (the
-- flow may play it back), its row keeping `source` until it is removed (docs/recordings.md
-- "Voicemail"). Recovery's walk over those rows, every 30 s: few rows, found by this index.
CREATE INDEX IF NOT EXISTS recordings_voicemail_kept_idx ON recordings (started_at)
    WHERE kind = 'voicemail' AND state <> 'finishing' AND source IS NOT NULL;
