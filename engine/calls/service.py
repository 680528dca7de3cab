"""The calls service: the only place in the calls domain with side effects.

It carries out what the pure state machine (``calls.fsm``) decides: it places
originates through a :class:`PbxDriver`, folds driver events into calls,
mirrors live calls into Redis, publishes every change on the event stream and
writes one CDR per leg when it ends.

Group calls (``trunk_group``): the trunk planner (``engine.trunks.planner``,
through :class:`TrunkService`) picks the trunk of each attempt. Each attempt
is one originated leg with its own channel id (``attempt_leg_id``); events of
the current leg are routed back to the call, late events of earlier legs are
dropped. When the current leg ends unanswered, the planner is asked before the
state machine: a failover cause places the next attempt at once (the call
stays up, ``next_attempt``; a CDR row is written for the failed attempt),
anything else ends the call as usual. See docs/trunks.md "The service".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from engine.calls.commands import OriginateCommand
from engine.calls.errors import (
    CallAlreadyEnded,
    EngineDraining,
    IdempotencyKeyReused,
    SwitchActionFailed,
    SwitchUnavailable,
    UnknownSwitch,
)
from engine.calls.fsm import apply_event
from engine.calls.group_dialing import GroupDialing
from engine.calls.model import (
    Call,
    CallState,
    dial_target,
    then_to_dict,
)
from engine.calls.sweep import overstays
from engine.core import clock
from engine.core.errors import ActionFailed, OutcomeUnknown, PbxUnavailable
from engine.core.ids import new_call_id
from engine.pbx.base import (
    LinkChanged,
    LinkState,
    OriginateRequest,
    PbxDriver,
    PbxEvent,
    Resynced,
    Then,
    TrunkStatus,
)
from engine.telemetry.logging import get_logger
from engine.trunks.service import TrunkService

log = get_logger("engine.calls")


class CallService(GroupDialing):
    def driver(self, name: str) -> PbxDriver:
        try:
            return self._drivers[name]
        except KeyError:
            raise UnknownSwitch(
                f"unknown switch {name!r}",
                details={"switch": name, "known": sorted(self._drivers)},
            ) from None

    @property
    def drivers(self) -> Mapping[str, PbxDriver]:
        return self._drivers

    @property
    def trunks(self) -> TrunkService | None:
        return self._trunks

    def _pick_switch(self, wanted: str | None) -> PbxDriver:
        if wanted is not None:
            return self.driver(wanted)
        up = [d for d in self._drivers.values() if d.state is LinkState.UP]
        if not up:
            raise SwitchUnavailable(
                "no switch link is up",
                details={"switches": {n: d.state.value for n, d in self._drivers.items()}},
            )

        # Least loaded first; the name breaks ties so the choice is stable.
        def load(d: PbxDriver) -> tuple[int, str]:
            return (sum(1 for c in self._calls.values() if c.switch == d.name), d.name)

        return min(up, key=load)

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
        if cmd.trunk_group is not None or cmd.trunk is not None:
            if cmd.switch is not None:
                self.driver(cmd.switch)  # unknown -> 400 unknown-switch
            return await self._originate_group(cmd, idempotency_key)
        driver = self._pick_switch(cmd.switch)
        call_id = new_call_id()
        fingerprint = cmd.fingerprint()

        call = Call(
            call_id=call_id,
            switch=driver.name,
            state=CallState.CREATED,
            to=cmd.to,
            then=then_to_dict(cmd.then),
            created_at=self._now(),
            trunk=cmd.trunk,
            endpoint=cmd.endpoint,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            variables=dict(cmd.variables),
        )
        if idempotency_key:
            # Save before claiming the key: whoever finds the key taken can then
            # always read the call it points to.
            await self._mirror.write_now(call)
            previous = await self._idem.claim(idempotency_key, f"{call_id} {fingerprint}")
            if previous is not None:
                await self._mirror.remove_now(call_id)
                prev_id, _, prev_fp = previous.partition(" ")
                if prev_fp != fingerprint:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used for a different request",
                        details={"idempotency_key": idempotency_key, "call_id": prev_id},
                    )
                return await self.get(prev_id), False
        self._metrics.calls_originated.labels(driver.name).inc()
        request = OriginateRequest(
            call_id=call_id,
            target=dial_target(call),
            then=cmd.then,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            timeout_s=cmd.timeout_s,
            variables=dict(cmd.variables),
        )
        # Tracked, mirrored and "created" accepted before the originate is
        # written, so its first event always finds the call and comes after.
        self._calls[call_id] = call
        if not idempotency_key:
            self._save(call)
        self._publish_state(call, None)
        started = clock.monotonic()
        try:
            await driver.originate(request)
        except OutcomeUnknown as err:
            # Written but unacknowledged: never re-send. The resync after the
            # reconnect (or the channel's own events) decides what happened.
            log.warning("originate outcome unknown", call_id=call_id, error=str(err))
            await self._update(call_id, lambda c: c.evolve(outcome_unknown=True))
        except PbxUnavailable as err:
            await self._end_rejected(call_id, f"not placed: switch unavailable ({err})")
            if idempotency_key:
                # Nothing reached the switch, so a retry with the same key may place it.
                await self._idem.release(idempotency_key)
            raise SwitchUnavailable(
                f"switch {driver.name!r} is not available: {err}",
                details={"switch": driver.name, "state": driver.state.value, "call_id": call_id},
            ) from err
        except ActionFailed as err:
            await self._end_rejected(call_id, f"switch refused the originate: {err}")
            raise SwitchActionFailed(
                f"switch {driver.name!r} refused the originate: {err}",
                details={"switch": driver.name, "call_id": call_id, "response": err.response},
            ) from err
        else:
            self._metrics.originate_latency.labels(driver.name).observe(clock.monotonic() - started)
            await self._feed(call_id, "originate_accepted")
        return await self.get(call_id), True

    # ------------------------------------------------------------------ group calls

    async def hangup(self, call_id: str, cause: int = 16) -> Call:
        call = await self._live(call_id)
        gc = self._groups.get(call_id)
        if gc is not None and not gc.in_flight and not gc.plan.finished:
            # Waiting for a free trunk between attempts: no leg exists to hang
            # up. Finish the plan (the waiting task then stops) and end the call.
            gc.plan = replace(gc.plan, finished=True)
            await self._feed(
                call_id, "HungUp", cause=cause, cause_text="hung up while waiting for a trunk"
            )
            return await self.get(call_id)
        await self._driver_call(call, lambda d: d.hangup(call.current_leg, cause))
        return call

    async def redirect(self, call_id: str, then: Then) -> Call:
        call = await self._live(call_id)
        await self._driver_call(call, lambda d: d.redirect(call.current_leg, then))
        return await self._update(call_id, lambda c: c.evolve(then=then_to_dict(then)))

    async def send_dtmf(self, call_id: str, digits: str) -> Call:
        call = await self._live(call_id)
        await self._driver_call(call, lambda d: d.send_dtmf(call.current_leg, digits))
        return call

    async def _live(self, call_id: str) -> Call:
        call = await self.get(call_id)
        if call.is_ended:
            raise CallAlreadyEnded(
                f"call {call_id!r} has already ended",
                details={"call_id": call_id, "cause": call.cause, "ended_at": call.ended_at},
            )
        return call

    async def _driver_call(self, call: Call, action: Callable[[PbxDriver], Any]) -> None:
        driver = self.driver(call.switch)
        try:
            await action(driver)
        except PbxUnavailable as err:
            raise SwitchUnavailable(
                f"switch {call.switch!r} is not available: {err}",
                details={"switch": call.switch, "call_id": call.call_id},
            ) from err
        except ActionFailed as err:
            raise SwitchActionFailed(
                f"switch {call.switch!r} refused the action: {err}",
                details={"switch": call.switch, "call_id": call.call_id, "response": err.response},
            ) from err

    # ------------------------------------------------------------------ events

    def close(self) -> None:
        """Make every ``consume`` loop return after its current event."""
        self._closed = True

    def drain(self) -> None:
        """Refuse new originates (503 ``draining``); live calls go on."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

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
            self._publish(event.to_dict())
            return
        if isinstance(event, Resynced):
            await self._reconcile(event)
            return
        if isinstance(event, TrunkStatus):
            if self._trunks is not None:
                self._trunks.on_status(event)
            self._publish(event.to_dict())
            return
        call_id = self._legs.get(event.call_id, event.call_id)
        if call_id not in self._calls:
            return  # a leg the engine does not own (e.g. the far end of a dial)
        async with self._lock(call_id):
            call = self._calls.get(call_id)
            if call is None:
                return
            gc = self._groups.get(call_id)
            if gc is not None:
                if event.call_id != call.current_leg or not gc.in_flight:
                    # A late event of an attempt already settled (Asterisk
                    # sends the failed OriginateResponse after the Hangup).
                    return
                if await self._group_event(call, gc, event):
                    return
                call = self._calls[call_id]
            step = apply_event(call, event, self._now())
            self._publish(self._event_dict(event, call))
            await self._commit(call, step, event.type)

    async def _reconcile(self, event: Resynced) -> None:
        live = {lc.call_id: lc for lc in event.live}
        mine = [c for c in self._calls.values() if c.switch == event.switch and not c.is_ended]
        log.info("resync", switch=event.switch, live=len(live), tracked=len(mine))
        for call in mine:
            gc = self._groups.get(call.call_id)
            if gc is not None and not gc.in_flight:
                continue  # waiting for a free trunk: no leg exists to look for
            seen = live.get(call.current_leg)
            if seen is None:
                if call.outcome_unknown or call.state is CallState.CREATED:
                    # The originate may have been written but not processed
                    # yet (Async originates create the channel later): one
                    # snapshot cannot tell "never placed" from "not yet".
                    self._probe_unknown(call.call_id)
                    continue
                await self._feed(
                    call.call_id,
                    "interrupted",
                    cause_text="switch link lost; the channel was gone after reconnect",
                )
                continue
            if call.outcome_unknown or call.state is CallState.CREATED:
                await self._feed(call.call_id, "originate_accepted")
            if seen.state == "answered":
                await self._feed(call.call_id, "Answered")
        self._publish(
            {"type": "Resynced", "switch": event.switch, "ts": event.ts, "live": len(live)}
        )

    # ------------------------------------------------------------------ recovery

    async def adopt(self) -> int:
        """Load the live-call registry (at start, before the drivers connect).

        Calls of this engine's switches become tracked again; the first
        ``Resynced`` of each switch then decides: still up -> adopted (events
        flow, the CDR is written when it ends), gone -> ended ``interrupted``
        with its CDR. Group calls continue as plain calls (no further
        failover: the attempt plan lived in the old process).
        """
        rows = await asyncio.wait_for(self._registry.all(), self._settings.storage_timeout_s)
        adopted = 0
        for fields in rows:
            try:
                call = Call.from_json(fields["json"])
            except (KeyError, ValueError, TypeError) as err:
                log.error("unreadable registry entry skipped", error=str(err))
                continue
            if call.is_ended or call.switch not in self._drivers or call.call_id in self._calls:
                continue
            self._calls[call.call_id] = call
            if call.current_leg != call.call_id:
                self._legs[call.current_leg] = call.call_id
            if self._trunks is not None and call.trunk:
                self._trunks.adopt(call.trunk, call.call_id)  # its channel stays held
            adopted += 1
        if adopted:
            self._metrics.calls_adopted.inc(adopted)
            log.info("live calls adopted from the registry", count=adopted)
        for switch in self._drivers:
            self._refresh_live_gauge(switch)
        return adopted

    def _probe_unknown(self, call_id: str) -> None:
        if call_id in self._probing:
            return
        self._probing.add(call_id)
        self._spawn(self._probe(call_id))

    async def _probe(self, call_id: str) -> None:
        """Ask the switch for this exact channel until it appears or can no
        longer appear (``unknown_outcome_window_s`` after the call was created)."""
        settings = self._settings
        try:
            while not self._closed:
                call = self._calls.get(call_id)
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
                        await self._feed(call_id, "originate_accepted")
                        await self._update(call_id, lambda c: c.evolve(outcome_unknown=False))
                        if seen.state == "answered":
                            await self._feed(call_id, "Answered")
                        return
                    if self._now() - call.created_at > settings.unknown_outcome_window_s:
                        await self._feed(
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

    async def sweep(self) -> None:
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
        for over in overstays(list(self._calls.values()), now, limits):
            call = self._calls.get(over.call_id)
            if call is None:
                continue
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
                await self._feed(
                    over.call_id,
                    "interrupted",
                    cause_text=f"exceeded {over.limit}; the switch never confirmed the hangup",
                )
        for call_id in [c for c in self._swept if c not in self._calls]:
            self._swept.pop(call_id, None)

    # ------------------------------------------------------------------ plumbing
