-- 0003: outbound campaigns (docs/campaigns.md): campaigns, their contacts,
-- DNC lists, and one row per dial attempt.
--
-- The dialling loop claims contacts here (the hopper, engine/campaigns/hopper.py)
-- and writes each attempt as `pending` before its originate, carrying the
-- runner's fencing token (engine/store/redis/locks.py): a runner whose lease
-- was taken over cannot claim or write anything (fence < campaigns.fence).

CREATE TABLE campaigns (
    campaign_id  text COLLATE "C" PRIMARY KEY CHECK (campaign_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- the validated campaign settings (engine/campaigns/model.py CampaignSpec, as JSON)
    spec         jsonb            NOT NULL,
    state        text             NOT NULL DEFAULT 'draft'
                     CHECK (state IN ('draft', 'running', 'paused', 'stopped', 'finished')),
    -- the highest fencing token a runner of this campaign has shown; older ones are refused
    fence        bigint           NOT NULL DEFAULT 0,
    created_at   timestamptz      NOT NULL DEFAULT now(),
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    version      integer          NOT NULL DEFAULT 1
);

-- One row per number of a campaign. `state`:
--   ready     may be dialled when next_at is due (and its window is open, and it is not on DNC)
--   dialing   an attempt is in flight (attempt_id)
--   held      quarantined after a crash left its last attempt's outcome unknown (until next_at)
--   done      final: final_outcome says why (sale, not_interested, wrong_number, dnc,
--             max_attempts, machine, answered, invalid, ...)
-- `rank` orders the hopper: 0 callback, 1 due retry, 2 never dialled.
CREATE TABLE contacts (
    contact_id      bigserial        PRIMARY KEY,
    campaign_id     text COLLATE "C" NOT NULL REFERENCES campaigns (campaign_id) ON DELETE CASCADE,
    phone           text COLLATE "C" NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{3,14}$'),
    tz              text             NOT NULL,
    fields          jsonb            NOT NULL DEFAULT '{}'::jsonb,
    priority        integer          NOT NULL DEFAULT 0,
    state           text             NOT NULL DEFAULT 'ready'
                        CHECK (state IN ('ready', 'dialing', 'held', 'done')),
    rank            smallint         NOT NULL DEFAULT 2 CHECK (rank IN (0, 1, 2)),
    next_at         timestamptz      NOT NULL DEFAULT '-infinity',
    callback_agent  text,
    attempts        integer          NOT NULL DEFAULT 0,
    attempts_day    date,
    attempts_today  integer          NOT NULL DEFAULT 0,
    attempt_id      text,
    final_outcome   text,
    source_line     integer,
    list_name       text,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    updated_at      timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, phone)
);
-- The hopper's index: only dialable rows, in the order it picks them.
CREATE INDEX contacts_hopper_idx ON contacts (campaign_id, rank, priority DESC, next_at, contact_id)
    WHERE state = 'ready';
CREATE INDEX contacts_state_idx ON contacts (campaign_id, state);

-- Do-not-call numbers: campaign_id '' is the global list.
CREATE TABLE dnc (
    campaign_id  text COLLATE "C" NOT NULL DEFAULT '',
    phone        text COLLATE "C" NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{3,14}$'),
    source       text             NOT NULL DEFAULT 'api',
    added_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, phone)
);
CREATE INDEX dnc_phone_idx ON dnc (phone);

-- One row per dial attempt, written `pending` before the originate.
-- state: pending -> dialing -> done (outcome set) | interrupted | held (unknown after a crash)
CREATE TABLE campaign_attempts (
    attempt_id        text COLLATE "C" PRIMARY KEY,
    campaign_id       text COLLATE "C" NOT NULL REFERENCES campaigns (campaign_id) ON DELETE CASCADE,
    contact_id        bigint           NOT NULL,
    call_id           text COLLATE "C" NOT NULL,
    switch            text,
    fence             bigint           NOT NULL,
    seq               integer          NOT NULL,
    state             text             NOT NULL DEFAULT 'pending'
                          CHECK (state IN ('pending', 'dialing', 'done', 'interrupted', 'held')),
    phone             text             NOT NULL,
    dialed_number     text,
    trunk             text,
    created_at        timestamptz      NOT NULL DEFAULT now(),
    answered_at       timestamptz,
    amd_at            timestamptz,
    agent_at          timestamptz,
    ended_at          timestamptz,
    cause             integer,
    sip_code          integer,
    amd_status        text,
    amd_cause         text,
    outcome           text,
    counts            boolean          NOT NULL DEFAULT true,
    abandoned         boolean          NOT NULL DEFAULT false,
    agent_id          text,
    seconds_to_agent  double precision,
    disposition       text,
    next_at           timestamptz,
    UNIQUE (campaign_id, contact_id, seq)
);
CREATE INDEX campaign_attempts_open_idx ON campaign_attempts (campaign_id)
    WHERE state IN ('pending', 'dialing', 'held');
CREATE INDEX campaign_attempts_time_idx ON campaign_attempts (campaign_id, created_at);
CREATE INDEX campaign_attempts_call_idx ON campaign_attempts (call_id);
