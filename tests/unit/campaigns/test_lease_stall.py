"""A campaign lease's Redis calls count running time only (engine/campaigns/adapters.py).

The runner renews every second and stops when a renewal fails past the lease's local
deadline: a stalled loop that held each renewal back until its timeout had passed (Redis
then answering at once) stopped a runner whose lease Redis still gave it. A silent Redis
still fails the call, and the deadline still counts the stall.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.campaigns.adapters import CampaignLeases

LEASE = "campaign:c1"


class StalledLeases:
    """Redis grants everything; the loop stalls ``stall_s`` as each call starts, before its
    request is on the wire; no reply at all when ``silent``."""

    def __init__(self) -> None:
        self.stall_s = 0.0
        self.silent = False

    async def _call(self) -> None:
        if self.stall_s:
            asyncio.get_running_loop().call_soon(time.sleep, self.stall_s)
            await asyncio.sleep(0)  # a connection from the pool
        if self.silent:
            await asyncio.Event().wait()
        await asyncio.sleep(0.005)  # the round trip

    async def acquire(self, name: str, ttl_ms: int, previous: int | None = None) -> int | None:
        await self._call()
        return 7

    async def renew(self, name: str, token: int, ttl_ms: int) -> bool:
        await self._call()
        return True


class Everywhere:
    def may_take(self, name: str, free_for_s: float = 0.0) -> bool:
        return True

    def should_hand_back(self, name: str) -> bool:
        return False


def campaign_leases(leases: StalledLeases) -> CampaignLeases:
    # Several engines (a policy): each call has a third of the 1.2 s lease, 0.4 s.
    return CampaignLeases(
        leases,  # type: ignore[arg-type]
        ttl_ms=1200,
        margin_ms=200,
        policy=Everywhere(),
    )


async def test_a_renewal_held_back_by_a_stall_still_renews() -> None:
    leases = StalledLeases()
    cl = campaign_leases(leases)
    assert await cl.acquire(LEASE) == 7
    leases.stall_s = 0.6
    assert await cl.renew(LEASE, 7) is True
    assert cl.valid(LEASE)


async def test_a_silent_redis_still_fails_the_renewal_and_the_stall_counts_for_the_lease() -> None:
    leases = StalledLeases()
    cl = campaign_leases(leases)
    assert await cl.acquire(LEASE) == 7
    leases.silent = True
    leases.stall_s = 1.1  # past the lease's local deadline (1.0 s after the acquire)
    with pytest.raises(TimeoutError):
        await cl.renew(LEASE, 7)
    assert not cl.valid(LEASE)
