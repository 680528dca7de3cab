-- 0009: signed webhooks (docs/security.md "Webhooks"): subscriptions, the events they get,
-- and the durable outbox of deliveries (one row per subscription and event).

CREATE TABLE webhook_subscriptions (
    subscription_id text COLLATE "C" PRIMARY KEY CHECK (subscription_id ~ '^whs_[0-9a-f]{16}$'),
    url             text        NOT NULL CHECK (url ~ '^https?://'),
    event_types     text[]      NOT NULL CHECK (cardinality(event_types) >= 1),
    -- The HMAC key. Kept as is: the engine must sign with it (it is shown once at creation).
    secret          text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    max_attempts    integer     NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text        NOT NULL,
    deleted_at      timestamptz
);

-- An event is stored once, when at least one subscription wants it.
CREATE TABLE webhook_events (
    event_id    text COLLATE "C" PRIMARY KEY,
    type        text        NOT NULL,
    -- Deliveries with the same key (a call, a campaign) go out in order, per subscription.
    order_key   text COLLATE "C" NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload     jsonb       NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    delivery_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id text COLLATE "C" NOT NULL REFERENCES webhook_subscriptions,
    event_id        text COLLATE "C" NOT NULL REFERENCES webhook_events,
    order_key       text COLLATE "C" NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_at         timestamptz NOT NULL DEFAULT now(),
    -- Set while one engine sends it; a crashed sender's lease runs out and another (or the
    -- restarted one) sends it again: at least once.
    lease_until     timestamptz,
    -- The oldest pending delivery of its (subscription, order_key) chain: the only one of the
    -- chain that may be sent (order per call). Set at ingest and when the one before it is
    -- delivered or dead-lettered, under the chain's advisory lock (engine/webhooks/store.py).
    head            boolean     NOT NULL DEFAULT false,
    last_status     integer,
    last_error      text        NOT NULL DEFAULT '',
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, event_id)
);
-- What the dispatcher claims: due chain heads, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at, delivery_id)
    WHERE state = 'pending' AND head;
CREATE INDEX webhook_deliveries_chain ON webhook_deliveries (subscription_id, order_key, delivery_id)
    WHERE state = 'pending';
-- Listing a subscription's deliveries. Deliberately without `state`: an index with
-- (subscription_id, state, delivery_id) looked as good as the chain index above to the
-- planner for a chain lookup, and scanned every pending delivery of the subscription.
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, delivery_id);
