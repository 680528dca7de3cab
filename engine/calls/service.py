"""The calls service: the only place in the calls domain with side effects.

It carries out what the pure state machine (``calls.fsm``) decides, and is
composed from collaborators with one job each (docs/architecture.md
"Calls service composition"):

- :class:`LiveCalls` (``live.py``): the in-memory table of live calls, their
  locks, the leg -> call map and the trunk side of group calls; no I/O.
- :class:`StateCommitter` (``committer.py``): applies a state-machine step:
  keeps it in memory, hands it to the registry mirror, publishes it through
  the events outbox lane and writes the CDR when the call ends. It never
  waits on storage.
- :class:`DirectDialing` / :class:`GroupDialing`: place a call on an
  endpoint or trunk, or through a trunk group with failover between attempts.
- :class:`Recovery`: adoption at start, reconciliation on ``Resynced`` and the
  unknown-outcome probe; :class:`Sweeper`: maximum durations.
- :class:`CallLookup` and :class:`OriginateKeys`: reads, and Idempotency-Key.

This class is the facade the API and the engine use: commands (originate,
hangup, redirect, DTMF), the event loop of each driver, and the lifecycle
(adopt, sweep, drain, close).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from engine.calls.background import Background
from engine.calls.cdr import CdrWriter
from engine.calls.commands import OriginateCommand
from engine.calls.committer import StateCommitter
from engine.calls.direct_dialing import DirectDialing
from engine.calls.errors import (
    CallAlreadyEnded,
    EngineDraining,
    OutboxUnwritable,
    SwitchActionFailed,
    SwitchNotOwned,
    SwitchUnavailable,
    UnsafeCallValue,
)
from engine.calls.fsm import apply_event
from engine.calls.group_dialing import GroupDialing
from engine.calls.idempotency import OriginateKeys
from engine.calls.inbound import InboundCalls
from engine.calls.live import LiveCalls
from engine.calls.lookup import CallLookup
from engine.calls.mirror import RegistryMirror
from engine.calls.model import Call, then_to_dict
from engine.calls.ownership import EverySwitch, SwitchGate
from engine.calls.recovery import Recovery
from engine.calls.settings import CallSettings
from engine.calls.sweeper import Sweeper
from engine.calls.switches import named_driver
from engine.core import clock
from engine.core.errors import ActionFailed, PbxUnavailable, UnsafeValue
from engine.pbx.base import (
    Amd,
    LinkChanged,
    LinkState,
    PbxDriver,
    PbxEvent,
    Resynced,
    Then,
    TrunkStatus,
)
from engine.store.outbox import Lane
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.store.retry import until_answered
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService

log = get_logger("engine.calls")

#: How often the adoption of a switch's calls whose registry read failed is tried again.
ADOPT_RETRY_S = 5.0


class CallService:
    def __init__(
        self,
        *,
        drivers: Mapping[str, PbxDriver],
        registry: CallRegistry,
        mirror: RegistryMirror,
        events: Lane,
        idempotency: IdempotencyStore,
        cdrs: CdrWriter,
        metrics: Metrics,
        now: Callable[[], float] = clock.now,
        trunks: TrunkService | None = None,
        settings: CallSettings | None = None,
        gate: SwitchGate | None = None,
    ) -> None:
        self._drivers = dict(drivers)
        # Which switch links this engine commands (engine/calls/ownership.py).
        self.gate: SwitchGate = gate or EverySwitch()
        self._trunks = trunks
        self._metrics = metrics
        # Collaborators read the time through this, so a test can set ``_now``.
        self._now = now
        self._closed = False
        self._draining = False
        # Names of the outbox journals whose disk refuses writes (set by the wiring to
        # Outbox.unwritable); while any is, new originates get 503 storage-unavailable.
        self.outbox_unwritable: Callable[[], list[str]] = list
        # Told after a redirect through the API took a call somewhere else: the ACD lets a
        # queued caller go instead of offering, bridging or hanging it up (engine/wiring/acd.py).
        self.redirected: Callable[[str], object] = lambda call_id: None
        settings = self._settings = settings or CallSettings()

        def current_time() -> float:
            return self._now()

        live = self._live = LiveCalls()
        # The live calls themselves (tests look at and change them directly).
        self._calls = live.calls
        background = Background()
        self._commit = StateCommitter(
            live,
            mirror=mirror,
            events=events,
            cdrs=cdrs,
            metrics=metrics,
            now=current_time,
            # The group dialer (built below) gives back what an ending call held.
            on_end=lambda call: self._groups.on_end(call),
        )
        self._lookup = CallLookup(live, registry, mirror)
        keys = OriginateKeys(idempotency, mirror, self._lookup)
        self._direct = DirectDialing(
            live,
            self._commit,
            drivers=self._drivers,
            lookup=self._lookup,
            keys=keys,
            metrics=metrics,
            now=current_time,
            gate=self.gate,
        )
        self._groups = GroupDialing(
            live,
            self._commit,
            drivers=self._drivers,
            trunks=trunks,
            lookup=self._lookup,
            keys=keys,
            metrics=metrics,
            background=background,
            handle=self.handle,
            now=current_time,
            gate=self.gate,
        )
        self._recovery = Recovery(
            live,
            self._commit,
            drivers=self._drivers,
            registry=registry,
            trunks=trunks,
            settings=settings,
            metrics=metrics,
            background=background,
            now=current_time,
        )
        self._inbound = InboundCalls(live, self._commit, drivers=self._drivers, now=current_time)
        self._sweeper = Sweeper(
            live,
            self._commit,
            drivers=self._drivers,
            settings=settings,
            metrics=metrics,
            now=current_time,
            gate=self.gate,
        )

    # ------------------------------------------------------------------ queries

    def driver(self, name: str) -> PbxDriver:
        return named_driver(self._drivers, name)

    @property
    def drivers(self) -> Mapping[str, PbxDriver]:
        return self._drivers

    @property
    def trunks(self) -> TrunkService | None:
        return self._trunks

    def watch(self, observer: Callable[[Call, Call], None]) -> None:
        """Call ``observer(before, after)`` on every committed change of a call (synchronously,
        on the event path: it must only record and return)."""
        self._commit.watchers.append(observer)

    def tracked(self) -> list[Call]:
        """The live calls this engine tracks (a snapshot)."""
        return list(self._live)

    def is_tracked(self, call_id: str) -> bool:
        """Whether this engine has ``call_id`` in its live table (memory only, no I/O)."""
        return call_id in self._live

    async def adopt_inbound(self, leg: str) -> Call | None:
        """Take charge of an inbound channel (engine.calls.inbound)."""
        return await self._inbound.adopt(leg)

    async def get(self, call_id: str) -> Call:
        return await self._lookup.get(call_id)

    async def list_live(self) -> list[Call]:
        return await self._lookup.list_live()

    # ------------------------------------------------------------------ commands

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]:
        """Place one call. Returns the call and whether it was created now
        (False when an earlier request with the same Idempotency-Key placed it)."""
        if self._draining:
            raise EngineDraining(
                "the engine is shutting down and takes no new calls",
                details={"retry_after_s": EngineDraining.retry_after_s},
            )
        if unwritable := self.outbox_unwritable():
            # What the engine accepts goes to the outbox first: a disk that refuses it
            # would hold the new call's records in memory only (docs/durability.md).
            raise OutboxUnwritable(
                "the engine's outbox disk (data_dir) refuses writes; no new calls until it"
                " accepts them",
                details={"journals": unwritable, "retry_after_s": OutboxUnwritable.retry_after_s},
            )
        self._check_owned(cmd.switch)
        if cmd.trunk_group is not None or cmd.trunk is not None:
            return await self._groups.originate(cmd, idempotency_key)
        return await self._direct.originate(cmd, idempotency_key)

    def _check_owned(self, switch: str | None) -> None:
        """Refused before anything is tracked, journalled or sent when this engine does not
        own the switch asked for, or owns none (several engines: engine/cluster). A local
        read: an engine frozen past its lease's deadline is refused here when it wakes."""
        if switch is not None:
            name = self.driver(switch).name  # unknown -> 400 unknown-switch
            if self.gate.owns_switch(name):
                return
            raise SwitchNotOwned(
                f"switch {name!r} is owned by another engine (lease switch:{name}); "
                "send the request to its owner or retry",
                details={
                    "switch": name,
                    "lease": f"switch:{name}",
                    "retry_after_s": SwitchNotOwned.retry_after_s,
                },
            )
        if not any(self.gate.owns_switch(n) for n in self._drivers):
            raise SwitchNotOwned(
                "this engine owns no switch link at the moment (another engine does)",
                details={"retry_after_s": SwitchNotOwned.retry_after_s},
            )

    async def hangup(self, call_id: str, cause: int = 16) -> Call:
        call = await self._live_call(call_id)
        if await self._groups.hangup_waiting(call_id, cause):
            return await self.get(call_id)
        await self._driver_call(call, lambda d: d.hangup(call.current_leg, cause))
        return call

    async def redirect(self, call_id: str, then: Then) -> Call:
        if isinstance(then, Amd):
            # AMD listens from the answer on; a live call cannot be sent back to it.
            raise UnsafeCallValue("then kind 'amd' is for originate only, not for a redirect")
        call = await self._live_call(call_id)
        await self._driver_call(call, lambda d: d.redirect(call.current_leg, then))
        self.redirected(call_id)
        updated = await self._commit.update(call_id, lambda c: c.evolve(then=then_to_dict(then)))
        return updated if updated is not None else await self.get(call_id)

    async def annotate(self, call_id: str, values: Mapping[str, str]) -> Call:
        """Add ``values`` to a live call's variables: they are on the call from now
        on (API, registry) and in its CDR (``variables``) when it ends."""
        updated = await self._commit.update(
            call_id, lambda c: c.evolve(variables={**c.variables, **values})
        )
        if updated is None:
            return await self._live_call(call_id)  # CallNotFound / CallAlreadyEnded
        return updated

    async def send_dtmf(self, call_id: str, digits: str) -> Call:
        call = await self._live_call(call_id)
        await self._driver_call(call, lambda d: d.send_dtmf(call.current_leg, digits))
        return call

    async def _live_call(self, call_id: str) -> Call:
        call = await self.get(call_id)
        if call.is_ended:
            raise CallAlreadyEnded(
                f"call {call_id!r} has already ended",
                details={"call_id": call_id, "cause": call.cause, "ended_at": call.ended_at},
            )
        return call

    async def _driver_call(self, call: Call, action: Callable[[PbxDriver], Any]) -> None:
        driver = self.driver(call.switch)
        self._check_owned(call.switch)  # lost meanwhile (or frozen past it): not sent
        try:
            await action(driver)
        except PbxUnavailable as err:
            raise SwitchUnavailable(
                f"switch {call.switch!r} is not available: {err}",
                details={"switch": call.switch, "call_id": call.call_id},
            ) from err
        except UnsafeValue as err:
            raise UnsafeCallValue(
                f"not sent: {err}", details={"switch": call.switch, "call_id": call.call_id}
            ) from err
        except ActionFailed as err:
            raise SwitchActionFailed(
                f"switch {call.switch!r} refused the action: {err}",
                details={"switch": call.switch, "call_id": call.call_id, "response": err.response},
            ) from err

    # ------------------------------------------------------------------ events

    async def consume(self, driver: PbxDriver) -> None:
        """Fold a driver's event stream into calls until the stream ends or
        :meth:`close` is called.

        Why a flag and not only task cancellation: redis-py 8.1's asyncio
        client swallows a CancelledError that lands while a command is in
        flight (measured: most cancels during a publish are lost), so a
        cancelled consumer could go back to waiting for the next event
        forever. The flag is checked before every wait.
        """
        events = aiter(driver.events())
        while not self._closed:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            try:
                await self.handle(event)
            except Exception:
                # One bad event must never stop the engine from tracking calls.
                # (structlog's first argument is named ``event``: the event
                # type goes in ``event_type``, or the net itself would raise.)
                log.exception("event handling failed", switch=driver.name, event_type=event.type)

    async def handle(self, event: PbxEvent) -> None:
        if isinstance(event, LinkChanged):
            if event.state is LinkState.UP and self._trunks is not None:
                self._trunks.request_poll()
            self._metrics.switch_up.labels(event.switch).set(
                1 if event.state is LinkState.UP else 0
            )
            log.info(
                "switch link", switch=event.switch, state=event.state.value, reason=event.reason
            )
            self._commit.publish(event.to_dict())
            return
        if not self.gate.owns_switch(event.switch):
            # Several engines: the switch's owner folds its events (resyncs, trunk states,
            # calls). Read from local state, so an engine woken past its lease does not
            # commit what it finds in its socket. An end is remembered: should this engine
            # take the switch over, a call that ended while its lease moved ends with it.
            self._recovery.missed.note(event)
            return
        if isinstance(event, Resynced):
            await self._recovery.reconcile(event)
            return
        if isinstance(event, TrunkStatus):
            if self._trunks is not None:
                self._trunks.on_status(event)
            self._commit.publish(event.to_dict())
            return
        call_id = self._live.owner(event.call_id)
        if call_id not in self._live:
            # A leg the engine does not own (e.g. the far end of a dial), or a call of a
            # switch just taken over and not adopted yet (its end is remembered for that).
            self._recovery.missed.note(event)
            return
        async with self._live.lock(call_id):
            call = self._live.get(call_id)
            if call is None:
                return
            call = await self._groups.fold(call, event)
            if call is None:
                return  # a late event of a settled attempt, or it failed over
            step = apply_event(call, event, self._now())
            self._commit.commit(call, step, event.type, event)

    # ------------------------------------------------------------------ lifecycle

    async def adopt(self) -> int:
        """Load the live-call registry at start (see :meth:`Recovery.adopt`): the calls of
        the switches this engine owns."""
        return await self._recovery.adopt({n for n in self._drivers if self.gate.owns_switch(n)})

    async def take_switch(self, switch: str) -> int:
        """This engine just became the owner of ``switch`` (a takeover, or its owner handed
        it back): the same recovery as after a restart. Its calls in the registry are
        tracked again, and the switch's channel list decides, as a ``Resynced`` does,
        which are still up (adopted) and which ended meanwhile (CDR ``interrupted``).
        Returns how many calls were adopted."""
        before = {c.call_id for c in self._live if c.switch == switch}
        adopted = await self._recovery.adopt({switch})
        await self._decide_taken(switch, before)
        return adopted

    async def adopt_unread(self, retry_s: float = ADOPT_RETRY_S) -> None:
        """Until :meth:`close` (a task of the engine's group): the calls of switches whose
        registry could not be read when they were adopted (at start, or a takeover;
        ``Recovery.unread``) are adopted once Redis answers, as at a takeover: the switch's
        channel list decides which are still up, and an end seen meanwhile is folded with
        its cause. Before, a Redis timeout at start left them untracked for good: live on
        the switch, ended with no CDR and no event. A switch lost meanwhile is left to its
        new owner."""
        recovery = self._recovery
        while not self._closed:
            if not recovery.unread:
                recovery.unread_added.clear()
                await recovery.unread_added.wait()
                continue
            switch = min(recovery.unread)
            if not self.gate.owns_switch(switch):
                recovery.unread.discard(switch)
                continue
            await self._adopt_late(switch, retry_s)

    async def _adopt_late(self, switch: str, retry_s: float) -> None:
        recovery = self._recovery
        before = await until_answered(
            lambda: self._adopt_switch(switch),
            retry_s=retry_s,
            closed=lambda: (
                self._closed or switch not in recovery.unread or not self.gate.owns_switch(switch)
            ),
            log=log,
            message="live calls in the registry not adopted yet: redis unavailable; will retry",
            switch=switch,
        )
        if before is None:
            return  # closed, adopted by a takeover meanwhile, or the switch lost
        try:
            await self._decide_taken(switch, before)
        except Exception as err:  # the link's next resync decides them
            log.warning(
                "calls adopted late not checked against the channel list",
                switch=switch,
                error=f"{type(err).__name__}: {err}",
            )

    async def _adopt_switch(self, switch: str) -> set[str]:
        """Adopt the switch's calls from the registry; the calls tracked on it before."""
        before = {c.call_id for c in self._live if c.switch == switch}
        await self._recovery.adopt({switch})
        return before

    async def _decide_taken(self, switch: str, before: set[str]) -> None:
        """The switch's channel list decides the calls adopted since ``before`` (the calls
        tracked on it just before the adoption)."""
        taken = {c.call_id for c in self._live if c.switch == switch} - before
        driver = self._drivers[switch]
        if taken and driver.state is LinkState.UP:
            channels = await asyncio.wait_for(driver.live_calls(), self._settings.storage_timeout_s)
            # Only the adopted calls are decided: one this engine placed since it took the
            # switch may not be in the channel list yet (FreeSWITCH's lagging core database).
            await self._recovery.reconcile(
                Resynced(switch=switch, call_id="", ts=self._now(), live=tuple(channels)),
                only=taken,
            )
        # A link that is not up resyncs when it comes up (the driver's own Resynced).

    async def flushed(self, timeout_s: float) -> bool:
        """Wait until the registry has every change made so far (a switch handed back: the
        new owner adopts its calls from the registry, so a call that ended here must not be
        there as live any more, or it would be ended twice, with two CDRs)."""
        return await self._commit.mirror.wait_flushed(timeout_s)

    def drop_switch(self, switch: str) -> int:
        """This engine lost ``switch``: forget its calls without ending them (no event, no
        CDR): the new owner adopts them from the registry and decides. Returns how many."""
        gone = [c.call_id for c in self._live if c.switch == switch]
        for call_id in gone:
            self._live.remove(call_id)
        if gone:
            log.warning("calls left to the switch's new owner", switch=switch, calls=len(gone))
        self._commit.refresh_live_gauge(switch)
        return len(gone)

    async def sweep(self) -> None:
        """Periodically end calls that overstay their maximum duration."""
        await self._sweeper.run()

    async def sweep_once(self) -> None:
        await self._sweeper.sweep_once()

    def close(self) -> None:
        """Make every ``consume`` loop, the sweeper and the probes return
        after their current step."""
        self._closed = True
        self._recovery.close()
        self._sweeper.close()

    def drain(self) -> None:
        """Refuse new originates (503 ``draining``); live calls go on."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining
