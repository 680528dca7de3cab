"""Following the switches' events: the ACD's own subscription to each driver.

Every subscriber sees every event; the ACD acts only on the legs it
registered (its callers' legs and its agent legs) and on ``Resynced``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.acd.actions import SwitchActions
from engine.acd.entries import Entry, Phase
from engine.acd.lifecycle import EntryLifecycle
from engine.acd.offers import Offers, phone_unreachable
from engine.acd.state import AcdState
from engine.pbx.base import (
    Answered,
    HungUp,
    LinkState,
    OriginateFailed,
    PbxDriver,
    PbxEvent,
    Resynced,
    Unbridged,
)
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")

STASH_MAX = 2000


class EventFollower:
    def __init__(
        self,
        *,
        state: AcdState,
        offers: Offers,
        lifecycle: EntryLifecycle,
        actions: SwitchActions,
        resynced: Callable[[Resynced], None],
        supervisor: Callable[[PbxEvent], bool] = lambda _: False,
    ) -> None:
        self._s = state
        self._offers = offers
        self._life = lifecycle
        self._actions = actions
        self._resynced = resynced  # restart safety (restore.py)
        self._supervisor = supervisor  # supervisors' spy legs (supervisor.py)

    async def _resynced_when_up(self, event: Resynced, driver: PbxDriver) -> None:
        while driver.state is not LinkState.UP:
            if self._s.closed:
                return
            await asyncio.sleep(
                self._s.settings.tick_s
            )  # the link's state has no event to wait on here
        self._resynced(event)

    async def consume(self, driver: PbxDriver) -> None:
        """Follow one driver's events (its own subscription) until closed."""
        events = aiter(driver.events())
        while not self._s.closed:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            try:
                self.handle(event)
            except Exception:
                # One bad event must never stop the ACD from following calls.
                log.exception(
                    "acd event handling failed", switch=driver.name, event_type=event.type
                )

    def handle(self, event: PbxEvent) -> None:
        if isinstance(event, Resynced):
            driver = self._actions.drivers.get(event.switch)
            if driver is not None and driver.state is not LinkState.UP:
                # Both drivers publish Resynced while their link is still "syncing",
                # when every action is refused (PbxUnavailable, nothing sent). What a
                # resync does (hang up the phones of offers in flight at a crash, hold
                # music again, new offers) must wait for the link to be up, or the
                # phones ring on, the caller waits in silence and its agents are
                # never offered it again (seen live on Asterisk, test_acd_live (f)).
                self._actions.spawn(self._resynced_when_up(event, driver))
                return
            self._resynced(event)
            return
        if self._supervisor(event):
            return
        ref = self._s.legs.get(event.call_id)
        if ref is None:
            if self._s.originating > 0 and isinstance(event, Answered | HungUp | OriginateFailed):
                self._s.stash.setdefault(event.call_id, []).append(event)
                while len(self._s.stash) > STASH_MAX:
                    self._s.stash.popitem(last=False)
            return
        entry_id, agent_id = ref
        entry = self._s.entries.get(entry_id)
        if entry is None:
            if isinstance(event, HungUp | OriginateFailed):
                self._s.legs.pop(event.call_id, None)
            elif isinstance(event, Answered) and agent_id is not None:
                self._actions.spawn(self._actions.hangup_call(event.call_id))  # the caller is gone
            return
        if agent_id is None:
            self._caller_event(entry, event)
        else:
            self._agent_event(entry, agent_id, event)

    def _caller_event(self, entry: Entry, event: PbxEvent) -> None:
        if isinstance(event, HungUp):
            self._s.legs.pop(event.call_id, None)
            self._life.caller_gone(entry, self._s.now())
        elif isinstance(event, Unbridged):
            log.info("caller unbridged", call_id=entry.call_id, entry_id=entry.entry_id)

    def _agent_event(self, entry: Entry, agent_id: str, event: PbxEvent) -> None:
        now = self._s.now()
        offer = entry.offers.get(agent_id)
        if isinstance(event, Answered):
            if offer is None or not offer.open or entry.phase is not Phase.RINGING:
                # A late answer of a withdrawn offer: that phone must not stay up.
                self._actions.spawn(self._actions.hangup_call(event.call_id))
                return
            self._offers.answered(entry, offer, event.call_id, now)
        elif isinstance(event, HungUp | OriginateFailed):
            self._s.legs.pop(event.call_id, None)
            if offer is not None and offer.open and entry.phase is Phase.RINGING:
                self._offers.missed(
                    entry, offer, now, expired=False, unreachable=phone_unreachable(event)
                )
            elif entry.agent_id == agent_id and entry.phase is Phase.CONNECTED:
                self._life.agent_left(entry, now)
