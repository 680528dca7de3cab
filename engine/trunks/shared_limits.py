"""The trunk limits every engine shares, kept in step with the local fleet.

With a :class:`SharedLimits` (Redis, see ``engine.store.redis.trunk_counters``) a Dial
the local planner decided is only carried out once the shared counters granted a
channel and a CPS token (:meth:`SharedLimitsSync.take`); the shared counts are the
truth for the local view of a trunk (:meth:`SharedLimitsSync.take_counts`). If Redis
cannot be reached, the local limits decide (docs/trunks.md "Shared limits").

It also keeps which calls hold a channel of which trunk (the holds this engine owns),
shared counters or not: adopted calls after a restart are held here too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from engine.store.errors import StoreError
from engine.store.redis.trunk_counters import Counts
from engine.telemetry.logging import get_logger
from engine.trunks.changes import Changed
from engine.trunks.live import LiveFleet

log = get_logger("engine.trunks")

#: While waiting for capacity with shared counters, look at them at least this
#: often: another engine's hangup frees a channel without telling us.
SHARED_POLL_S = 0.25
#: Waiters that wake together share one read of a trunk's shared counters.
SYNC_MIN_S = 0.05
#: After Redis failed, calls do not wait on it again for this long (each try
#: costs up to the counters' timeout); local limits decide meanwhile.
SHARED_RETRY_S = 2.0
# A take whose Redis round failed may still run in Redis later (its round was
# written, the reply lost), possibly after the call's release ran there:
# Redis would then hold that channel until the hold's TTL. Such a holder's
# release is sent once more this much later (docs/trunks.md "Shared limits").
LATE_RELEASE_S = 5.0


class SharedLimits(Protocol):
    """Trunk counters every engine shares (``TrunkCounters`` in store.redis)."""

    @property
    def hold_ttl_s(self) -> float: ...

    async def acquire(
        self, trunk: str, holder: str, *, max_channels: int, rate: float, burst: int
    ) -> Counts: ...

    async def release(self, trunk: str, holder: str) -> Counts: ...

    async def refresh(self, trunk: str, holders: Iterable[str] = ()) -> Counts: ...


class SharedLimitsSync:
    def __init__(
        self,
        shared: SharedLimits | None,
        live: LiveFleet,
        *,
        now: Callable[[], float],
        changed: Changed,
        late_release_s: float = LATE_RELEASE_S,
    ) -> None:
        self.shared = shared
        self._live = live
        self._now = now
        self._changed = changed
        self._shared_ok = True  # False while Redis fails: local limits decide
        self._shared_retry_at = float("-inf")
        self._holds: dict[str, str] = {}  # holder (call id) -> trunk, shared holds we own
        self._uncertain: set[str] = set()  # holders whose take's Redis outcome is unknown
        self._late_release_s = late_release_s
        self._synced_at: dict[str, float] = {}
        self._syncing: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def held(self, holder: str) -> str | None:
        """The trunk ``holder`` holds a channel of, if any."""
        return self._holds.get(holder)

    def adopt(self, trunk: str, holder: str) -> None:
        """A live call taken over after a restart holds a channel of ``trunk``:
        keep its shared hold refreshed (without shared counters, count it
        locally) until it is released."""
        live = self._live
        if trunk not in live.fleet.trunks or holder in self._holds:
            return
        self._holds[holder] = trunk
        if self.shared is None:
            in_use = live.fleet.states[trunk].in_use + 1
            live.fleet = live.fleet.sync(trunk, in_use, None)
            self._changed([trunk])

    async def take(self, trunk: str, holder: str) -> Counts | None:
        """Ask the shared counters for a channel and a CPS token. ``None``:
        Redis is away and the local limits decided (fail open, see module)."""
        shared = self.shared
        assert shared is not None
        spec = self._live.fleet.trunks[trunk]
        if not self._shared_ok and self._now() < self._shared_retry_at:
            self._holds[holder] = trunk
            return None
        try:
            counts = await shared.acquire(
                trunk,
                holder,
                max_channels=spec.max_channels,
                rate=spec.max_cps,
                burst=spec.cps_burst,
            )
        except StoreError as err:
            # Calls go on under this engine's own count; the hold is re-added
            # to Redis by the refresher once it is back.
            self._shared_failed(err)
            self._holds[holder] = trunk
            self._uncertain.add(holder)
            return None
        self._shared_back()
        if counts.taken:
            self._holds[holder] = trunk
            self.take_counts(trunk, counts)
        return counts

    def take_counts(self, trunk: str, counts: Counts) -> None:
        live = self._live
        if trunk not in live.fleet.trunks:
            return
        now = self._now()
        self._synced_at[trunk] = now
        tat = None if counts.tat_in_s is None else now + counts.tat_in_s
        before = live.fleet.states[trunk].in_use
        # Never fewer than the channels this engine itself holds: holds taken
        # while Redis was away (local limits decided) are missing from its
        # count until the refresher re-adds them, and trusting that count
        # alone let a burst place 26 calls on a 20-channel trunk.
        own = sum(1 for held in self._holds.values() if held == trunk)
        live.fleet = live.fleet.sync(trunk, max(counts.in_use, own), tat)
        self._changed([trunk])
        if counts.in_use < before:
            live.signal_release()

    def release(self, trunk: str, holder: str) -> None:
        if self._holds.get(holder) == trunk:
            del self._holds[holder]
        shared = self.shared
        if shared is None:
            return

        late = holder in self._uncertain
        self._uncertain.discard(holder)

        async def release() -> None:
            try:
                self.take_counts(trunk, await shared.release(trunk, holder))
                if late:
                    await asyncio.sleep(self._late_release_s)
                    self.take_counts(trunk, await shared.release(trunk, holder))
            except StoreError as err:
                # The hold expires by itself after hold_ttl_s.
                self._shared_failed(err)

        self._spawn(release())

    async def sync(self, trunks: Iterable[str]) -> None:
        """Read the shared counters of ``trunks`` (waiters share one read)."""
        shared = self.shared
        if shared is None:
            return
        now = self._now()
        tasks = []
        for name in trunks:
            task = self._syncing.get(name)
            if task is None:
                if now - self._synced_at.get(name, float("-inf")) < SYNC_MIN_S:
                    continue
                task = asyncio.create_task(self._sync_one(shared, name))
                self._syncing[name] = task
            tasks.append(task)
        if tasks:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks))

    async def _sync_one(self, shared: SharedLimits, trunk: str) -> None:
        holders = [h for h, t in self._holds.items() if t == trunk]
        if not self._shared_ok and self._now() < self._shared_retry_at:
            self._syncing.pop(trunk, None)
            return
        try:
            counts = await shared.refresh(trunk, holders)
        except StoreError as err:
            self._shared_failed(err)
            return
        finally:
            self._syncing.pop(trunk, None)
        self._shared_back()
        self.take_counts(trunk, counts)

    async def refresh(self) -> None:
        """Extend our holds and read every trunk's shared counters: the holds
        of live calls never expire, a restarted engine rebuilds ``in_use``, and
        other engines' calls show in the local view."""
        self._synced_at.clear()
        await self.sync(list(self._live.fleet.trunks))

    def _shared_failed(self, err: Exception) -> None:
        if self._shared_ok:
            log.warning("shared trunk limits unavailable; local limits decide", error=str(err))
        self._shared_ok = False
        self._shared_retry_at = self._now() + SHARED_RETRY_S

    def _shared_back(self) -> None:
        if not self._shared_ok:
            log.info("shared trunk limits available again")
        self._shared_ok = True

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def finish(self) -> None:
        """Give the releases still under way a last chance to reach the shared counters."""
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2.0)
