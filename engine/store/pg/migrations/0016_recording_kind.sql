-- 0016: voicemail messages of the IVR `record` step are recordings too (docs/recordings.md
-- "Voicemail"). kind tells a call recording from a voicemail message; flow and ended_by are the
-- voicemail's (NULL for a call recording); source is the switch's plaintext file as the engine
-- reads it, kept until the message is sealed so that recovery can finish it after a crash.
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'call'
    CHECK (kind IN ('call', 'voicemail'));
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS flow text;
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS ended_by text;
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS source text;
-- Recovery's walk: voicemail messages journalled and not sealed yet.
CREATE INDEX IF NOT EXISTS recordings_voicemail_pending_idx ON recordings (started_at)
    WHERE kind = 'voicemail' AND state = 'finishing';
