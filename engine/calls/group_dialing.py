"""Calls placed through a trunk group: one leg per attempt, failover on a
failover cause, same call throughout (docs/trunks.md).

The trunk planner (``engine.trunks.planner``, through :class:`TrunkService`)
picks the trunk of each attempt. Each attempt is one originated leg with its
own channel id (``attempt_leg_id``); events of the current leg are routed
back to the call, late events of earlier legs are dropped. When the current
leg ends unanswered, the planner is asked before the state machine: a
failover cause places the next attempt at once (the call stays up,
``next_attempt``; a CDR row is written for the failed attempt), anything
else ends the call as usual. See docs/trunks.md "The service".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.calls.background import Background
from engine.calls.commands import OriginateCommand
from engine.calls.committer import StateCommitter
from engine.calls.errors import UnsafeCallValue
from engine.calls.fsm import Step as FsmStep
from engine.calls.fsm import apply_input
from engine.calls.idempotency import OriginateKeys
from engine.calls.live import GroupCall, LiveCalls
from engine.calls.lookup import CallLookup
from engine.calls.model import (
    Call,
    CallState,
    attempt_leg_id,
    then_to_dict,
)
from engine.calls.ownership import SwitchGate
from engine.core import clock
from engine.core.errors import ActionFailed, OutcomeUnknown, PbxUnavailable, UnsafeValue
from engine.core.frozen import replace
from engine.core.ids import new_call_id
from engine.pbx.base import (
    Answered,
    DialTarget,
    HungUp,
    OriginateFailed,
    OriginateRequest,
    PbxDriver,
    PbxEvent,
    Ringing,
)
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.errors import UnknownTrunkGroup
from engine.trunks.planner import AttemptOutcome, Dial, Done, Fail, Ignored, Wait
from engine.trunks.service import TrunkService

log = get_logger("engine.calls")


class _NotPlaced(OriginateFailed):
    """The originate never reached a carrier (refused by the switch or driver)."""


class _LinkDown(_NotPlaced):
    """... because the switch link is down: skip that switch's trunks."""


