"""The trunks' reachability and switch links, from the drivers: ``TrunkStatus`` events
(:meth:`SwitchPoller.on_status`), the periodic poll (``PbxDriver.trunk_status``, e.g.
PJSIPShowEndpoints) and which switches' control links are down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from engine.pbx.base import LinkState, PbxDriver, TrunkStatus
from engine.telemetry.logging import get_logger
from engine.trunks.changes import Changed
from engine.trunks.live import LiveFleet

log = get_logger("engine.trunks")


class SwitchPoller:
    def __init__(
        self,
        live: LiveFleet,
        drivers: Mapping[str, PbxDriver] | None,
        *,
        now: Callable[[], float],
        changed: Changed,
    ) -> None:
        self.drivers = drivers
        self._live = live
        self._now = now
        self._changed = changed

    def look_at_links(self) -> None:
        """Trunks of a switch whose link is not up are not selected: nothing
        could be placed there, and it is not the carriers' fault."""
        if self.drivers is None:
            return
        live = self._live
        switches = {t.switch for t in live.fleet.trunks.values()}
        down = frozenset(
            s for s in switches if (d := self.drivers.get(s)) is None or d.state is not LinkState.UP
        )
        live.fleet = live.fleet.with_down_switches(down)

    def on_status(self, event: TrunkStatus) -> str | None:
        """A ``TrunkStatus`` from a driver (ContactStatus/PeerStatus, sofia
        gateway). Returns the trunk it was about, if any."""
        live = self._live
        name = live.fleet.trunk_for(event.switch, event.trunk)
        if name is None:
            return None
        live.fleet = live.fleet.report(name, event.status, self._now(), event.rtt_ms)
        self._changed([name])
        return name

    async def poll(self, drivers: Mapping[str, PbxDriver]) -> None:
        """Refresh reachability from every switch that has trunks and is up
        (``PbxDriver.trunk_status``).

        Asterisk sends ContactStatus only on a change, so a trunk already
        unreachable when we connected is never reported by an event; the
        poll also refreshes "unreachable" reports before their TTL ends.
        Failures are logged and skipped (the next poll tries again).
        """
        live = self._live
        switches = {t.switch for t in live.fleet.trunks.values()}
        for name in sorted(switches):
            driver = drivers.get(name)
            if driver is None or driver.state is not LinkState.UP:
                continue
            try:
                report = await driver.trunk_status()
            except Exception as err:  # link down, timeout: not fatal for a poll
                log.info("trunk poll failed", switch=name, error=str(err))
                continue
            now = self._now()
            for target, status in report.items():
                trunk = live.fleet.trunk_for(name, target)
                if trunk is not None:
                    live.fleet = live.fleet.report(trunk, status, now)
            self._changed(None)
