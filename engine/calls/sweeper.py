"""The sweeper: ends live calls that overstay a maximum duration.

``calls.sweep.overstays`` (pure) says which calls exceeded a limit. The
sweeper first asks the switch to hang such a call up, once; if no hangup
event arrives within ``force_after_s`` it ends the call itself as
``interrupted``, with its CDR.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from engine.calls.committer import StateCommitter
from engine.calls.live import LiveCalls
from engine.calls.ownership import EverySwitch, SwitchGate
from engine.calls.settings import CallSettings
from engine.calls.sweep import overstays
from engine.pbx.base import PbxDriver
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics

log = get_logger("engine.calls")


class Sweeper:
    def __init__(
        self,
        live: LiveCalls,
        committer: StateCommitter,
        *,
        drivers: Mapping[str, PbxDriver],
        settings: CallSettings,
        metrics: Metrics,
        now: Callable[[], float],
        gate: SwitchGate | None = None,
    ) -> None:
        self._gate: SwitchGate = gate or EverySwitch()
        self._live = live
        self._commit = committer
        self._drivers = drivers
        self._settings = settings
        self._metrics = metrics
        self._now = now
        self._swept: dict[str, float] = {}  # call id -> when the sweeper asked for a hangup
        self._closed = False

    def close(self) -> None:
        """Make :meth:`run` return at its next turn."""
        self._closed = True

    async def run(self) -> None:
        """Periodically end calls that overstay their maximum duration."""
        while not self._closed:
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("sweep failed")

    async def sweep_once(self) -> None:
        now = self._now()
        limits = self._settings.limits
        for over in overstays(list(self._live), now, limits):
            call = self._live.get(over.call_id)
            if call is None or not self._gate.owns_switch(call.switch):
                continue  # (another engine's switch now: its owner sweeps it)
            asked = self._swept.get(over.call_id)
            if asked is None:
                self._swept[over.call_id] = now
                self._metrics.calls_swept.labels(over.limit).inc()
                log.warning(
                    "call exceeded a maximum duration; hanging up",
                    call_id=over.call_id,
                    limit=over.limit,
                    age_s=round(over.age_s, 1),
                )
                try:
                    await asyncio.wait_for(
                        self._drivers[call.switch].hangup(call.current_leg, 16),
                        self._settings.storage_timeout_s,
                    )
                except Exception as err:
                    log.info("sweeper hangup failed", call_id=over.call_id, error=str(err))
            elif now - asked > limits.force_after_s:
                self._swept.pop(over.call_id, None)
                await self._commit.feed(
                    over.call_id,
                    "interrupted",
                    cause_text=f"exceeded {over.limit}; the switch never confirmed the hangup",
                )
        for call_id in [c for c in self._swept if c not in self._live]:
            self._swept.pop(call_id, None)
