"""The trunk service's background loop: publishes state changes, wakes at the fleet's
next timed transition (a breaker half-opening), polls reachability, refreshes the shared
holds and follows the shared admin state, each on its own schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from engine.pbx.base import PbxDriver
from engine.trunks.admin import AdminState
from engine.trunks.changes import ChangeReporter
from engine.trunks.live import LiveFleet
from engine.trunks.poller import SwitchPoller
from engine.trunks.shared_limits import SharedLimitsSync


class TrunkLoop:
    def __init__(
        self,
        live: LiveFleet,
        changes: ChangeReporter,
        limits: SharedLimitsSync,
        admin: AdminState,
        poller: SwitchPoller,
        *,
        now: Callable[[], float],
    ) -> None:
        self._live = live
        self._changes = changes
        self._limits = limits
        self._admin = admin
        self._poller = poller
        self._now = now
        self._kick = asyncio.Event()
        self._closed = False
        self._poll_now = False

    def wake(self) -> None:
        """Go round the loop now (a trunk's state changed: publish it)."""
        self._kick.set()

    def request_poll(self) -> None:
        """Poll reachability soon (a switch link just came up: events sent
        while it was down are lost)."""
        self._poll_now = True
        self._kick.set()

    def close(self) -> None:
        self._closed = True
        self._kick.set()

    async def run(self, drivers: Mapping[str, PbxDriver], poll_interval_s: float) -> None:
        """Until :meth:`close`: publish state changes, wake at the fleet's next
        timed transition, poll reachability every ``poll_interval_s``, refresh
        the shared holds a few times per hold TTL."""
        if self._poller.drivers is None:
            self._poller.drivers = drivers
        shared, admin = self._limits.shared, self._admin
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        next_refresh = loop.time()
        next_admin = loop.time()
        refresh_every = shared.hold_ttl_s / 4 if shared is not None else None
        admin_every = admin.sync_s if admin.shared is not None else None
        while not self._closed:
            if refresh_every is not None and loop.time() >= next_refresh:
                await self._limits.refresh()
                next_refresh = loop.time() + refresh_every
            if admin_every is not None and loop.time() >= next_admin:
                await admin.sync()
                next_admin = loop.time() + admin_every
            if self._poll_now or loop.time() >= next_poll:
                self._poll_now = False
                await self._poller.poll(drivers)
                next_poll = loop.time() + poll_interval_s
            # A breaker half-opening is a change by time alone: look again then.
            self._changes.after_change(None)
            await self._changes.flush()
            wake = self._live.fleet.next_wakeup()
            delay = next_poll - loop.time()
            if refresh_every is not None:
                delay = min(delay, next_refresh - loop.time())
            if admin_every is not None:
                delay = min(delay, next_admin - loop.time())
            if wake is not None:
                # +1 ms: at exactly open_until the breaker has just half-opened.
                delay = min(delay, max(0.0, wake - self._now()) + 0.001)
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), max(0.0, delay))
        await self._changes.flush()
        await self._limits.finish()
