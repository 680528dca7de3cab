"""Calls that outlive a link or the engine itself (docs/durability.md).

- :meth:`Recovery.adopt`: at start, before the drivers connect, the live-call
  registry is loaded; calls of this engine's switches are tracked again.
- :meth:`Recovery.reconcile`: after every (re)connect the driver reports the
  switch's channels (``Resynced``). A tracked call whose channel is listed
  goes on; one whose channel is gone ends ``interrupted`` with its CDR.
- A call whose originate has an unknown outcome is never decided from one
  snapshot: Async originates create their channel after the reply, so the
  switch is asked about that exact channel until it appears or can no longer
  appear (``unknown_outcome_window_s``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping

from engine.calls.background import Background
from engine.calls.committer import StateCommitter
from engine.calls.fsm import apply_event
from engine.calls.live import LiveCalls
from engine.calls.model import Call, CallState, amd_params_of
from engine.calls.settings import CallSettings
from engine.pbx.base import HungUp, LinkState, OriginateFailed, PbxDriver, ResumesAmd, Resynced
from engine.store.redis.registry import CallRegistry
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService

log = get_logger("engine.calls")

#: How often a resumed AMD checks whether its switch's link is up again (a state read:
#: cheap; every 0.1 s the person waits at most that much longer for the verdict).
LINK_POLL_S = 0.1
#: Ends of channels no call here followed, kept for a switch takeover (``MissedEnds``).
MISSED_ENDS_MAX = 10_000


class MissedEnds:
    """The last ends (``HungUp``, ``OriginateFailed``) of channels this engine saw but did not
    follow: their switch was not ours, or the call was not adopted yet.

    Several engines: every engine is connected to every switch, and only the switch's owner
    folds its events. When a switch's lease moves (handed back, taken over), the old owner
    forgets its calls at once and the new one adopts them from the registry only once it has
    raised the switch's fence: an end in between was folded by nobody, and the channel list
    then said "gone", so the call ended ``interrupted`` (a ring timeout read as a link loss,
    and the attempt retried as not counted). The takeover now takes the end it missed, with
    its cause, instead. Bounded: the oldest are forgotten first."""

    def __init__(self, limit: int = MISSED_ENDS_MAX) -> None:
        self._ends: OrderedDict[str, HungUp | OriginateFailed] = OrderedDict()
        self._limit = limit

    def note(self, event: object) -> None:
        if isinstance(event, HungUp | OriginateFailed):
            self._ends[event.call_id] = event
            self._ends.move_to_end(event.call_id)
            while len(self._ends) > self._limit:
                self._ends.popitem(last=False)

    def take(self, leg: str) -> HungUp | OriginateFailed | None:
        return self._ends.pop(leg, None)


class Recovery:
    def __init__(
        self,
        live: LiveCalls,
        committer: StateCommitter,
        *,
        drivers: Mapping[str, PbxDriver],
        registry: CallRegistry,
        trunks: TrunkService | None,
        settings: CallSettings,
        metrics: Metrics,
        background: Background,
        now: Callable[[], float],
    ) -> None:
        self._live = live
        self._commit = committer
        self._drivers = drivers
        self._registry = registry
        self._trunks = trunks
        self._settings = settings
        self._metrics = metrics
        self._background = background
        self._now = now
        self._probing: set[str] = set()  # calls whose originate outcome is being asked
        self.missed = MissedEnds()
        #: Switches whose calls in the registry are not adopted: Redis could not be read
        #: when they were (at start, or a takeover). ``CallService.adopt_unread`` adopts
        #: them once Redis answers; ``unread_added`` wakes it.
        self.unread: set[str] = set()
        self.unread_added = asyncio.Event()
        self._closed = False

    def close(self) -> None:
        """Stop the probes at their next turn (and wake ``CallService.adopt_unread``)."""
        self._closed = True
        self.unread_added.set()

    async def adopt(self, switches: Collection[str] | None = None) -> int:
        """Load the live-call registry (at start, before the drivers connect).

        Calls of this engine's switches become tracked again; the first
        ``Resynced`` of each switch then decides: still up -> adopted (events
        flow, the CDR is written when it ends), gone -> ended ``interrupted``
        with its CDR. Group calls continue as plain calls (no further
        failover: the attempt plan lived in the old process).
        """
        # Calls the registry journal holds were changed after the registry's
        # last write (or never written: killed right after the 201), so their
        # journalled state wins; they are adopted even while Redis is away.
        recovered = {c.call_id: c for c in self._commit.mirror.take_recovered()}
        targets = set(self._drivers) if switches is None else set(switches)
        try:
            rows = await asyncio.wait_for(self._registry.all(), self._settings.storage_timeout_s)
        except Exception as err:
            # Not given up on: the calls Redis holds for these switches are live on them,
            # and untracked they would end with no CDR and no event. Adopted once Redis
            # answers (their ends seen meanwhile are kept in ``missed``).
            self.unread |= targets
            self.unread_added.set()
            if not recovered:
                raise
            log.error(
                "could not load the live-call registry; the journal's calls adopted now, "
                "the registry's once redis answers",
                calls=len(recovered),
                error=f"{type(err).__name__}: {err}",
            )
            rows = []
        else:
            self.unread -= targets
        calls: dict[str, Call] = {}
        for fields in rows:
            try:
                call = Call.from_json(fields["json"])
            except (KeyError, ValueError, TypeError) as err:
                log.error("unreadable registry entry skipped", error=str(err))
                continue
            if self._commit.mirror.recent_ended(call.call_id) is not None:
                # Ended here, its end not in Redis yet (an adoption late for Redis being
                # away, engine/calls/service.py adopt_unread): not live, not adopted again.
                continue
            calls[call.call_id] = call
        calls.update(recovered)
        adopted = 0
        for call in calls.values():
            if call.is_ended:
                if call.call_id in recovered:
                    # Ended (its CDR accepted) but maybe still in the registry.
                    self._commit.mirror.end(call)
                continue
            if call.switch not in self._drivers or call.call_id in self._live:
                continue
            if switches is not None and call.switch not in switches:
                continue  # another engine owns that switch link: its calls are its own
            self._live.put(call)
            if call.call_id in recovered:
                self._commit.mirror.put(call)  # tell the registry at last
            if call.current_leg != call.call_id:
                self._live.add_leg(call.current_leg, call.call_id)
            if self._trunks is not None and call.trunk:
                self._trunks.adopt(call.trunk, call.call_id)  # its channel stays held
            adopted += 1
        if adopted:
            self._metrics.calls_adopted.inc(adopted)
            log.info("live calls adopted from the registry", count=adopted)
        for switch in self._drivers:
            self._commit.refresh_live_gauge(switch)
        return adopted

    async def reconcile(self, event: Resynced, only: Collection[str] | None = None) -> None:
        """``only``: decide those calls alone (a takeover's adopted calls: calls this engine
        placed since it took the switch may be too new for the snapshot)."""
        live = {lc.call_id: lc for lc in event.live}
        mine = [
            c
            for c in self._live
            if c.switch == event.switch and not c.is_ended and (only is None or c.call_id in only)
        ]
        log.info("resync", switch=event.switch, live=len(live), tracked=len(mine))
        for call in mine:
            gc = self._live.groups.get(call.call_id)
            if gc is not None and not gc.in_flight:
                continue  # waiting for a free trunk: no leg exists to look for
            seen = live.get(call.current_leg)
            missed = self.missed.take(call.current_leg)
            if missed is not None:
                # Its end came while nobody here followed it (a channel list may still show
                # a channel that just went): folded now, with its cause.
                async with self._live.lock(call.call_id):
                    current = self._live.get(call.call_id)
                    if current is not None and not current.is_ended:
                        step = apply_event(current, missed, self._now())
                        self._commit.commit(current, step, missed.type, missed)
                continue
            if seen is None:
                if call.outcome_unknown or call.state is CallState.CREATED:
                    # The originate may have been written but not processed
                    # yet (Async originates create the channel later): one
                    # snapshot cannot tell "never placed" from "not yet".
                    self._probe_unknown(call.call_id)
                    continue
                await self._commit.feed(
                    call.call_id,
                    "interrupted",
                    cause_text="switch link lost; the channel was gone after reconnect",
                )
                continue
            if call.outcome_unknown or call.state is CallState.CREATED:
                await self._commit.feed(call.call_id, "originate_accepted")
            if seen.state == "answered":
                await self._commit.feed(call.call_id, "Answered")
            unbridged = call.bridged_at is None and not seen.bridge_id
            if call.then.get("kind") == "amd" and call.amd_status is None and unbridged:
                # (A bridged one was handed over without a verdict: a re-park would cut it.)
                self._resume_amd(call, answered=seen.state == "answered")
        self._commit.publish(
            {"type": "Resynced", "switch": event.switch, "ts": event.ts, "live": len(live)}
        )

    def _resume_amd(self, call: Call, *, answered: bool) -> None:
        """An Amd() call with no result yet: its analysis may have died with the previous
        process (or its result been sent while the link was down). The driver makes sure
        one AmdResult comes (base.ResumesAmd); a driver that already follows the leg
        does nothing."""
        driver = self._drivers[call.switch]
        if not isinstance(driver, ResumesAmd):
            return
        params = amd_params_of(call.then)

        async def resume() -> None:
            # The Resynced comes while the link is still syncing, when every command is
            # refused (the ACD waits the same way, engine/acd/following.py): wait for UP.
            # The link state has no event to wait on here; the wait is bounded.
            deadline = self._now() + self._settings.unknown_outcome_window_s
            while driver.state is not LinkState.UP:
                if self._closed or self._now() > deadline:
                    log.warning("AMD not resumed: link not up", call_id=call.call_id)
                    return
                await asyncio.sleep(LINK_POLL_S)
            try:
                await asyncio.wait_for(
                    driver.resume_amd(call.current_leg, answered=answered, params=params),
                    self._settings.storage_timeout_s,
                )
            except Exception as err:  # the leg went, or the link: its end decides
                log.warning("AMD not resumed", call_id=call.call_id, error=str(err))

        self._background.spawn(resume())

    def _probe_unknown(self, call_id: str) -> None:
        if call_id in self._probing:
            return
        self._probing.add(call_id)
        self._background.spawn(self._probe(call_id))

    async def _probe(self, call_id: str) -> None:
        """Ask the switch for this exact channel until it appears or can no
        longer appear (``unknown_outcome_window_s`` after the call was created)."""
        settings = self._settings
        try:
            while not self._closed:
                call = self._live.get(call_id)
                if call is None or call.is_ended:
                    return
                if call.state is not CallState.CREATED and not call.outcome_unknown:
                    return  # its own events arrived meanwhile
                driver = self._drivers[call.switch]
                try:
                    chans = await asyncio.wait_for(driver.live_calls(), settings.storage_timeout_s)
                except Exception as err:  # link down again: the next resync decides
                    log.info("unknown-outcome probe: switch not answering", error=str(err))
                    chans = None
                if chans is not None:
                    seen = next((c for c in chans if c.call_id == call.current_leg), None)
                    if seen is not None:
                        await self._commit.feed(call_id, "originate_accepted")
                        await self._commit.update(
                            call_id, lambda c: c.evolve(outcome_unknown=False)
                        )
                        if seen.state == "answered":
                            await self._commit.feed(call_id, "Answered")
                        return
                    if self._now() - call.created_at > settings.unknown_outcome_window_s:
                        await self._commit.feed(
                            call_id,
                            "interrupted",
                            cause_text=(
                                "originate outcome unknown; the channel never appeared within "
                                f"{settings.unknown_outcome_window_s:g} s"
                            ),
                        )
                        return
                await asyncio.sleep(settings.probe_interval_s)
        finally:
            self._probing.discard(call_id)
