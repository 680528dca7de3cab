"""``WebhookStore.ingest`` on real PostgreSQL: a batch no live subscription wants is
answered by one query and stores nothing; one that a subscription wants is stored with its
deliveries, as before the fast path."""

from __future__ import annotations

import uuid
from typing import Any

from engine.store.pg import PgStore
from engine.webhooks.store import WebhookStore


def _event(kind: str) -> dict[str, Any]:
    return {
        "event_id": f"evt_{uuid.uuid4().hex}",
        "type": kind,
        "order_key": f"call:{uuid.uuid4().hex}",
        "occurred_at": 1_700_000_000.0,
        "data": {"cdr": {"call_id": "c1"}},
    }


async def _stored(store: PgStore, ids: list[str]) -> tuple[int, int]:
    async with store.pool.acquire() as conn:
        events = await conn.fetchval(
            "SELECT count(*) FROM webhook_events WHERE event_id = ANY($1::text[])", ids
        )
        deliveries = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE event_id = ANY($1::text[])", ids
        )
    return int(events), int(deliveries)


async def test_only_wanted_types_are_stored_with_their_deliveries(pg_store: PgStore) -> None:
    webhooks = WebhookStore(pg_store.pool, timeout_s=5.0)
    # Types of this test only: other tests of the session may hold subscriptions.
    wanted, unwanted = f"t.{uuid.uuid4().hex[:8]}", f"t.{uuid.uuid4().hex[:8]}"
    sub = await webhooks.create(
        url="http://127.0.0.1:9/hook",
        event_types=[wanted],
        secret="s" * 32,
        description="ingest test",
        max_attempts=3,
        created_by="test",
    )

    nobody = [_event(unwanted), _event(unwanted)]
    assert await webhooks.ingest(nobody) == 0
    assert await _stored(pg_store, [e["event_id"] for e in nobody]) == (0, 0)

    mixed = [_event(unwanted), _event(wanted), _event(wanted)]
    assert await webhooks.ingest(mixed) == 2
    assert await _stored(pg_store, [e["event_id"] for e in mixed]) == (2, 2)
    # Re-delivered after a crash: idempotent on event_id.
    assert await webhooks.ingest(mixed) == 0
    assert await _stored(pg_store, [e["event_id"] for e in mixed]) == (2, 2)

    # A deleted subscription wants nothing any more.
    assert await webhooks.delete(sub.subscription_id)
    late = [_event(wanted)]
    assert await webhooks.ingest(late) == 0
    assert await _stored(pg_store, [e["event_id"] for e in late]) == (0, 0)


async def test_the_lanes_screen_and_a_screened_ingest(pg_store: PgStore) -> None:
    """What the webhook lane does: ``interest`` first (not wanted: the batch is done, no
    fsync), then ``ingest(screened=True)``, which stores what a live subscription wants
    without asking again, and still nothing once the subscription is gone."""
    webhooks = WebhookStore(pg_store.pool, timeout_s=5.0)
    wanted, unwanted = f"t.{uuid.uuid4().hex[:8]}", f"t.{uuid.uuid4().hex[:8]}"
    assert (await webhooks.interest([wanted, unwanted])).wanted is False
    sub = await webhooks.create(
        url="http://127.0.0.1:9/hook",
        event_types=[wanted],
        secret="s" * 32,
        description="screen test",
        max_attempts=3,
        created_by="test",
    )
    assert await webhooks.interest([unwanted]) == (False, True)
    assert await webhooks.interest([unwanted, wanted]) == (True, True)

    mixed = [_event(unwanted), _event(wanted)]
    assert await webhooks.ingest(mixed, screened=True) == 1
    assert await _stored(pg_store, [e["event_id"] for e in mixed]) == (1, 1)

    # Deleted between the screen and the ingest: the ingest still stores nothing.
    assert await webhooks.delete(sub.subscription_id)
    late = [_event(wanted)]
    assert await webhooks.ingest(late, screened=True) == 0
    assert await _stored(pg_store, [e["event_id"] for e in late]) == (0, 0)
    # "subscribed" is about every live subscription (other tests of the session may hold
    # some): it says what the table says.
    async with pg_store.pool.acquire() as conn:
        live = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM webhook_subscriptions WHERE deleted_at IS NULL)"
        )
    assert await webhooks.interest([wanted]) == (False, bool(live))
