"""Drained and enabled trunks, the same on every engine.

With a :class:`SharedAdmin` (``engine.store.redis.trunk_admin``), a drain or enable is
written there for every engine before it is applied here, and every engine follows what
is written there about once a second (:meth:`AdminState.sync`), so a drained trunk stays
drained on an engine that takes its switch over or restarts.
"""

from __future__ import annotations

from typing import Protocol

from engine.store.errors import StoreError
from engine.telemetry.logging import get_logger
from engine.trunks.changes import Changed
from engine.trunks.live import LiveFleet

log = get_logger("engine.trunks")

#: How often each engine reads which trunks are drained (another engine's drain or enable
#: reaches this one within about this long).
ADMIN_SYNC_S = 1.0


class SharedAdmin(Protocol):
    """Which trunks are drained, for every engine (``TrunkAdmin`` in store.redis)."""

    async def set_drained(self, trunk: str, drained: bool) -> None: ...

    async def drained(self) -> set[str]: ...


class AdminState:
    def __init__(
        self,
        shared: SharedAdmin | None,
        live: LiveFleet,
        *,
        changed: Changed,
        sync_s: float = ADMIN_SYNC_S,
    ) -> None:
        self.shared = shared
        self.sync_s = sync_s
        self._live = live
        self._changed = changed
        self._changes = 0  # bumped by each local drain/enable (see sync)

    def drain(self, name: str) -> None:
        live = self._live
        live.fleet = live.fleet.drain(name)
        self._changed([name])

    def enable(self, name: str) -> None:
        live = self._live
        live.fleet = live.fleet.enable(name)
        self._changed([name])
        live.signal_release()  # waiting calls may use it now

    async def write(self, name: str, *, drained: bool) -> None:
        """Write a drain or enable of ``name`` for every engine (a storage error leaves
        it unchanged everywhere); the caller applies it here next."""
        if self.shared is not None:
            await self.shared.set_drained(name, drained)
        self._changes += 1

    async def sync(self) -> None:
        """Follow the shared admin state: drain what another engine drained, enable what it
        enabled. Storage away: the trunks keep their current admin state."""
        if self.shared is None:
            return
        changes = self._changes
        try:
            drained = await self.shared.drained()
        except StoreError as err:
            log.warning("cannot read the drained trunks; keeping the admin states", error=str(err))
            return
        if changes != self._changes:
            return  # a local drain/enable raced the read: the next read includes it
        live = self._live
        changed: list[str] = []
        enabled = False
        for name, state in live.fleet.states.items():
            if state.enabled == (name in drained):
                live.fleet = live.fleet.drain(name) if name in drained else live.fleet.enable(name)
                changed.append(name)
                enabled = enabled or name not in drained
        if changed:
            log.info(
                "trunk admin state from another engine", drained=sorted(drained & set(changed))
            )
            self._changed(changed)
            if enabled:
                live.signal_release()