class GroupDialing:
    def __init__(
        self,
        live: LiveCalls,
        committer: StateCommitter,
        *,
        drivers: Mapping[str, PbxDriver],
        trunks: TrunkService | None,
        lookup: CallLookup,
        keys: OriginateKeys,
        metrics: Metrics,
        background: Background,
        handle: Callable[[PbxEvent], Awaitable[None]],
        now: Callable[[], float],
        gate: SwitchGate,
    ) -> None:
        self._gate = gate
        self._live = live
        self._commit = committer
        self._drivers = drivers
        self._trunks = trunks
        self._lookup = lookup
        self._keys = keys
        self._metrics = metrics
        self._background = background
        self._handle = handle  # the service's event handler (a leg not placed)
        self._now = now

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None
    ) -> tuple[Call, bool]:
        """A call through a trunk group, or through a plain ``trunk`` (its own
        one-member group, so its limits apply)."""
        trunks = self._trunks
        if trunks is None:
            raise UnknownTrunkGroup("no trunks are configured", details={"known": []})
        group = trunks.group_for(trunk_group=cmd.trunk_group, trunk=cmd.trunk)
        call_id = cmd.call_id or new_call_id()
        # Capacity first: while every member is full the request waits (up to
        # the group's queue_timeout_s), and nothing exists yet to clean up.
        step = await trunks.admit(call_id, group)
        decision = step.decision
        if not isinstance(decision, Dial):  # admit returns a Dial or raises
            raise RuntimeError(f"unexpected planner decision {decision!r}")
        gc = GroupCall(cmd=cmd, plan=step.plan, legs={1: call_id})
        call = Call(
            call_id=call_id,
            switch=decision.switch,
            state=CallState.CREATED,
            to=cmd.to,
            then=then_to_dict(cmd.then),
            created_at=self._now(),
            trunk=decision.trunk,
            trunk_group=cmd.trunk_group,
            trunk_target=decision.target,
            leg_id=call_id,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            variables=dict(cmd.variables),
        )
        call = call.evolve(attempts=self._attempt_views(gc))
        if idempotency_key:
            # Give the channel back if the key is taken; the CPS token is
            # spent (harmless: one start slot of this trunk goes unused).
            previous = await self._keys.claim(
                idempotency_key,
                call,
                cmd.fingerprint(),
                on_taken=lambda: trunks.release(decision.trunk, call_id),
            )
            if previous is not None:
                return previous, False
        self._metrics.calls_originated.labels(decision.switch).inc()
        self._live.put(call)
        self._live.groups[call_id] = gc
        # Tracked, mirrored and "created" accepted before the originate is
        # written, so its first event always finds the call and comes after.
        if not idempotency_key:
            self._commit.save(call)
        self._commit.publish_state(call, None)
        await self._write_attempt(call_id, call_id, decision, cmd, None, from_request=True)
        return await self._lookup.get(call_id), True

    async def _write_attempt(
        self,
        call_id: str,
        leg_id: str,
        dial: Dial,
        cmd: OriginateCommand,
        failed_at: float | None,
        *,
        from_request: bool = False,
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
            if not self._gate.owns_switch(dial.switch):
                # Another engine owns that switch link: this attempt fails like a link that
                # is down, so the planner moves on to a trunk on a switch we own.
                raise PbxUnavailable(f"switch {dial.switch!r} is owned by another engine")
            await driver.originate(request)
        except OutcomeUnknown as err:
            # Written but unacknowledged: never re-send, not even on another
            # trunk (the callee may be ringing). The leg's own events or the
            # resync decide.
            log.warning("originate outcome unknown", call_id=call_id, leg=leg_id, error=str(err))
            await self._commit.update(
                call_id,
                lambda c: c.evolve(outcome_unknown=True) if c.current_leg == leg_id else c,
            )
        except (PbxUnavailable, ActionFailed) as err:
            if from_request and isinstance(err, UnsafeValue):
                # The request itself is unusable (the same on every trunk):
                # end the call and tell the API client at once.
                await self._commit.feed(
                    call_id, "originate_rejected", cause_text=f"not placed: {err}"
                )
                raise UnsafeCallValue(
                    f"not placed: {err}", details={"switch": dial.switch, "call_id": call_id}
                ) from err
            log.info("attempt not placed", call_id=call_id, trunk=dial.trunk, error=str(err))
            # Nothing reached a carrier: no breaker hears of it (docs/trunks.md).
            failed = _LinkDown if isinstance(err, PbxUnavailable) else _NotPlaced
            await self._handle(
                failed(
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
            await self._commit.feed(call_id, "originate_accepted", leg=leg_id)

    def _attempt_views(self, gc: GroupCall) -> tuple[dict[str, Any], ...]:
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

    async def fold(self, call: Call, event: PbxEvent) -> Call | None:
        """The trunk side of an event of a live call (called under its lock).

        Returns the call the state machine should take the event into, or
        None when the event ends here: a late event of an attempt already
        settled, or a failed attempt that failed over (the call goes on)."""
        gc = self._live.groups.get(call.call_id)
        if gc is None:
            return call
        if event.call_id != call.current_leg or not gc.in_flight:
            # A late event of an attempt already settled (Asterisk sends the
            # failed OriginateResponse after the Hangup).
            return None
        if await self._group_event(call, gc, event):
            return None
        return self._live.get(call.call_id)

    async def _group_event(self, call: Call, gc: GroupCall, event: PbxEvent) -> bool:
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
            step = await trunks.result(gc.plan, AttemptOutcome(cur.no, answered=True, pdd_s=pdd))
            gc.plan = step.plan
            if isinstance(step.decision, Done):
                gc.answered_trunk = step.decision.trunk
            self._live.put(call.evolve(attempts=self._attempt_views(gc)))
            return False
        if not isinstance(event, HungUp | OriginateFailed):
            return False
        if gc.answered_trunk is not None:
            trunks.release(gc.answered_trunk, call.call_id)
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
            placed=not isinstance(event, _NotPlaced),
            link_down=isinstance(event, _LinkDown),
        )
        step = await trunks.result(gc.plan, outcome)
        gc.plan = step.plan
        gc.pdd_s = None
        decision = step.decision
        if isinstance(decision, Dial | Wait):
            self._next_attempt(call, gc, event, decision, received)
            return True
        failure = ""
        if isinstance(decision, Fail) and decision.reason != "final-cause":
            failure = f"{decision.reason}: {decision.detail}"
        self._live.put(call.evolve(attempts=self._attempt_views(gc), trunk_failure=failure))
        return False

    def _next_attempt(
        self,
        call: Call,
        gc: GroupCall,
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
            self._live.add_leg(leg, call.call_id)
            new = new.evolve(
                attempt=decision.attempt_no,
                trunk=decision.trunk,
                trunk_target=decision.target,
                switch=decision.switch,
                leg_id=leg,
            )
            # Written at once, before anything else here awaits (CDR, Redis).
            self._background.spawn(
                self._write_attempt(call.call_id, leg, decision, gc.cmd, received)
            )
        else:
            self._background.spawn(self._wait_then_dial(call.call_id, decision.until))
        new = new.evolve(attempts=self._attempt_views(gc))
        self._live.put(new)
        self._commit.commit(call, FsmStep(new, fsm.changed, fsm.illegal), "next_attempt", event)
        self._commit.publish(
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
        self._commit.write_cdr(
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
            async with self._live.lock(call_id):
                call = self._live.get(call_id)
                gc = self._live.groups.get(call_id)
                if call is None or gc is None or call.is_ended:
                    return
                step = await trunks.retry(gc.plan)
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
                    self._live.add_leg(leg, call_id)
                    new = call.evolve(
                        attempt=d.attempt_no,
                        trunk=d.trunk,
                        trunk_target=d.target,
                        switch=d.switch,
                        leg_id=leg,
                        attempts=self._attempt_views(gc),
                    )
                    self._background.spawn(self._write_attempt(call_id, leg, d, gc.cmd, None))
                    self._live.put(new)
                    self._commit.save(new)
                    return
                last = gc.plan.attempts[-1].cause if gc.plan.attempts else None
                failure = f"{d.reason}: {d.detail}" if isinstance(d, Fail) else ""
                call = call.evolve(attempts=self._attempt_views(gc), trunk_failure=failure)
                self._live.put(call)
                fsm = apply_input(
                    call,
                    "HungUp",
                    self._now(),
                    cause=last.cause if last else None,
                    sip_code=last.sip_code if last else None,
                    cause_text=last.cause_text if last else failure,
                )
                self._commit.commit(call, fsm, "HungUp")
                return

    async def hangup_waiting(self, call_id: str, cause: int) -> bool:
        """Hang up a group call that waits for a free trunk between attempts
        (no leg exists to hang up): finish the plan (the waiting task then
        stops) and end the call. False when the call has a leg in flight."""
        gc = self._live.groups.get(call_id)
        if gc is None or gc.in_flight or gc.plan.finished:
            return False
        gc.plan = replace(gc.plan, finished=True)
        await self._commit.feed(
            call_id, "HungUp", cause=cause, cause_text="hung up while waiting for a trunk"
        )
        return True

    def on_end(self, call: Call) -> Call:
        """A call ends: give its trunk channel back; return its last CDR row."""
        gc = self._live.groups.get(call.call_id)
        if gc is None:
            if self._trunks is not None and call.trunk:
                self._trunks.release_adopted(call.trunk, call.call_id)  # adopted after a restart
            return call
        if self._trunks is not None:
            # Ended without a verdict for its attempt (link lost, refused):
            # still give the channel back.
            cur = gc.plan.current
            if gc.answered_trunk is not None:
                self._trunks.release(gc.answered_trunk, call.call_id)
            elif cur is not None:
                self._trunks.release(cur.trunk, call.call_id)
        if 1 < call.attempt <= len(gc.plan.attempts):
            # This row is the last attempt's: it started when it was dialled.
            return call.evolve(created_at=gc.plan.attempts[call.attempt - 1].started_at)
        return call
