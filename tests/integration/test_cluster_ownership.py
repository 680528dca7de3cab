"""The lease loop (engine/cluster/ownership.py) against a real Redis: one engine takes all,
a second gets its share back, a dead engine's leases are taken over, a frozen owner
stops acting at its local deadline and steps down, and so does an owner whose Redis refuses
every turn (a private redis-server behind tests/storage_proxy.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis

from engine.campaigns.adapters import CampaignLeases
from engine.cluster.membership import Membership
from engine.cluster.ownership import Ownership, Timing
from engine.store.redis.client import RedisStore
from engine.store.redis.locks import Leases
from tests.private_redis import PrivateRedis
from tests.storage_proxy import StorageProxy, Upstream

NAMES = ["switch:pbx1", "queue:sales", "queue:support", "queue:billing", "campaign:7"]
# Short leases so the test is quick; the ratios are the defaults' (margin TTL/5).
FAST = Timing(ttl_s=0.6, margin_s=0.12, timeout_s=0.5, handback_after_s=0.3, grace_s=0.6)


def engine(
    r: aioredis.Redis, prefix: str, me: str, clock: Callable[[], float] | None = None
) -> Ownership:
    return Ownership(
        Leases(r, prefix, me),
        Membership(r, prefix, me, ttl_ms=FAST.ttl_ms, timeout_s=FAST.timeout_s),
        NAMES,
        timing=FAST,
        monotonic=clock or time.monotonic,
    )


async def turn_until(cond: Callable[[], bool], *engines: Ownership, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        for e in engines:
            await e.turn()
        await asyncio.sleep(FAST.renew_s)


async def test_one_engine_takes_all_then_shares_then_takes_over(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    r = redis_store.client
    a = engine(r, redis_prefix, "e-a")
    events: list[tuple[str, str]] = []
    a.on_acquired.append(lambda n, t: events.append(("+", n)))
    a.on_lost.append(lambda n, t, why: events.append(("-", n)))
    await a.turn()
    assert set(a.held()) == set(NAMES)  # single engine: everything at its first turn
    assert all(a.owns(n) for n in NAMES)

    b = engine(r, redis_prefix, "e-b")
    # b's share is handed back once b has been live for handback_after_s, then b takes it.
    await turn_until(lambda: bool(b.held()) and not (set(a.held()) & set(b.held())), a, b)
    await turn_until(lambda: set(a.held()) | set(b.held()) == set(NAMES), a, b)
    for name in b.held():
        assert a.prefers(name) == "e-b" and not a.owns(name)
    assert ("-", next(iter(b.held()))) in events
    tokens = {n: t for n, t in b.held().items()}

    # b dies (no release, no leave): a takes its leases once they expire in Redis.
    await turn_until(lambda: set(a.held()) == set(NAMES), a, timeout_s=4 * FAST.ttl_s + 2)
    for name, old in tokens.items():
        assert a.held()[name] > old  # a new fencing token for every lease taken over
    await a.close()
    assert await Leases(r, redis_prefix, "x").holders(NAMES) == dict.fromkeys(NAMES)


async def test_frozen_owner_stops_at_its_local_deadline_and_steps_down(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    r = redis_store.client
    now = [1000.0]
    a = engine(r, redis_prefix, "e-a", clock=lambda: now[0])
    lost: list[str] = []
    a.on_lost.append(lambda n, t, why: lost.append(why))
    await a.turn()
    assert a.owns("queue:sales")
    # Frozen (SIGSTOP) past the lease: its monotonic clock jumps, nothing ran meanwhile.
    now[0] += FAST.ttl_s - FAST.margin_s
    assert not a.owns("queue:sales") and a.token("queue:sales") is None and a.held() == {}
    b = engine(r, redis_prefix, "e-b")
    await turn_until(lambda: set(b.held()) == set(NAMES), b, timeout_s=4 * FAST.ttl_s + 2)
    await a.turn()  # woken: steps down and takes nothing back
    assert a.held() == {} and lost and all("deadline" in why for why in lost)
    assert not (set(a.held()) & set(b.held()))


class _Policy:
    def __init__(self) -> None:
        self.mine = False
        self.hand_back = False

    def may_take(self, name: str, free_for_s: float = 0.0) -> bool:
        return self.mine or free_for_s >= 5.0

    def should_hand_back(self, name: str) -> bool:
        return self.hand_back


async def test_campaign_leases_follow_the_policy_and_their_local_deadline(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    now = [0.0]
    policy = _Policy()
    leases = CampaignLeases(
        Leases(redis_store.client, redis_prefix, "e-a"),
        ttl_ms=5000,
        margin_ms=1000,
        policy=policy,
        monotonic=lambda: now[0],
    )
    assert await leases.acquire("campaign:7") is None  # another live engine prefers it
    now[0] += 5.0  # ... but has left it free for the grace period
    token = await leases.acquire("campaign:7")
    assert token is not None and leases.valid("campaign:7")
    now[0] += 3.9
    assert leases.valid("campaign:7") and await leases.renew("campaign:7", token)
    now[0] += 4.0  # frozen past ttl - margin since the renewal's request: no action
    assert not leases.valid("campaign:7")
    policy.hand_back = True
    assert await leases.renew("campaign:7", token) is False
    await leases.release("campaign:7", token)
    assert await Leases(redis_store.client, redis_prefix, "x").holder("campaign:7") is None


async def test_redis_away_the_owner_stops_at_its_local_deadline_and_takes_back_after(
    tmp_path: Path,
) -> None:
    """docs/production.md "Redis away with [cluster] enabled": leases cannot be renewed, so
    the engine stops acting at ``ttl - ttl/5`` after its last renewal, while Redis refuses
    every turn; once Redis is back, a lone engine takes its leases again."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        async with StorageProxy(Upstream(path=str(server.socket))) as proxy:
            r = aioredis.from_url(
                f"redis://127.0.0.1:{proxy.port}/0",
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                decode_responses=True,
            )
            try:
                now = [1000.0]
                a = engine(r, "away:", "e-a", clock=lambda: now[0])
                lost: list[str] = []
                a.on_lost.append(lambda n, t, why: lost.append(why))
                await turn_until(lambda: set(a.held()) == set(NAMES), a)
                await proxy.set_mode("refuse")
                # Turns fail (heartbeat, renewals) without raising; just before the local
                # deadline the engine still acts, at it it stops, for every lease.
                now[0] += FAST.ttl_s - FAST.margin_s - 0.01
                await a.turn()
                assert all(a.owns(n) for n in NAMES)
                now[0] += 0.01
                assert not any(a.owns(n) for n in NAMES)
                await a.turn()
                assert a.held() == {} and len(lost) == len(NAMES)
                assert all("deadline" in why for why in lost)
                await proxy.set_mode("pass")
                # Back: the leases expired in Redis meanwhile (or are ours): taken again.
                now[0] += FAST.ttl_s

                async def retaken() -> bool:
                    await a.turn()
                    return set(a.held()) == set(NAMES)

                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while not await retaken():
                    assert loop.time() < deadline, a.held()
                    await asyncio.sleep(FAST.renew_s)
                await a.close()
            finally:
                await r.aclose()
    finally:
        server.stop()
