"""The webhooks' tables (migration 0009): subscriptions, events, the deliveries outbox."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg

from engine.store.pg.errors import PG_ERRORS, pool_call, translate


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    url: str
    event_types: tuple[str, ...]
    description: str
    max_attempts: int
    created_at: datetime
    created_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "url": self.url,
            "event_types": list(self.event_types),
            "description": self.description,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this engine now holds a lease on."""

    delivery_id: int
    attempts: int  # including this one
    max_attempts: int
    url: str
    secret: str
    event_id: str
    type: str
    occurred_at: datetime
    payload: dict[str, Any]
    created_at: datetime
    subscription_id: str = ""
    order_key: str = ""

    def body(self) -> bytes:
        return json.dumps(
            {
                "id": self.event_id,
                "type": self.type,
                "occurred_at": self.occurred_at.isoformat(),
                "data": self.payload,
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: int
    subscription_id: str
    event_id: str
    type: str
    state: str
    attempts: int
    next_at: datetime
    last_status: int | None
    last_error: str
    delivered_at: datetime | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "subscription_id": self.subscription_id,
            "event_id": self.event_id,
            "type": self.type,
            "state": self.state,
            "attempts": self.attempts,
            "next_at": self.next_at.isoformat(),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "created_at": self.created_at.isoformat(),
        }


_SUB = "subscription_id, url, event_types, description, max_attempts, created_at, created_by"


def _sub(r: Any) -> Subscription:
    return Subscription(
        r["subscription_id"],
        r["url"],
        tuple(r["event_types"]),
        r["description"],
        r["max_attempts"],
        r["created_at"],
        r["created_by"],
    )


# Due chain heads, oldest first; locked so two engines never claim one delivery (SKIP LOCKED:
# each takes different rows). Only heads are candidates, so a claim costs what it returns,
# however many deliveries wait behind a receiver that is down.
_CLAIM = """
WITH due AS (
    SELECT d.delivery_id FROM webhook_deliveries d
    JOIN webhook_subscriptions s USING (subscription_id)
    WHERE d.state = 'pending' AND d.head AND d.next_at <= now()
      AND (d.lease_until IS NULL OR d.lease_until < now())
      AND s.deleted_at IS NULL
    ORDER BY d.next_at, d.delivery_id
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET lease_until = now() + make_interval(secs => $2), attempts = d.attempts + 1
FROM due, webhook_subscriptions s, webhook_events ev
WHERE d.delivery_id = due.delivery_id AND s.subscription_id = d.subscription_id
  AND ev.event_id = d.event_id AND s.deleted_at IS NULL
RETURNING d.delivery_id, d.attempts, s.max_attempts, s.url, s.secret, ev.event_id, ev.type,
          ev.occurred_at, ev.payload, d.created_at, d.subscription_id, d.order_key
"""

# Does a live subscription want any of these event types? (the ingest's fast path)
_ANY_WANTED = (
    "SELECT EXISTS (SELECT 1 FROM webhook_subscriptions "
    "WHERE deleted_at IS NULL AND event_types && $1::text[])"
)

# The webhook lane's screen: does a live subscription want any of these types, and is
# there any live subscription at all? One round trip.
_INTEREST = (
    "SELECT EXISTS (SELECT 1 FROM webhook_subscriptions "
    "WHERE deleted_at IS NULL AND event_types && $1::text[]) AS wanted, "
    "EXISTS (SELECT 1 FROM webhook_subscriptions WHERE deleted_at IS NULL) AS subscribed"
)


class Interest(NamedTuple):
    wanted: bool  # a live subscription wants one of the types asked about
    subscribed: bool  # there is a live subscription at all


# The oldest pending delivery of each given chain becomes its head. Run under the chains'
# advisory locks (see _lock_chains), after whatever changed them.
_PROMOTE = """
UPDATE webhook_deliveries d SET head = true
FROM (
    SELECT DISTINCT ON (c.sub, c.key) e.delivery_id
    FROM unnest($1::text[], $2::text[]) AS c(sub, key)
    JOIN webhook_deliveries e
      ON e.subscription_id = c.sub AND e.order_key = c.key AND e.state = 'pending'
    ORDER BY c.sub, c.key, e.delivery_id
) first
WHERE d.delivery_id = first.delivery_id AND NOT d.head
"""


def _chain_lock(subscription_id: str, order_key: str) -> int:
    digest = hashlib.sha256(f"webhook-chain:{subscription_id}:{order_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _lock_chains(conn: Any, chains: Iterable[tuple[str, str]], timeout_s: float) -> None:
    """Transaction-scoped locks on chains, in one order (no deadlock between engines): an
    ingest that adds to a chain and an outcome that moves its head never interleave, so no
    chain is left without a head."""
    keys = sorted({_chain_lock(sub, key) for sub, key in chains})
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k",
        keys,
        timeout=timeout_s,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one try: delivered (``retry_in_s`` unused), retried later, or dead."""

    delivery_id: int
    subscription_id: str
    order_key: str
    delivered: bool
    status: int | None
    error: str = ""
    retry_in_s: float | None = None  # None on failure: dead-lettered


# Only pending rows, which the partial chain index (WHERE state = 'pending') serves;
# dead letters are not counted here (no index: a scan of the whole table every refresh).
_BACKLOG = """
SELECT (SELECT count(*) FROM webhook_deliveries WHERE state = 'pending') AS pending,
       (SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8
          FROM webhook_deliveries WHERE state = 'pending') AS oldest_s
"""


class WebhookStore:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 5.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def _run(self, doing: str, method: str, sql: str, *args: Any) -> Any:
        return await pool_call(self._pool, self._timeout_s, doing, method, sql, *args)

    # ------------------------------------------------------------ subscriptions

    async def create(
        self,
        *,
        url: str,
        event_types: Sequence[str],
        secret: str,
        description: str,
        max_attempts: int,
        created_by: str,
    ) -> Subscription:
        r = await self._run(
            "creating a webhook subscription",
            "fetchrow",
            f"INSERT INTO webhook_subscriptions (subscription_id, url, event_types, secret, "
            f"description, max_attempts, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            f"RETURNING {_SUB}",
            f"whs_{secrets.token_hex(8)}",
            url,
            list(event_types),
            secret,
            description,
            max_attempts,
            created_by,
        )
        return _sub(r)

    async def subscriptions(self) -> list[Subscription]:
        rows = await self._run(
            "listing webhook subscriptions",
            "fetch",
            f"SELECT {_SUB} FROM webhook_subscriptions WHERE deleted_at IS NULL "
            "ORDER BY created_at, subscription_id",
        )
        return [_sub(r) for r in rows]

    async def get(self, subscription_id: str) -> Subscription | None:
        r = await self._run(
            "reading a webhook subscription",
            "fetchrow",
            f"SELECT {_SUB} FROM webhook_subscriptions "
            "WHERE subscription_id = $1 AND deleted_at IS NULL",
            subscription_id,
        )
        return _sub(r) if r is not None else None

    async def delete(self, subscription_id: str) -> bool:
        """Soft delete: its pending deliveries are not sent any more (they stay listed)."""
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn, conn.transaction():
                value = await conn.fetchval(
                    "UPDATE webhook_subscriptions SET deleted_at = now() "
                    "WHERE subscription_id = $1 AND deleted_at IS NULL RETURNING subscription_id",
                    subscription_id,
                    timeout=self._timeout_s,
                )
                # Out of the claimable set for good (the claim skips them anyway).
                await conn.execute(
                    "UPDATE webhook_deliveries SET head = false "
                    "WHERE subscription_id = $1 AND state = 'pending' AND head",
                    subscription_id,
                    timeout=self._timeout_s,
                )
        except PG_ERRORS as err:
            raise translate(err, "deleting a webhook subscription") from err
        return value is not None

    # ------------------------------------------------------------ the outbox

    async def interest(self, types: Sequence[str]) -> Interest:
        """Does a live subscription want any of these event types, and is there any live
        subscription at all? One query. The webhook lane asks it before it fsyncs a batch
        (``Lane`` ``screen``): most batches (every ended call's ``call.ended``) go to no
        subscription, and are then done without an fsync and without the ingest."""
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                row = await conn.fetchrow(_INTEREST, sorted(set(types)), timeout=self._timeout_s)
        except PG_ERRORS as err:
            raise translate(err, "checking webhook subscriptions") from err
        assert row is not None  # SELECT without FROM: always one row
        return Interest(wanted=bool(row["wanted"]), subscribed=bool(row["subscribed"]))

    async def ingest(self, events: Sequence[dict[str, Any]], *, screened: bool = False) -> int:
        """Store events (``{"event_id", "type", "order_key", "occurred_at", "data"}``) and one
        delivery per subscription that wants each, in the events' order. Idempotent on
        ``event_id``: a batch the local journal re-delivers after a crash adds nothing.

        ``screened``: the caller just asked :meth:`interest` and was told it is wanted, so the same
        question is not asked again (a subscription deleted since then is still honoured:
        the INSERT keeps only events a live subscription wants)."""
        if not events:
            return 0
        ids = [e["event_id"] for e in events]
        types = [e["type"] for e in events]
        keys = [e["order_key"] for e in events]
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                # Most batches (every ended call's call.ended) go to no subscription at all:
                # one query says so and the batch is done, instead of a transaction of six
                # round trips that would store nothing (the INSERT below keeps only events a
                # live subscription wants). Same outcome: a subscription committed between
                # this check and the statements below could as well have been committed
                # just after the batch (READ COMMITTED: each statement has its own snapshot).
                if not screened and not await conn.fetchval(
                    _ANY_WANTED, sorted(set(types)), timeout=self._timeout_s
                ):
                    return 0
                return await self._ingest(conn, ids, types, keys, events)
        except PG_ERRORS as err:
            raise translate(err, "storing webhook events") from err

    async def _ingest(
        self,
        conn: Any,
        ids: list[str],
        types: list[str],
        keys: list[str],
        events: Sequence[dict[str, Any]],
    ) -> int:
        times = [datetime.fromtimestamp(float(e["occurred_at"]), UTC) for e in events]
        payloads = [json.dumps(e["data"]) for e in events]
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO webhook_events (event_id, type, order_key, occurred_at, "
                "payload) SELECT e.id, e.type, e.key, e.at, e.payload::jsonb "
                "FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], "
                "$5::text[]) AS e(id, type, key, at, payload) "
                "WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s "
                "  WHERE s.deleted_at IS NULL AND e.type = ANY(s.event_types)) "
                "ON CONFLICT (event_id) DO NOTHING",
                ids,
                types,
                keys,
                times,
                payloads,
                timeout=self._timeout_s,
            )
            # Chains of the subscriptions these events go to, locked before they grow.
            chains = await conn.fetch(
                "SELECT DISTINCT s.subscription_id, e.key "
                "FROM unnest($1::text[], $2::text[]) AS e(type, key) "
                "JOIN webhook_subscriptions s "
                "  ON s.deleted_at IS NULL AND e.type = ANY(s.event_types)",
                types,
                keys,
                timeout=self._timeout_s,
            )
            pairs = [(r["subscription_id"], r["key"]) for r in chains]
            await _lock_chains(conn, pairs, self._timeout_s)
            # Identity values follow the SELECT's order: a call's deliveries are numbered
            # in the order its events happened, which is the order they are sent in.
            status = await conn.execute(
                "INSERT INTO webhook_deliveries (subscription_id, event_id, order_key) "
                "SELECT s.subscription_id, e.id, e.key "
                "FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY "
                "  AS e(id, type, key, ord) "
                "JOIN webhook_subscriptions s "
                "  ON s.deleted_at IS NULL AND e.type = ANY(s.event_types) "
                "JOIN webhook_events ev ON ev.event_id = e.id "
                "ORDER BY e.ord, s.subscription_id "
                "ON CONFLICT (subscription_id, event_id) DO NOTHING",
                ids,
                types,
                keys,
                timeout=self._timeout_s,
            )
            if pairs:
                await conn.execute(
                    _PROMOTE,
                    [p[0] for p in pairs],
                    [p[1] for p in pairs],
                    timeout=self._timeout_s,
                )
        return int(status.rsplit(" ", 1)[-1])

    async def backlog(self) -> tuple[int, float]:
        """(pending deliveries, age of the oldest pending in seconds; 0 when none): the
        ``engine_webhook_*`` metrics, read by a background loop (engine/wiring/metrics.py)."""
        row = await self._run("counting webhook backlog", "fetchrow", _BACKLOG)
        return int(row["pending"]), float(row["oldest_s"] or 0.0)

    async def claim(self, limit: int, lease_s: float) -> list[Claimed]:
        rows = await self._run("claiming webhook deliveries", "fetch", _CLAIM, limit, lease_s)
        return [
            Claimed(
                r["delivery_id"],
                r["attempts"],
                r["max_attempts"],
                r["url"],
                r["secret"],
                r["event_id"],
                r["type"],
                r["occurred_at"],
                r["payload"],
                r["created_at"],
                r["subscription_id"],
                r["order_key"],
            )
            for r in sorted(rows, key=lambda r: r["delivery_id"])
        ]

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Store a batch of tries in one transaction: delivered and dead ones leave their
        chain, whose next delivery becomes the head; a retried one waits for ``next_at``."""
        if not outcomes:
            return
        done = [o for o in outcomes if o.delivered]
        failed = [o for o in outcomes if not o.delivered]
        finished = [
            (o.subscription_id, o.order_key)
            for o in outcomes
            if o.delivered or o.retry_in_s is None
        ]
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn, conn.transaction():
                await _lock_chains(conn, finished, self._timeout_s)
                if done:
                    await conn.execute(
                        "UPDATE webhook_deliveries d SET state = 'delivered', "
                        "delivered_at = now(), lease_until = NULL, head = false, "
                        "last_status = o.status, last_error = '' "
                        "FROM unnest($1::bigint[], $2::int[]) AS o(id, status) "
                        "WHERE d.delivery_id = o.id",
                        [o.delivery_id for o in done],
                        [o.status for o in done],
                        timeout=self._timeout_s,
                    )
                if failed:
                    await conn.execute(
                        "UPDATE webhook_deliveries d SET lease_until = NULL, "
                        "last_status = o.status, last_error = o.error, "
                        "state = CASE WHEN o.retry IS NULL THEN 'dead' ELSE d.state END, "
                        "head = o.retry IS NOT NULL, "
                        "next_at = CASE WHEN o.retry IS NULL THEN d.next_at "
                        "  ELSE now() + make_interval(secs => o.retry) END "
                        "FROM unnest($1::bigint[], $2::int[], $3::text[], $4::float8[]) "
                        "  AS o(id, status, error, retry) "
                        "WHERE d.delivery_id = o.id",
                        [o.delivery_id for o in failed],
                        [o.status for o in failed],
                        [o.error[:500] for o in failed],
                        [o.retry_in_s for o in failed],
                        timeout=self._timeout_s,
                    )
                if finished:
                    await conn.execute(
                        _PROMOTE,
                        [c[0] for c in finished],
                        [c[1] for c in finished],
                        timeout=self._timeout_s,
                    )
        except PG_ERRORS as err:
            raise translate(err, "recording webhook outcomes") from err

    async def deliveries(
        self, subscription_id: str, state: str | None, limit: int, after_id: int | None
    ) -> list[DeliveryRow]:
        rows = await self._run(
            "listing webhook deliveries",
            "fetch",
            "SELECT d.delivery_id, d.subscription_id, d.event_id, ev.type, d.state, d.attempts, "
            "d.next_at, d.last_status, d.last_error, d.delivered_at, d.created_at "
            "FROM webhook_deliveries d JOIN webhook_events ev USING (event_id) "
            "WHERE d.subscription_id = $1 AND ($2::text IS NULL OR d.state = $2) "
            "AND ($4::bigint IS NULL OR d.delivery_id > $4) ORDER BY d.delivery_id LIMIT $3",
            subscription_id,
            state,
            limit,
            after_id,
        )
        return [
            DeliveryRow(
                r["delivery_id"],
                r["subscription_id"],
                r["event_id"],
                r["type"],
                r["state"],
                r["attempts"],
                r["next_at"],
                r["last_status"],
                r["last_error"],
                r["delivered_at"],
                r["created_at"],
            )
            for r in rows
        ]

    async def replay(self, subscription_id: str, delivery_id: int | None = None) -> int:
        """Dead deliveries (one, or all of a subscription) back to pending, due now, with a
        fresh attempt count. Returns how many."""
        status = await self._run(
            "replaying webhook deliveries",
            "execute",
            # A replayed delivery is sent at once, even if later ones of its call are still
            # pending: it is a head of its own (docs/security.md: replays may overtake).
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = now(), "
            "lease_until = NULL, head = true WHERE subscription_id = $1 AND state = 'dead' "
            "AND ($2::bigint IS NULL OR delivery_id = $2)",
            subscription_id,
            delivery_id,
        )
        return int(str(status).rsplit(" ", 1)[-1])

    async def subscription_of(self, delivery_id: int) -> str | None:
        value = await self._run(
            "reading a webhook delivery",
            "fetchval",
            "SELECT subscription_id FROM webhook_deliveries WHERE delivery_id = $1",
            delivery_id,
        )
        return str(value) if value is not None else None
