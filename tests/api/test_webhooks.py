"""Signed webhooks end to end: a real engine (fake carrier), real PostgreSQL, a receiver that
verifies with the docs' snippet. Signatures, order per call, a receiver down for 60 s,
dead letters and replay."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.openapi_check import check
from tests.api.security_rig import Rig, security_engine
from tests.webhook_receiver import Receiver

# A group whose first member always fails (the carrier's dead trunk) and never trips its
# breaker: every call tries it first (priority 1, the healthy trunk is 2) and fails over, so
# it has two legs, two call.ended events whose order can be checked. (Same priority for both
# would be a coin toss per call: now and then every call of a test started on the healthy
# trunk, one leg each, and there was no order to check.)
TRUNKS = """
[[trunks]]
name = "dead-trunk"
switch = "asterisk-1"
target = "dead-trunk"
priority = 1
max_channels = 100000
max_cps = 10000
cps_burst = 10000
[trunks.breaker]
failure_threshold = 1000
error_rate = 1.0
degraded_error_rate = 1.0
min_samples = 1000000

[[trunks]]
name = "self-trunk"
switch = "asterisk-1"
target = "self-trunk"
priority = 2
max_channels = 100000
max_cps = 10000
cps_burst = 10000

[[trunk_groups]]
name = "wh-failover"
members = ["dead-trunk", "self-trunk"]
queue_timeout_s = 0
"""
WEBHOOKS = """
[webhooks]
timeout_s = 2.0
backoff_base_s = 0.5
backoff_max_s = 4.0
poll_interval_s = 0.5
"""
DOWN_S = 60.0


@pytest.fixture(scope="module")
async def rig(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Rig]:
    async with security_engine(
        store_data_dir / "engine-webhooks",
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        extra=WEBHOOKS,
        trunks=TRUNKS,
    ) as rig:
        # The session's database is shared with other modules (the fuzzer subscribes random
        # URLs): only this module's subscriptions should be sent to.
        status, subs, _ = await rig.client.request("GET", "/webhooks")
        assert status == 200, subs
        for sub in subs["subscriptions"]:
            await rig.client.request("DELETE", f"/webhooks/{sub['subscription_id']}")
        yield rig


async def subscribe(rig: Rig, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    status, sub, _ = await rig.client.request(
        "POST",
        "/webhooks",
        json={"url": receiver.url, "event_types": ["call.ended"], **extra},
    )
    assert status == 201, sub
    check("/v1/webhooks", "post", 201, sub)
    assert isinstance(sub, dict)
    receiver.secret = sub["secret"]
    return sub


async def failover_call(rig: Rig) -> str:
    """A trunk-group call whose first attempt meets the dead trunk: two legs, two CDRs."""
    status, call, _ = await rig.client.request(
        "POST", "/calls", json={"to": "2000", "trunk_group": "wh-failover", "timeout_s": 6}
    )
    assert status == 201, call
    return str(call["call_id"])


async def until(
    predicate: Callable[[], bool], timeout_s: float, what: str, show: Callable[[], object] = str
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}: {show()}"
        await asyncio.sleep(0.05)


async def legs(rig: Rig, calls: list[str]) -> dict[str, list[int]]:
    """Each call's legs (attempts) as PostgreSQL has them, once every call has ended."""
    for call in calls:
        await rig.client.wait_state(call, "ended")
    assert rig.engine.cdr_lane is not None and rig.engine.pg is not None
    assert await rig.engine.cdr_lane.wait_drained(20)
    rows = await rig.engine.pg.pool.fetch(
        "SELECT call_id, attempt FROM cdr WHERE call_id = ANY($1::text[]) ORDER BY attempt",
        calls,
    )
    out: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        out[r["call_id"]].append(r["attempt"])
    return dict(out)


def two_legs_each(expected: dict[str, list[int]]) -> None:
    """Every call failed over once: the dead trunk's leg, then the healthy trunk's."""
    assert expected and all(v == [1, 2] for v in expected.values()), expected


def per_call(receiver: Receiver) -> dict[str, list[int]]:
    """Each call's legs (attempt numbers) in the order their first delivery arrived."""
    seen: set[str] = set()
    out: dict[str, list[int]] = defaultdict(list)
    for r in receiver.received:
        if r.event_id in seen:
            continue
        seen.add(r.event_id)
        cdr = r.data["cdr"]
        out[cdr["call_id"]].append(cdr["attempt"])
    return out


