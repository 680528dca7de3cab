"""Fencing with several engines: PostgreSQL's ``fences`` (migration 0013) refuse CDRs stamped
with a switch lease's stale token, and a lease that lapsed with nobody taking it keeps its
token when taken again (so writes stamped with it stay good)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from engine.acd.live_store import AcdLiveStore
from engine.acd.reservations import Reservation
from engine.calls.cdr import CdrWriter
from engine.calls.model import Call, CallState
from engine.campaigns.adapters import CampaignLeases
from engine.campaigns.model import CallingWindow, CampaignSpec
from engine.store.outbox import Journal, Lane, Record
from engine.store.pg.cdr import CdrRepository
from engine.store.pg.fences import Fences
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.locks import Leases, lease_key
from engine.telemetry.metrics import Metrics
from tests.campaign_fakes import make_rig


def _call(switch: str, ended_at: float = 110.0) -> Call:
    return Call(
        uuid.uuid4().hex,
        switch,
        CallState.ENDED,
        "1001",
        {"kind": "park"},
        100.0,
        ended_at=ended_at,
    )


async def test_cdrs_with_a_stale_switch_token_are_refused_and_the_engine_told(
    pg_store: PgStore, tmp_path: Path
) -> None:
    switch = f"sw-{uuid.uuid4().hex[:6]}"
    lease = f"switch:{switch}"
    fences = Fences(pg_store.pool)
    assert await fences.take(lease, 3)
    assert await fences.take(lease, 3)  # the same owner again
    repo = CdrRepository(pg_store.pool)
    token = [3]
    stale: list[tuple[str, int]] = []
    lane = Lane(Journal(tmp_path, "cdrs"), _noop, Metrics())
    writer = CdrWriter(repo, lane)
    writer.fence(lambda sw: token[0] if sw == switch else None, lambda n, t: stale.append((n, t)))
    lane.open()
    try:
        ours = _call(switch)
        writer.write(ours)
        records = lane.journal.peek(lane.journal.depth)
        assert records[-1].payload["fence"] == [lease, 3]
        await writer.sink(records)
        assert [r.call_id for r in await repo.for_call(ours.call_id)] == [ours.call_id]

        # Another engine takes the switch over (token 4); ours wakes and writes with 3.
        before = _call(switch, ended_at=time.time() - 60)  # ended while ours held the lease
        assert await fences.take(lease, 4)
        assert not await fences.take(lease, 3)  # never lowered: the old owner is told
        late = _call(switch, ended_at=time.time() + 60)  # ended after the takeover
        elsewhere = _call("unfenced")
        writer.write(late)
        writer.write(elsewhere)
        writer.write(before)
        await writer.sink(lane.journal.peek(lane.journal.depth)[-3:])
        assert await repo.for_call(late.call_id) == []
        assert len(await repo.for_call(elsewhere.call_id)) == 1
        # A call that ended before the takeover is a true record delivered late (its engine
        # died before its outbox drained): kept, since nobody else will write it.
        assert len(await repo.for_call(before.call_id)) == 1
        assert stale == [(lease, 3)]
        assert await fences.current(lease) == 4
    finally:
        lane.journal.close()


async def _noop(records: Sequence[Record]) -> None:
    return None


async def test_a_lapsed_lease_nobody_took_is_taken_again_with_its_token(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    a = Leases(redis_store.client, redis_prefix, "e-a")
    b = Leases(redis_store.client, redis_prefix, "e-b")
    t1 = await a.acquire("switch:x", 60_000)
    assert t1 is not None and await a.release("switch:x", t1)
    assert await a.acquire("switch:x", 60_000, previous=t1) == t1  # nobody took it meanwhile
    assert await a.release("switch:x", t1)
    t2 = await b.acquire("switch:x", 60_000)
    assert t2 is not None and t2 > t1 and await b.release("switch:x", t2)
    t3 = await a.acquire("switch:x", 60_000, previous=t1)
    assert t3 is not None and t3 > t2  # b held it since: a new token


async def test_reservations_are_written_only_by_the_queues_lease_holder(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    r = redis_store.client
    token = await Leases(r, redis_prefix, "e-a").acquire("queue:sales", 60_000)
    assert token is not None
    holding = {"sales": f"e-a {token}"}
    stale: list[str] = []
    store = AcdLiveStore(
        r, redis_prefix, holder_of=holding.get, on_stale=stale.append, timeout_s=2.0
    )
    resv = Reservation("call-1", "alice", "sales", 100.0, 130.0)
    await store.apply({("resv", "entry-1 alice"): resv})
    assert await store.reservations() == [resv] and stale == []

    # Taken over (a new token): the old holder's next reservation is refused in Redis.
    await r.delete(lease_key(redis_prefix, "queue:sales"))
    assert await Leases(r, redis_prefix, "e-b").acquire("queue:sales", 60_000) == token + 1
    late = Reservation("call-2", "bob", "sales", 101.0, 131.0)
    await store.apply({("resv", "entry-2 bob"): late, ("resv", "entry-1 alice"): None})
    assert await store.reservations() == [] and stale == ["sales"]
    # No valid lease locally (past its deadline): refused without asking Redis to check.
    holding.clear()
    await store.apply({("resv", "entry-3 bob"): late})
    assert await store.reservations() == [] and stale == ["sales", "sales"]


async def test_a_token_counter_that_went_back_is_raised_past_postgresql(
    pg_store: PgStore, redis_store: RedisStore
) -> None:
    """Redis lost its data (or failed over to a replica that missed the INCR): its token
    counter starts again below what PostgreSQL's fences saw. Before the fix the engine took
    token 1, was refused, stepped down and took token 1 again, for ever (the takeover drill
    after the lease drill on one database). ``refence`` raises the counter and drops the
    stale hold, so the next acquire is accepted. Fences are per Redis prefix, too."""
    prefix = f"refence:{uuid.uuid4().hex[:8]}:"
    fences = Fences(pg_store.pool, namespace=prefix)
    assert await fences.take("switch:sw", 5)  # seen before the loss
    leases = Leases(redis_store.client, prefix, "eng-a")
    stale = await leases.acquire("switch:sw", 10_000)
    assert stale == 1 and not await fences.take("switch:sw", stale)
    assert await leases.acquire("switch:sw", 10_000) == stale  # same hold, same token
    assert await leases.refence("switch:sw", stale, 5) == 5
    assert await leases.holder("switch:sw") is None  # the stale hold is gone
    fresh = await leases.acquire("switch:sw", 10_000)
    assert fresh == 6 and await fences.take("switch:sw", fresh)
    # Another engine's hold is never dropped, and the counter never goes down.
    other = Leases(redis_store.client, prefix, "eng-b")
    assert await other.refence("switch:sw", 3, 2) == 6
    holder = await leases.holder("switch:sw")
    assert holder is not None and (holder.owner, holder.token) == ("eng-a", 6)
    # Another prefix (another call centre on this database) has its own fences.
    assert await Fences(pg_store.pool, namespace=f"x{prefix}").take("switch:sw", 1)


async def test_a_campaign_runner_raises_a_token_counter_that_went_back(
    pg_store: PgStore, redis_store: RedisStore
) -> None:
    """The same floor for campaign leases: ``campaigns.fence`` saw token 5, then Redis lost
    its counter. Before the fix the runner took token 1, logged "stale fencing token; not
    running" and ended (a lone engine never started it again). Now it raises the counter
    past the fence through ``Leases.refence`` and runs with token 6."""
    prefix = f"cfence:{uuid.uuid4().hex[:8]}:"
    cid = f"c-{uuid.uuid4().hex[:10]}"
    spec = CampaignSpec(
        trunk_group="g",
        queue="sales",
        window=CallingWindow(days=("mon", "tue", "wed", "thu", "fri")),
    )
    rig = await make_rig(pg_store.pool, cid, spec, [], now=datetime(2026, 12, 2, 15, tzinfo=UTC))
    assert await rig.store.take_fence(cid, 5)  # seen before the loss
    leases = Leases(redis_store.client, prefix, "eng-a")
    rig.deps.leases = CampaignLeases(leases, ttl_ms=10_000, timeout_s=2.0)
    runner = rig.runner(spec)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(10):
            while runner.token != 6 and not task.done():  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.01)
        assert not task.done(), "the runner gave up on the stale token"
        row = await rig.store.get(cid)
        assert row is not None and row.fence == 6
        holder = await leases.holder(f"campaign:{cid}")
        assert holder is not None and (holder.owner, holder.token) == ("eng-a", 6)
    finally:
        runner.stopping = True
        runner.wake()
        await asyncio.wait_for(task, 10)
    assert await leases.holder(f"campaign:{cid}") is None  # released with the new token
