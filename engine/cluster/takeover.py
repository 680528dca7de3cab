"""What an engine does with the leases it takes over: the restart recovery, in order.

The lease loop (:mod:`engine.cluster.ownership`) calls :meth:`LeaseTakeover.acquired` for every
lease it takes; one task then recovers them, one takeover at a time. A switch: its fence in
PostgreSQL is raised to our token, then its calls in the Redis registry are adopted and its
channel list decides (``take_switch``). Queues: the ACD is rebuilt from Redis (the previous
owner's mirror) and confirmed against the channel lists of the switches we own
(``take_queues``), which re-admits the callers still waiting and frees any agent whose call is
gone. A switch taken after the queues (in the same turn: leases are taken in name order, and
this task starts at the first) gives the ACD its channel list then (``confirm_queues``):
before, a caller waiting at the owner's death stayed unconfirmed, shown in the queue but never
offered (the SIGKILL drill, tests/integration/test_drill_takeover.py).

The callables are the composition root's (``engine/wiring/cluster.py``); this module knows no
domain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from engine.pbx.base import LiveChannel
from engine.telemetry.logging import get_logger

log = get_logger("engine.cluster")

Channels = Mapping[str, Sequence[LiveChannel]]


class LeaseTakeover:
    def __init__(
        self,
        *,
        show_fence: Callable[[str, int], Awaitable[bool]],
        take_switch: Callable[[str], Awaitable[object]],
        drop_switch: Callable[[str], object],
        take_queues: Callable[[Channels], Awaitable[object]],
        confirm_queues: Callable[[Channels], object],
        owned_channels: Callable[[], Awaitable[Channels]],
        pending: set[str] | None = None,
    ) -> None:
        self._show_fence = show_fence
        self._take_switch = take_switch
        self._drop_switch = drop_switch
        self._take_queues = take_queues
        self._confirm_queues = confirm_queues
        self._owned_channels = owned_channels
        self._switches: dict[str, int] = {}
        self._queues: set[str] = set()
        self._running: asyncio.Task[None] | None = None
        self._queues_taken = False  # the ACD was rebuilt from Redis by a takeover
        #: Queue leases taken and not yet recovered (shared with the composition root: a
        #: queue in it is not served yet, so no caller and no campaign is taken into it).
        self.pending: set[str] = pending if pending is not None else set()

    def acquired(self, name: str, token: int) -> None:
        """An ``Ownership.on_acquired`` listener (synchronous: records and spawns)."""
        kind = name.partition(":")[0]
        if kind == "switch":
            self._switches[name] = token
        elif kind == "queue":
            self._queues.add(name)
            self.pending.add(name)
        else:
            return
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run(), name="lease-takeover")

    def lost(self, name: str, token: int, reason: str) -> None:
        """An ``Ownership.on_lost`` listener: a switch lost is left at once."""
        kind, _, switch = name.partition(":")
        if kind == "switch":
            self._switches.pop(name, None)
            self._drop_switch(switch)
        elif kind == "queue":
            self._queues.discard(name)
            self.pending.discard(name)

    async def idle(self) -> None:
        """Wait for the recovery in flight (tests)."""
        while self._running is not None and not self._running.done():
            await asyncio.wait({self._running})

    async def _run(self) -> None:
        try:
            await self._recover()
        finally:
            # Recovered (or given up on with an error logged): the queues are served; with
            # no await between the loop's last check and here, none taken meanwhile is lost.
            self.pending.clear()

    async def _recover(self) -> None:
        while self._switches or self._queues:
            taken = dict(self._switches)
            self._switches.clear()
            fresh: list[str] = []
            for name, token in taken.items():
                switch = name.partition(":")[2]
                if not await self._show_fence(name, token):
                    continue
                fresh.append(switch)
                try:
                    await self._take_switch(switch)
                except Exception as err:
                    log.error("switch takeover recovery failed", switch=switch, error=str(err))
            if self._queues:
                self._queues.clear()
                self._queues_taken = True
                try:
                    await self._take_queues(await self._owned_channels())
                except Exception as err:
                    log.error("queue takeover recovery failed", error=str(err))
            elif fresh and self._queues_taken:
                # A switch taken after the queues: the turn takes leases in name order
                # ("queue:" before "switch:") and this task starts at the first one, so the
                # ACD may have been rebuilt while the switch was not ours. What it restored on
                # that switch (callers waiting, agents on calls) waits for this channel list.
                try:
                    live = await self._owned_channels()
                    self._confirm_queues({s: live[s] for s in fresh if s in live})
                except Exception as err:
                    log.error("queue takeover confirmation failed", error=str(err))