async def test_every_leg_arrives_signed_in_order(rig: Rig) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        sub = await subscribe(rig, receiver)
        calls = [await failover_call(rig) for _ in range(6)]
        expected = await legs(rig, calls)
        two_legs_each(expected)
        await until(lambda: {c: per_call(receiver)[c] for c in calls} == expected, 30, "every leg")
        assert receiver.bad_signatures == 0
        # The receiver has them; their outcomes are stored a moment later, in a batch.
        total = sum(len(v) for v in expected.values())
        page: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(page.get("deliveries", [])) < total:
            assert loop.time() < deadline, page
            await asyncio.sleep(0.1)
            status, page, _ = await rig.client.request(
                "GET",
                f"/webhooks/{sub['subscription_id']}/deliveries",
                params={"state": "delivered"},
            )
            assert status == 200, page
        check("/v1/webhooks/{subscription_id}/deliveries", "get", 200, page)
        assert {d["type"] for d in page["deliveries"]} == {"call.ended"}
        assert len(page["deliveries"]) == total
    finally:
        await rig.client.request("DELETE", f"/webhooks/{sub['subscription_id']}")
        await receiver.stop()


async def test_receiver_down_for_60_s_gets_every_event_afterwards_in_order(rig: Rig) -> None:
    receiver = Receiver()
    await receiver.start()
    # Retries every <= 4 s here (backoff_max_s): enough attempts to outlast the outage (the
    # default settings give a delivery ~40 minutes before it is dead-lettered).
    sub = await subscribe(rig, receiver, max_attempts=100)
    await receiver.stop()  # down: connections refused
    loop = asyncio.get_running_loop()
    down_at = loop.time()
    try:
        calls = [await failover_call(rig) for _ in range(10)]
        await asyncio.sleep(30)  # the outage is the point of the test: half-way, more calls
        calls += [await failover_call(rig) for _ in range(5)]
        expected = await legs(rig, calls)
        two_legs_each(expected)
        await asyncio.sleep(max(0.0, DOWN_S - (loop.time() - down_at)))
        assert receiver.received == []
        await receiver.start()  # back, on the same port
        up_at = loop.time()

        def got() -> dict[str, list[int]]:
            return {c: per_call(receiver)[c] for c in calls}

        await until(lambda: got() == expected, 60, "every leg", lambda: (got(), expected))
        caught_up_s = loop.time() - up_at
        assert receiver.bad_signatures == 0
        assert max(r.attempt for r in receiver.received) > 1  # they were retried
        total = sum(len(v) for v in expected.values())
        print(f"receiver down {DOWN_S:.0f} s: {total} events caught up {caught_up_s:.1f} s after")
    finally:
        await rig.client.request("DELETE", f"/webhooks/{sub['subscription_id']}")
        await receiver.stop()


async def test_dead_letters_are_listed_and_replayed(rig: Rig) -> None:
    receiver = Receiver(status=500)
    await receiver.start()
    try:
        sub = await subscribe(rig, receiver, max_attempts=2)
        sid = sub["subscription_id"]
        call = await failover_call(rig)
        expected = await legs(rig, [call])
        two_legs_each(expected)
        count = len(expected[call])
        dead: list[dict[str, Any]] = []

        async def deadletters() -> list[dict[str, Any]]:
            status, page, _ = await rig.client.request(
                "GET", f"/webhooks/{sid}/deliveries", params={"state": "dead"}
            )
            assert status == 200, page
            rows: list[dict[str, Any]] = page["deliveries"]
            return rows

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(dead := await deadletters()) < count:
            assert loop.time() < deadline, dead
            await asyncio.sleep(0.2)
        assert {d["attempts"] for d in dead} == {2} and {d["last_status"] for d in dead} == {500}
        assert len(receiver.received) == 2 * count  # two tries of each leg
        receiver.status = 204
        status, body, _ = await rig.client.request(
            "POST", f"/webhooks/deliveries/{dead[0]['delivery_id']}/replay"
        )
        assert (status, body["replayed"]) == (200, 1), body
        status, body, _ = await rig.client.request("POST", f"/webhooks/{sid}/replay")
        assert (status, body["replayed"]) == (200, count - 1), body
        check("/v1/webhooks/{subscription_id}/replay", "post", 200, body)
        await until(lambda: len(receiver.received) == 3 * count, 30, "the replays")
        status, body, _ = await rig.client.request(
            "POST", f"/webhooks/deliveries/{dead[0]['delivery_id']}/replay"
        )
        assert (status, body["error_id"]) == (409, "delivery-not-dead"), body
        replayed = receiver.received[2 * count :]
        assert [r.data["cdr"]["call_id"] for r in replayed] == [call] * count
    finally:
        await rig.client.request("DELETE", f"/webhooks/{sub['subscription_id']}")
        await receiver.stop()
