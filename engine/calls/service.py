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
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.calls.cdr import CdrWriter
from engine.calls.errors import (
    CallAlreadyEnded,
    CallNotFound,
    IdempotencyKeyReused,
    SwitchActionFailed,
    SwitchUnavailable,
    UnknownSwitch,
)
from engine.calls.fsm import Step, apply_event, apply_input
from engine.calls.fsm import Step as FsmStep
from engine.calls.model import (
    Call,
    CallState,
    attempt_leg_id,
    dial_target,
    then_to_dict,
)
from engine.core import clock
from engine.core.errors import ActionFailed, OutcomeUnknown, PbxUnavailable
from engine.core.ids import new_call_id
from engine.pbx.base import (
    Answered,
    DialTarget,
    HungUp,
    LinkChanged,
    LinkState,
    OriginateFailed,
    OriginateRequest,
    PbxDriver,
    PbxEvent,
    Resynced,
    Ringing,
    Then,
    TrunkStatus,
)
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.store.redis.stream import EventStream
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.errors import TrunksUnavailable, UnknownTrunkGroup
from engine.trunks.planner import AttemptOutcome, CallPlan, Dial, Done, Fail, Ignored, Wait
from engine.trunks.service import TrunkService

log = get_logger("engine.calls")

ENDED_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class OriginateCommand:
    to: str
    then: Then
    switch: str | None = None
    trunk: str | None = None
    endpoint: str | None = None
    caller_id_num: str = ""
    caller_id_name: str = ""
    timeout_s: float = 30.0
    variables: Mapping[str, str] = field(default_factory=dict)
    trunk_group: str | None = None

    def fingerprint(self) -> str:
        body = {
            "to": self.to,
            "then": then_to_dict(self.then),
            "switch": self.switch,
            "trunk": self.trunk,
            "endpoint": self.endpoint,
            "group": self.trunk_group,
            "cid": [self.caller_id_num, self.caller_id_name],
            "timeout": self.timeout_s,
            "vars": dict(sorted(self.variables.items())),
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class _GroupCall:
    """The trunk side of one live group call (mutable, under the call's lock)."""

    cmd: OriginateCommand
    plan: CallPlan
    legs: dict[int, str]  # attempt number -> leg (channel) id
    pdd_s: float | None = None  # current attempt: originate to first Ringing
    answered_trunk: str | None = None  # holds a channel until the leg hangs up

    @property
    def in_flight(self) -> bool:
        return self.plan.current is not None or self.answered_trunk is not None


class CallService:
    def __init__(
        self,
        *,
        drivers: Mapping[str, PbxDriver],
        registry: CallRegistry,
        stream: EventStream,
        idempotency: IdempotencyStore,
        cdrs: CdrWriter,
        metrics: Metrics,
        ended_store: EndedCalls,
        now: Callable[[], float] = clock.now,
        trunks: TrunkService | None = None,
    ) -> None:
        self._drivers = dict(drivers)
        self._registry = registry
        self._stream = stream
        self._idem = idempotency
        self._cdrs = cdrs
        self._metrics = metrics
        self._ended = ended_store
        self._now = now
        self._calls: dict[str, Call] = {}
        self._closed = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._trunks = trunks
        self._groups: dict[str, _GroupCall] = {}
        self._legs: dict[str, str] = {}  # leg id of attempts 2.. -> call id
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ queries

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

    async def get(self, call_id: str) -> Call:
        if call := self._calls.get(call_id):
            return call
        fields = await self._registry.get(call_id)
        if fields and "json" in fields:
            return Call.from_json(fields["json"])
        if ended := await self._ended.get(call_id):
            return ended
        raise CallNotFound(f"no call with id {call_id!r}", details={"call_id": call_id})

    async def list_live(self) -> list[Call]:
        calls = [Call.from_json(f["json"]) for f in await self._registry.all() if "json" in f]
        return sorted(calls, key=lambda c: c.created_at)

    # ------------------------------------------------------------------ commands

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
        if cmd.trunk_group is not None:
            return await self._originate_group(cmd, cmd.trunk_group, idempotency_key)
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
            await self._save(call)
            previous = await self._idem.claim(idempotency_key, f"{call_id} {fingerprint}")
            if previous is not None:
                await self._registry.remove(call_id)
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
        # The call is tracked in memory before the originate is written, so its
        # first event always finds it. Mirroring it to Redis and publishing
        # "created" run concurrently with the AMI round trip (they are off the
        # latency path), under the call's lock: every later change of this
        # call waits for that lock, so "created" is always published first.
        lock = self._lock(call_id)
        await lock.acquire()  # a fresh lock: returns at once
        self._calls[call_id] = call
        persisted = asyncio.create_task(
            self._persist_created(call, lock, save=idempotency_key is None)
        )
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
        finally:
            await persisted
        return await self.get(call_id), True

    # ------------------------------------------------------------------ group calls

    async def _originate_group(
        self, cmd: OriginateCommand, group: str, idempotency_key: str | None
    ) -> tuple[Call, bool]:
        trunks = self._trunks
        if trunks is None or not trunks.has_group(group):
            known = trunks.group_names if trunks is not None else []
            raise UnknownTrunkGroup(
                f"no trunk group named {group!r}",
                details={"trunk_group": group, "known": known},
            )
        call_id = new_call_id()
        # Capacity first: while every member is full the request waits (up to
        # the group's queue_timeout_s), and nothing exists yet to clean up.
        step = trunks.begin(call_id, group)
        while isinstance(step.decision, Wait):
            await trunks.wait_capacity(step.decision.until)
            step = trunks.retry(step.plan)
        decision = step.decision
        if isinstance(decision, Fail):
            retry = decision.retry_after_s or 1.0
            raise TrunksUnavailable(
                f"trunk group {group!r} cannot take the call: {decision.reason}",
                retry_after_s=retry,
                details={
                    "trunk_group": group,
                    "reason": decision.reason,
                    "detail": decision.detail,
                    "retry_after_s": retry,
                },
            )
        if not isinstance(decision, Dial):  # planner.start returns Dial | Wait | Fail
            raise RuntimeError(f"unexpected planner decision {decision!r}")
        gc = _GroupCall(cmd=cmd, plan=step.plan, legs={1: call_id})
        call = Call(
            call_id=call_id,
            switch=decision.switch,
            state=CallState.CREATED,
            to=cmd.to,
            then=then_to_dict(cmd.then),
            created_at=self._now(),
            trunk=decision.trunk,
            trunk_group=group,
            trunk_target=decision.target,
            leg_id=call_id,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            variables=dict(cmd.variables),
        )
        call = call.evolve(attempts=self._attempt_views(gc))
        if idempotency_key:
            await self._save(call)
            previous = await self._idem.claim(idempotency_key, f"{call_id} {cmd.fingerprint()}")
            if previous is not None:
                await self._registry.remove(call_id)
                # Give the channel back; the CPS token is spent (harmless: one
                # start slot of this trunk goes unused).
                trunks.release(decision.trunk)
                prev_id, _, prev_fp = previous.partition(" ")
                if prev_fp != cmd.fingerprint():
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used for a different request",
                        details={"idempotency_key": idempotency_key, "call_id": prev_id},
                    )
                return await self.get(prev_id), False
        self._metrics.calls_originated.labels(decision.switch).inc()
        lock = self._lock(call_id)
        await lock.acquire()
        self._calls[call_id] = call
        self._groups[call_id] = gc
        persisted = asyncio.create_task(
            self._persist_created(call, lock, save=idempotency_key is None)
        )
        try:
            await self._write_attempt(call_id, call_id, decision, cmd, None)
        finally:
            await persisted
        return await self.get(call_id), True

    async def _write_attempt(
        self,
        call_id: str,
        leg_id: str,
        dial: Dial,
        cmd: OriginateCommand,
        failed_at: float | None,
    ) -> None:
        """Originate one attempt's leg. A write that fails before reaching the
        switch (link down, refused) is that attempt's failure with cause 38
        (network out of order), so the planner moves on to the next trunk.
        ``failed_at``: monotonic time the previous attempt's failure arrived."""
        driver = self._drivers.get(dial.switch)
        request = OriginateRequest(
            call_id=leg_id,
            target=DialTarget("trunk", dial.target, cmd.to),
            then=cmd.then,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            timeout_s=cmd.timeout_s,
            variables=dict(cmd.variables),
        )
        started = clock.monotonic()
        try:
            if driver is None:
                raise PbxUnavailable(f"no switch named {dial.switch!r} is configured")
            await driver.originate(request)
        except OutcomeUnknown as err:
            # Written but unacknowledged: never re-send, not even on another
            # trunk (the callee may be ringing). The leg's own events or the
            # resync decide.
            log.warning("originate outcome unknown", call_id=call_id, leg=leg_id, error=str(err))
            await self._update(
                call_id,
                lambda c: c.evolve(outcome_unknown=True) if c.current_leg == leg_id else c,
            )
        except (PbxUnavailable, ActionFailed) as err:
            log.info("attempt not placed", call_id=call_id, trunk=dial.trunk, error=str(err))
            await self.handle(
                OriginateFailed(
                    switch=dial.switch,
                    call_id=leg_id,
                    ts=self._now(),
                    cause=38,
                    # cause_name() reads the part before "(".
                    cause_text=f"NETWORK_OUT_OF_ORDER (not placed: {err})",
                )
            )
        else:
            if failed_at is not None:
                self._metrics.trunk_failover_seconds.observe(started - failed_at)
            else:
                self._metrics.originate_latency.labels(dial.switch).observe(
                    clock.monotonic() - started
                )
            await self._feed(call_id, "originate_accepted", leg=leg_id)

    def _attempt_views(self, gc: _GroupCall) -> tuple[dict[str, Any], ...]:
        out = []
        for a in gc.plan.attempts:
            cause = a.cause
            out.append(
                {
                    "attempt": a.no,
                    "trunk": a.trunk,
                    "leg_id": gc.legs.get(a.no, ""),
                    "probe": a.probe,
                    "started_at": a.started_at,
                    "ended_at": a.ended_at,
                    "verdict": a.verdict,
                    "cause": cause.cause if cause else None,
                    "sip_code": cause.sip_code if cause else None,
                    "cause_text": cause.cause_text if cause else "",
                }
            )
        return tuple(out)

    async def _group_event(self, call: Call, gc: _GroupCall, event: PbxEvent) -> bool:
        """The trunk side of an event of the current leg. True when the event
        was consumed here (the attempt failed over: the call goes on)."""
        trunks = self._trunks
        if trunks is None:
            return False
        now = self._now()
        cur = gc.plan.current
        if isinstance(event, Ringing) and cur is not None and gc.pdd_s is None:
            gc.pdd_s = max(0.0, now - cur.started_at)
            return False
        if isinstance(event, Answered) and cur is not None:
            pdd = gc.pdd_s if gc.pdd_s is not None else max(0.0, now - cur.started_at)
            step = trunks.result(gc.plan, AttemptOutcome(cur.no, answered=True, pdd_s=pdd))
            gc.plan = step.plan
            if isinstance(step.decision, Done):
                gc.answered_trunk = step.decision.trunk
            self._calls[call.call_id] = call.evolve(attempts=self._attempt_views(gc))
            return False
        if not isinstance(event, HungUp | OriginateFailed):
            return False
        if gc.answered_trunk is not None:
            trunks.release(gc.answered_trunk)
            gc.answered_trunk = None
            return False
        if cur is None:
            return False
        received = clock.monotonic()
        outcome = AttemptOutcome(
            cur.no,
            cause=event.cause,
            sip_code=event.sip_code,
            cause_text=event.cause_text,
            pdd_s=gc.pdd_s,
        )
        step = trunks.result(gc.plan, outcome)
        gc.plan = step.plan
        gc.pdd_s = None
        decision = step.decision
        if isinstance(decision, Dial | Wait):
            await self._next_attempt(call, gc, event, decision, received)
            return True
        failure = ""
        if isinstance(decision, Fail) and decision.reason != "final-cause":
            failure = f"{decision.reason}: {decision.detail}"
        self._calls[call.call_id] = call.evolve(
            attempts=self._attempt_views(gc), trunk_failure=failure
        )
        return False

    async def _next_attempt(
        self,
        call: Call,
        gc: _GroupCall,
        event: HungUp | OriginateFailed,
        decision: Dial | Wait,
        received: float,
    ) -> None:
        """The current attempt failed over: record it, place the next one."""
        now = self._now()
        failed = (
            gc.plan.attempts[call.attempt - 1] if call.attempt <= len(gc.plan.attempts) else None
        )
        fsm = apply_input(call, "next_attempt", now)
        new = fsm.call.evolve(channel="", outcome_unknown=False)
        if isinstance(decision, Dial):
            leg = attempt_leg_id(call.call_id, decision.attempt_no)
            gc.legs[decision.attempt_no] = leg
            self._legs[leg] = call.call_id
            new = new.evolve(
                attempt=decision.attempt_no,
                trunk=decision.trunk,
                trunk_target=decision.target,
                switch=decision.switch,
                leg_id=leg,
            )
            # Written at once, before anything else here awaits (CDR, Redis).
            self._spawn(self._write_attempt(call.call_id, leg, decision, gc.cmd, received))
        else:
            self._spawn(self._wait_then_dial(call.call_id, decision.until))
        new = new.evolve(attempts=self._attempt_views(gc))
        self._calls[call.call_id] = new
        await self._publish(self._event_dict(event, call))
        await self._commit(call, FsmStep(new, fsm.changed, fsm.illegal), "next_attempt")
        await self._publish(
            {
                "type": "CallAttempt",
                "call_id": call.call_id,
                "switch": new.switch,
                "ts": now,
                "attempt": call.attempt,
                "trunk": call.trunk,
                "cause": event.cause,
                "sip_code": event.sip_code,
                "cause_text": event.cause_text,
                "next": (
                    {"attempt": new.attempt, "trunk": new.trunk, "leg_id": new.leg_id}
                    if isinstance(decision, Dial)
                    else {"waiting_until": decision.until, "detail": decision.detail}
                ),
            }
        )
        # One CDR row per attempt: this one ended with the failover cause.
        await self._cdrs.write(
            call.evolve(
                state=CallState.ENDED,
                ended_at=now,
                cause=event.cause,
                sip_code=event.sip_code,
                cause_text=event.cause_text,
                created_at=failed.started_at if failed else call.created_at,
            )
        )

    async def _wait_then_dial(self, call_id: str, until: float) -> None:
        """Every eligible member was full when an attempt failed over: wait
        for capacity (up to the group's queue timeout), then dial or give up."""
        trunks = self._trunks
        assert trunks is not None
        while True:
            await trunks.wait_capacity(until)
            async with self._lock(call_id):
                call = self._calls.get(call_id)
                gc = self._groups.get(call_id)
                if call is None or gc is None or call.is_ended:
                    return
                step = trunks.retry(gc.plan)
                gc.plan = step.plan
                d = step.decision
                if isinstance(d, Ignored):
                    return  # the plan was finished meanwhile (hung up while waiting)
                if isinstance(d, Wait):
                    until = d.until
                    continue
                if isinstance(d, Dial):
                    leg = attempt_leg_id(call_id, d.attempt_no)
                    gc.legs[d.attempt_no] = leg
                    self._legs[leg] = call_id
                    new = call.evolve(
                        attempt=d.attempt_no,
                        trunk=d.trunk,
                        trunk_target=d.target,
                        switch=d.switch,
                        leg_id=leg,
                        attempts=self._attempt_views(gc),
                    )
                    self._spawn(self._write_attempt(call_id, leg, d, gc.cmd, None))
                    self._calls[call_id] = new
                    await self._save(new)
                    return
                last = gc.plan.attempts[-1].cause if gc.plan.attempts else None
                failure = f"{d.reason}: {d.detail}" if isinstance(d, Fail) else ""
                call = call.evolve(attempts=self._attempt_views(gc), trunk_failure=failure)
                self._calls[call_id] = call
                fsm = apply_input(
                    call,
                    "HungUp",
                    self._now(),
                    cause=last.cause if last else None,
                    sip_code=last.sip_code if last else None,
                    cause_text=last.cause_text if last else failure,
                )
                await self._commit(call, fsm, "HungUp")
                return

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _event_dict(self, event: PbxEvent, call: Call) -> dict[str, Any]:
        data = event.to_dict()
        if call.trunk_group is not None:
            # Clients follow the call, not its legs: the call id stays the
            # same across attempts; the leg and attempt say which one.
            data["call_id"] = call.call_id
            data["leg_id"] = event.call_id
            data["attempt"] = call.attempt
        return data

    async def _persist_created(self, call: Call, lock: asyncio.Lock, *, save: bool) -> None:
        try:
            if save:
                await self._save(call)
            await self._publish_state(call, None)
        finally:
            lock.release()

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
                log.exception("event handling failed", switch=driver.name, event=event.type)

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
            await self._publish(event.to_dict())
            return
        if isinstance(event, Resynced):
            await self._reconcile(event)
            return
        if isinstance(event, TrunkStatus):
            if self._trunks is not None:
                self._trunks.on_status(event)
            await self._publish(event.to_dict())
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
            await self._publish(self._event_dict(event, call))
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
                await self._feed(
                    call.call_id,
                    "interrupted",
                    cause_text="switch link lost; the channel was gone after reconnect",
                )
                continue
            if call.outcome_unknown:
                await self._feed(call.call_id, "originate_accepted")
            if seen.state == "answered":
                await self._feed(call.call_id, "Answered")
        await self._publish(
            {"type": "Resynced", "switch": event.switch, "ts": event.ts, "live": len(live)}
        )

    # ------------------------------------------------------------------ plumbing

    def _lock(self, call_id: str) -> asyncio.Lock:
        lock = self._locks.get(call_id)
        if lock is None:
            lock = self._locks[call_id] = asyncio.Lock()
        return lock

    async def _feed(
        self, call_id: str, value: str, *, leg: str | None = None, **kwargs: Any
    ) -> None:
        async with self._lock(call_id):
            call = self._calls.get(call_id)
            if call is None:
                return
            if leg is not None and call.current_leg != leg:
                return  # about an attempt that is already over
            await self._commit(call, apply_input(call, value, self._now(), **kwargs), value)

    async def _end_rejected(self, call_id: str, text: str) -> None:
        await self._feed(call_id, "originate_rejected", cause_text=text)

    async def _update(self, call_id: str, change: Callable[[Call], Call]) -> Call:
        async with self._lock(call_id):
            call = self._calls.get(call_id)
            if call is None:
                return await self.get(call_id)
            new = change(call)
            self._calls[call_id] = new
            await self._save(new)
            return new

    async def _commit(self, before: Call, step: Step, value: str) -> None:
        call = step.call
        if step.illegal is not None:
            self._metrics.illegal_transitions.labels(step.illegal.state.value, value).inc()
            log.warning(
                "illegal call transition",
                call_id=call.call_id,
                state=step.illegal.state.value,
                input=value,
            )
        if call.is_ended:
            # The CDR is written before the end becomes visible anywhere, so a
            # client that sees "ended" can always read the CDR.
            await self._finish(call)
        else:
            self._calls[call.call_id] = call
            await self._save(call)
        if step.changed:
            await self._publish_state(call, before.state)

    async def _finish(self, call: Call) -> None:
        self._metrics.calls_ended.labels(call.switch, str(call.cause)).inc()
        log.info(
            "call ended",
            call_id=call.call_id,
            cause=call.cause,
            sip_code=call.sip_code,
            cause_text=call.cause_text,
            interrupted=call.interrupted,
        )
        gc = self._groups.pop(call.call_id, None)
        row = call
        if gc is not None:
            for leg in gc.legs.values():
                self._legs.pop(leg, None)
            if self._trunks is not None:
                # Ended without a verdict for its attempt (link lost, refused):
                # still give the channel back.
                cur = gc.plan.current
                if gc.answered_trunk is not None:
                    self._trunks.release(gc.answered_trunk)
                elif cur is not None:
                    self._trunks.release(cur.trunk)
            if 1 < call.attempt <= len(gc.plan.attempts):
                # This row is the last attempt's: it started when it was dialled.
                row = call.evolve(created_at=gc.plan.attempts[call.attempt - 1].started_at)
        await self._cdrs.write(row)
        await self._ended.put(call)
        await self._registry.remove(call.call_id)
        self._calls.pop(call.call_id, None)
        self._locks.pop(call.call_id, None)
        self._refresh_live_gauge(call.switch)

    async def _save(self, call: Call) -> None:
        await self._registry.put(
            call.call_id, {"json": call.to_json(), "switch": call.switch, "state": call.state}
        )
        self._refresh_live_gauge(call.switch)

    def _refresh_live_gauge(self, switch: str) -> None:
        count = sum(1 for c in self._calls.values() if c.switch == switch)
        self._metrics.calls_live.labels(switch).set(count)

    async def _publish_state(self, call: Call, previous: CallState | None) -> None:
        await self._publish(
            {
                "type": "CallStateChanged",
                "call_id": call.call_id,
                "switch": call.switch,
                "ts": self._now(),
                "state": call.state.value,
                "previous": previous.value if previous else None,
                "cause": call.cause,
                "sip_code": call.sip_code,
                "cause_text": call.cause_text,
                "interrupted": call.interrupted,
            }
        )

    async def _publish(self, data: Mapping[str, Any]) -> None:
        await self._stream.publish(data)
        self._metrics.events_published.inc()


class EndedCalls:
    """Recently ended calls kept in Redis for ``GET /calls/{id}`` (the CDR is
    the permanent record)."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int = ENDED_TTL_S) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_s

    async def put(self, call: Call) -> None:
        await self._redis.set(f"{self._prefix}ended:{call.call_id}", call.to_json(), ex=self._ttl)

    async def get(self, call_id: str) -> Call | None:
        text = await self._redis.get(f"{self._prefix}ended:{call_id}")
        return Call.from_json(text) if text else None
