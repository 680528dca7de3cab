"""The call state machine: pure, table-driven, takes ``now``.

created -> dialing -> ringing -> answered -> bridged -> ended, with shortcuts
the wire really produces (an answer with no ringing, a hangup at any point).

Inputs are the normalized driver event type names plus three engine inputs:
``originate_accepted`` (the switch acknowledged the originate action),
``originate_rejected`` (it refused it, nothing was placed) and ``interrupted``
(after a reconnect the switch no longer knows the channel).

Why some pairs "stay": the originate acknowledgement and the first channel
events race (they travel on the same AMI socket but are consumed by different
tasks), duplicate Ringing/Answered are normal, and Asterisk sends a failed
OriginateResponse *after* the outbound channel's Hangup for busy/no-answer.
Those are expected and must not count as illegal.

Group calls (trunk failover): one call may place several attempts, each a new
leg. A leg that ends with a *failover* cause must not end the call, so the
service does not feed that leg's HungUp/OriginateFailed here at all; it asks
the trunk planner first and, when the planner says "dial the next trunk",
feeds ``next_attempt`` instead: created/dialing/ringing -> dialing (the call
is dialing again, through another trunk). Only the last attempt's ending
input reaches the table, so ``ended`` still means "the call is over". An
answered call never gets ``next_attempt`` (the planner is done with it).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.calls.model import Call, CallState
from engine.core.fsm import Illegal, Moved, Table
from engine.pbx.base import (
    AmdResult,
    Answered,
    Bridged,
    ChannelCreated,
    Dtmf,
    HungUp,
    OriginateFailed,
    PbxEvent,
    Ringing,
    Unbridged,
)

C, D, R, A, B, E = (
    CallState.CREATED,
    CallState.DIALING,
    CallState.RINGING,
    CallState.ANSWERED,
    CallState.BRIDGED,
    CallState.ENDED,
)

ENDING = ("HungUp", "OriginateFailed", "originate_rejected", "interrupted")

_rows: dict[tuple[CallState, str], CallState] = {
    (C, "originate_accepted"): D,
    (C, "ChannelCreated"): D,
    (C, "Ringing"): R,
    (C, "Answered"): A,
    (D, "originate_accepted"): D,
    (D, "ChannelCreated"): D,
    (D, "Ringing"): R,
    (D, "Answered"): A,
    (R, "originate_accepted"): R,
    (R, "ChannelCreated"): R,
    (R, "Ringing"): R,
    (R, "Answered"): A,
    (A, "originate_accepted"): A,
    (A, "Answered"): A,
    (A, "Bridged"): B,
    (A, "Unbridged"): A,
    (B, "originate_accepted"): B,
    (B, "Answered"): B,
    (B, "Bridged"): B,
    (B, "Unbridged"): A,
    (C, "next_attempt"): D,
    (D, "next_attempt"): D,
    (R, "next_attempt"): D,
    (E, "originate_accepted"): E,
    (E, "HungUp"): E,
    (E, "OriginateFailed"): E,
    (E, "interrupted"): E,
}
for _state in (C, D, R, A, B):
    for _input in ENDING:
        _rows[(_state, _input)] = E
# originate_rejected only makes sense before the switch created anything.
for _state in (R, A, B):
    del _rows[(_state, "originate_rejected")]

TABLE: Table[CallState, str] = Table(_rows)

_STAMP = {D: "dialing_at", R: "ringing_at", A: "answered_at", B: "bridged_at", E: "ended_at"}


@dataclass(frozen=True, slots=True)
class Step:
    call: Call
    changed: bool  # state changed
    illegal: Illegal[CallState, str] | None = None


def apply_input(
    call: Call,
    value: str,
    now: float,
    *,
    cause: int | None = None,
    sip_code: int | None = None,
    cause_text: str = "",
) -> Step:
    """Feed one input. Returns the new call and whether the state moved."""
    result = TABLE.step(call.state, value)
    if isinstance(result, Illegal):
        return Step(call.evolve(illegal_transitions=call.illegal_transitions + 1), False, result)
    if not isinstance(result, Moved):
        return Step(call, False)
    changes: dict[str, object] = {"state": result.after}
    stamp = _STAMP.get(result.after)
    if stamp and getattr(call, stamp) is None:
        changes[stamp] = now
    if result.after is E:
        changes.update(cause=cause, sip_code=sip_code, cause_text=cause_text)
        if value == "interrupted":
            changes["interrupted"] = True
    if result.after is D:
        changes["outcome_unknown"] = False
    return Step(call.evolve(**changes), True)


def apply_event(call: Call, event: PbxEvent, now: float) -> Step:
    """Fold one normalized driver event into the call."""
    if isinstance(event, Dtmf):
        if event.direction == "received":
            return Step(call.evolve(dtmf=call.dtmf + event.digit), False)
        return Step(call, False)
    if isinstance(event, AmdResult):
        return Step(
            call.evolve(amd_status=event.status, amd_cause=event.cause, amd_at=event.ts), False
        )
    if isinstance(event, HungUp | OriginateFailed):
        return apply_input(
            call,
            event.type,
            now,
            cause=event.cause,
            sip_code=event.sip_code,
            cause_text=event.cause_text,
        )
    if isinstance(event, ChannelCreated):
        step = apply_input(call, event.type, now)
        if event.channel and not step.call.channel:
            return Step(step.call.evolve(channel=event.channel), step.changed, step.illegal)
        return step
    if isinstance(event, Ringing | Answered | Bridged | Unbridged):
        return apply_input(call, event.type, now)
    # Other events (recording, trunk status...) carry no call state.
    return Step(call, False)
