"""A campaign runner's periodic check of its flights against their calls, for what no watcher
told it (see ``FlightCheck.run``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.campaigns.flight_tracker import FlightTracker
from engine.core.errors import EngineError
from engine.store.errors import StoreError
from engine.telemetry.logging import get_logger

if TYPE_CHECKING:
    from engine.campaigns.runner import CampaignRunner, RunnerDeps

log = get_logger("engine.campaigns")

#: How often a runner checks its flights against their calls (``check_flights``): a call
#: whose switch another engine owns, or one its engine adopted without telling the runner.
FLIGHT_CHECK_S = 1.0
#: Each look-up of a call this engine does not follow (the registry, the ended store).
LOOKUP_TIMEOUT_S = 2.0


class FlightCheck:
    def __init__(self, runner: CampaignRunner, deps: RunnerDeps, tracker: FlightTracker) -> None:
        self._r = runner
        self._d = deps
        self._tracker = tracker
        self._checked_at = float("-inf")  # loop time of the last check_flights
        self._checking = False

    def due(self) -> bool:
        """Whether a check is to start now (one every FLIGHT_CHECK_S, never two at once); if
        so, it counts as started."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked_at >= FLIGHT_CHECK_S and not self._checking:
            self._checked_at = loop.time()
            self._checking = True
            return True
        return False

    async def run(self) -> int:
        """Catch up with what the calls did that no watcher told this runner; returns how many
        flights moved.

        A runner hears of its calls through its own engine's calls service, which follows the
        calls of the switches this engine owns. Several engines: a switch's lease and a
        campaign's lease move separately (the lease loop hands switches back, the runner its
        campaign), so for a moment a runner can have flights on a switch its engine does not
        own (the switch handed back first; or a runner that recovered its attempts from the
        registry before its engine took the switch over). Their ends are folded and written
        (CDR, registry, ended store) by the switch's owner, and no watcher here hears of them:
        they stayed ``ringing`` in the runner, holding its lines (the handback race,
        docs/production.md). So every ``FLIGHT_CHECK_S`` each flight is compared with its call:

        - a call this engine follows (memory): any change the runner has not seen is taken
          (an answer or a verdict of a call adopted by a switch takeover, which tells no
          watcher);
        - a call another engine follows (looked up, with a timeout): only its end is taken,
          with the outcome its owner recorded; an answer is acted on by whoever follows the
          call (a person is never handed to a queue from here, through a switch not ours).
        """
        moved = 0
        try:
            for call_id, flight in list(self._r.flights.items()):
                if not flight.switch or self._r.flights.get(call_id) is not flight:
                    continue  # not placed yet, or ended meanwhile
                tracked = self._d.calls.is_tracked(call_id)
                try:
                    call = await asyncio.wait_for(self._d.calls.get(call_id), LOOKUP_TIMEOUT_S)
                except (EngineError, StoreError, TimeoutError) as err:
                    log.info("flight's call not looked up", call_id=call_id, error=str(err))
                    continue
                if self._r.flights.get(call_id) is not flight:
                    continue
                unseen = call.is_ended or (
                    tracked
                    and (
                        (call.answered_at is not None and flight.answered_at is None)
                        or (bool(call.amd_status) and flight.amd_status is None)
                    )
                )
                if unseen:
                    if not tracked:
                        log.warning(
                            "call ended on a switch another engine follows; outcome taken "
                            "from its record",
                            campaign=self._r.campaign_id,
                            call_id=call_id,
                            switch=call.switch,
                            cause=call.cause,
                        )
                    self._tracker.on_call(call, call)
                    moved += 1
        finally:
            self._checking = False
        return moved
