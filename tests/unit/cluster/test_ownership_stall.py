"""The lease loop on a stalled event loop: its Redis timeouts count running time only.

A renewal that Redis answered at once, but late in wall time because the loop itself was not
running (a starved host, stalled before the request went out or before the reply was read),
is not a failed renewal: before, each such turn left the lease's local deadline where it
was, and a few in a row stepped down from a lease Redis still gave us. A Redis that does
not answer still loses the lease at its deadline, stalls or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from engine.cluster.ownership import Ownership, Timing
from engine.store.redis.locks import LeaseHolder

LEASE = "queue:q1"


async def round_trip() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


class StalledLeases:
    """Leases that Redis grants; the loop stalls ``stall_s`` (longer than the call's
    timeout) as each renewal or take starts; no reply at all when ``silent``."""

    owner = "me"

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.stall_s = 0.0
        self.silent = False
        self.renewals = 0

    async def holders(self, names: Iterable[str]) -> dict[str, LeaseHolder | None]:
        await self._reply()
        return {n: (LeaseHolder(self.owner, 7) if n in self.held else None) for n in names}

    async def acquire(self, name: str, ttl_ms: int, last: int | None) -> int | None:
        await self._stall()
        await self._reply()
        self.held.add(name)
        return 7

    async def renew(self, name: str, token: int, ttl_ms: int) -> bool:
        self.renewals += 1
        await self._stall()
        await self._reply()
        return True

    async def _stall(self) -> None:
        if self.stall_s:
            # The loop stalls before the request is on the wire (a connection from the
            # pool first); Redis then answers within a few milliseconds.
            asyncio.get_running_loop().call_soon(time.sleep, self.stall_s)
            await asyncio.sleep(0)
            await asyncio.sleep(0.005)

    async def _reply(self) -> None:
        if self.silent:
            await asyncio.Event().wait()
        await round_trip()

    async def release(self, name: str, token: int) -> bool:
        return True


class Members:
    async def beat(self) -> frozenset[str]:
        await round_trip()
        return frozenset({"me"})

    async def leave(self) -> None:
        return None


def lease_loop(leases: StalledLeases) -> tuple[Ownership, list[str]]:
    ownership = Ownership(
        leases,  # type: ignore[arg-type]
        Members(),  # type: ignore[arg-type]
        [LEASE],
        # Valid for 1.0 s after each request; each Redis call has 0.2 s.
        timing=Timing(ttl_s=1.2, margin_s=0.2, timeout_s=0.2),
    )
    lost: list[str] = []
    ownership.on_lost.append(lambda name, token, reason: lost.append(reason))
    return ownership, lost


async def test_renewals_answered_during_stalls_keep_the_lease() -> None:
    leases = StalledLeases()
    ownership, lost = lease_loop(leases)
    await ownership.turn()
    assert ownership.owns(LEASE)
    leases.stall_s = 0.5
    # 2 s of turns; Redis answers each renewal within 5 ms of getting it, after a 0.5 s stall.
    for _ in range(4):
        await ownership.turn()
    assert leases.renewals == 4
    assert lost == []
    assert ownership.owns(LEASE)


async def test_a_silent_redis_still_loses_the_lease_at_its_deadline_across_stalls() -> None:
    leases = StalledLeases()
    ownership, lost = lease_loop(leases)
    await ownership.turn()
    leases.silent = True
    asyncio.get_running_loop().call_soon(time.sleep, 0.5)
    for _ in range(20):
        await ownership.turn()
        if lost:
            break
    assert lost == ["local deadline passed without a renewal"]
    assert not ownership.owns(LEASE)
