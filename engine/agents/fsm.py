"""The agent state machine: a table of ``(state, input) -> rule``, pure, takes ``now``.

Each row names the states it may lead to (``TRANSITIONS``, shown in docs/acd.md)
and the rule that computes the new :class:`AgentStatus`; the rule only chooses
among those targets (a test checks it). A pair that is not in the table raises
:class:`IllegalAgentTransition` with the state, the input and what is allowed.

Two rules need more than the table:

- Wrap-up is per queue and exact. The offer carries the wrap-up of the call's
  queue; when that call ends the agent gets ``wrap_up_until = now + wrap_up_s``
  and stays in wrap-up, for every queue, until an input at or after that time
  (Asterisk #1006: each queue applied its own wrap-up, so an agent in two
  queues was offered a second call before the first queue's wrap-up ended).
- ``max_no_answer`` missed offers in a row auto-pause the agent with reason
  ``no-answer``; an answered offer resets the count. An offer whose phone could not be
  reached at all (``OfferUnreachable``: no registered contact, unknown endpoint) is a miss
  of the same count, and when it is the one that reaches ``max_no_answer`` the reason is
  ``unreachable``: the supervisor is told the phone is gone, not that nobody picked up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import ClassVar

from engine.agents.errors import AgentCallMismatch, IllegalAgentTransition, UnknownPauseReason
from engine.agents.model import (
    BUSY_STATES,
    NO_ANSWER,
    UNREACHABLE,
    AgentConfig,
    AgentState,
    AgentStatus,
)

S = AgentState


@dataclass(frozen=True, slots=True)
class Login:
    kind: ClassVar[str] = "login"


@dataclass(frozen=True, slots=True)
class Logout:
    kind: ClassVar[str] = "logout"


@dataclass(frozen=True, slots=True)
class Ready:
    kind: ClassVar[str] = "ready"


@dataclass(frozen=True, slots=True)
class Pause:
    reason: str
    kind: ClassVar[str] = "pause"


@dataclass(frozen=True, slots=True)
class Offer:
    call_id: str
    queue: str
    wrap_up_s: float  # the wrap-up of this call's queue
    expires_at: float  # now + the queue's agent ring timeout
    kind: ClassVar[str] = "offer"


@dataclass(frozen=True, slots=True)
class OfferAnswered:
    call_id: str
    kind: ClassVar[str] = "offer_answered"


@dataclass(frozen=True, slots=True)
class OfferMissed:
    """The agent did not answer in time (ring timeout, busy, rejected)."""

    call_id: str
    kind: ClassVar[str] = "offer_missed"


@dataclass(frozen=True, slots=True)
class OfferUnreachable:
    """The agent's phone could not be reached at all: the switch failed the originate at once
    (no registered contact, unknown endpoint, user not registered). The agent's own fault as
    much as a missed offer (its phone is off or gone), so it counts like one."""

    call_id: str
    kind: ClassVar[str] = "offer_unreachable"


@dataclass(frozen=True, slots=True)
class OfferCancelled:
    """The engine withdrew the offer (caller hung up, another agent answered a ring-all)."""

    call_id: str
    kind: ClassVar[str] = "offer_cancelled"


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    kind: ClassVar[str] = "call_ended"


@dataclass(frozen=True, slots=True)
class WrapUpElapsed:
    kind: ClassVar[str] = "wrap_up_elapsed"


AgentInput = (
    Login
    | Logout
    | Ready
    | Pause
    | Offer
    | OfferAnswered
    | OfferMissed
    | OfferUnreachable
    | OfferCancelled
    | CallEnded
    | WrapUpElapsed
)


@dataclass(frozen=True, slots=True)
class AgentTransition:
    """What one input did: the status before and after, and when."""

    before: AgentStatus
    after: AgentStatus
    input: AgentInput
    at: float

    @property
    def state_changed(self) -> bool:
        """True when an ``AgentStateChanged`` event is due."""
        return self.before.state is not self.after.state or (
            self.before.pause_reason != self.after.pause_reason
        )

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def time_in_previous_state_s(self) -> float:
        return self.before.time_in_state(self.at) if self.state_changed else 0.0


Rule = Callable[[AgentConfig, AgentStatus, AgentInput, float], AgentStatus]


def _enter(status: AgentStatus, state: AgentState, now: float, **changes: object) -> AgentStatus:
    """Move to ``state`` at ``now``, folding the time spent in the old state into the counters."""
    spent = status.time_in_state(now)
    acc: dict[str, object] = {}
    if status.state is S.AVAILABLE:
        acc["available_s"] = status.available_s + spent
    elif status.state in BUSY_STATES:
        acc["busy_s"] = status.busy_s + spent
    elif status.state is S.PAUSED:
        acc["paused_s"] = status.paused_s + spent
    if state is S.AVAILABLE:
        acc["idle_since"] = now
    if state is not S.PAUSED:
        acc["pause_reason"] = None
    return replace(status, state=state, since=now, **{**acc, **changes})  # type: ignore[arg-type]


def _clear_call() -> dict[str, object]:
    return {
        "call_id": None,
        "queue": None,
        "wrap_up_s": 0.0,
        "offer_expires_at": None,
        "wrap_up_until": None,
        "answered_at": None,
    }


def _same_call(status: AgentStatus, event: AgentInput) -> None:
    call_id = getattr(event, "call_id", None)
    if call_id != status.call_id:
        raise AgentCallMismatch(
            f"agent {status.agent_id}: {event.kind} for call {call_id}, "
            f"but the agent holds call {status.call_id}",
            details={"agent_id": status.agent_id, "call_id": call_id, "held": status.call_id},
        )


def _login(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    # A fresh session: the strategies and KPIs count from here.
    fresh = AgentStatus(agent_id=st.agent_id, state=S.LOGGED_OUT, since=now, logged_in_at=now)
    return _enter(fresh, S.PAUSED, now, pause_reason="login")


def _logout(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    return _enter(st, S.LOGGED_OUT, now, **_clear_call())


def _ready(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    # From wrap-up this is the agent ending it early on purpose; the timer never does.
    return _enter(st, S.AVAILABLE, now, **_clear_call(), missed_in_row=0)


def _pause(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    assert isinstance(ev, Pause)
    return _enter(st, S.PAUSED, now, **_clear_call(), pause_reason=ev.reason)


def _offer(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    assert isinstance(ev, Offer)
    if ev.expires_at <= now or ev.wrap_up_s < 0:
        raise IllegalAgentTransition(
            f"agent {st.agent_id}: offer of call {ev.call_id} expires at {ev.expires_at}, "
            f"not after now ({now}), or has a negative wrap-up",
            details={"agent_id": st.agent_id, "call_id": ev.call_id},
        )
    return _enter(
        st,
        S.RESERVED,
        now,
        call_id=ev.call_id,
        queue=ev.queue,
        wrap_up_s=ev.wrap_up_s,
        offer_expires_at=ev.expires_at,
    )


def _answered(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    _same_call(st, ev)
    return _enter(st, S.ON_CALL, now, answered_at=now, offer_expires_at=None, missed_in_row=0)


def _missed(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    # Missed or unreachable: one count of failed offers in a row, and the agent goes to the
    # back of the longest-idle order (idle_since = now). The pause's reason is that of the
    # offer that reached max_no_answer.
    _same_call(st, ev)
    missed = st.missed_in_row + 1
    if missed >= cfg.max_no_answer:
        reason = UNREACHABLE if isinstance(ev, OfferUnreachable) else NO_ANSWER
        return _enter(st, S.PAUSED, now, **_clear_call(), missed_in_row=0, pause_reason=reason)
    return _enter(st, S.AVAILABLE, now, **_clear_call(), missed_in_row=missed)


def _cancelled(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    # Not the agent's fault: the count of missed offers is left as it is. The
    # agent keeps its place (idle_since) in longest-idle order.
    _same_call(st, ev)
    return _enter(st, S.AVAILABLE, now, **_clear_call(), idle_since=st.idle_since)


def _ended(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    _same_call(st, ev)
    talked = now - st.answered_at if st.answered_at is not None else 0.0
    counters = {"calls_handled": st.calls_handled + 1, "talk_s": st.talk_s + max(0.0, talked)}
    if st.wrap_up_s <= 0:
        return _enter(st, S.AVAILABLE, now, **_clear_call(), **counters)
    return _enter(
        st,
        S.WRAP_UP,
        now,
        **counters,
        answered_at=None,
        wrap_up_until=now + st.wrap_up_s,
    )


def _wrap_elapsed(cfg: AgentConfig, st: AgentStatus, ev: AgentInput, now: float) -> AgentStatus:
    if st.wrap_up_until is not None and now < st.wrap_up_until:
        return st  # too early (a timer that fired ahead of time): wrap-up never ends early
    return _enter(st, S.AVAILABLE, now, **_clear_call())


# (state, input) -> (states the rule may lead to, rule). Missing pairs are illegal.
TABLE: dict[tuple[AgentState, str], tuple[frozenset[AgentState], Rule]] = {
    (S.LOGGED_OUT, "login"): (frozenset({S.PAUSED}), _login),
    (S.PAUSED, "ready"): (frozenset({S.AVAILABLE}), _ready),
    (S.PAUSED, "pause"): (frozenset({S.PAUSED}), _pause),
    (S.PAUSED, "logout"): (frozenset({S.LOGGED_OUT}), _logout),
    (S.AVAILABLE, "pause"): (frozenset({S.PAUSED}), _pause),
    (S.AVAILABLE, "logout"): (frozenset({S.LOGGED_OUT}), _logout),
    (S.AVAILABLE, "offer"): (frozenset({S.RESERVED}), _offer),
    (S.RESERVED, "offer_answered"): (frozenset({S.ON_CALL}), _answered),
    (S.RESERVED, "offer_missed"): (frozenset({S.AVAILABLE, S.PAUSED}), _missed),
    (S.RESERVED, "offer_unreachable"): (frozenset({S.AVAILABLE, S.PAUSED}), _missed),
    (S.RESERVED, "offer_cancelled"): (frozenset({S.AVAILABLE}), _cancelled),
    (S.ON_CALL, "call_ended"): (frozenset({S.WRAP_UP, S.AVAILABLE}), _ended),
    (S.WRAP_UP, "wrap_up_elapsed"): (frozenset({S.WRAP_UP, S.AVAILABLE}), _wrap_elapsed),
    (S.WRAP_UP, "ready"): (frozenset({S.AVAILABLE}), _ready),
    (S.WRAP_UP, "pause"): (frozenset({S.PAUSED}), _pause),
    (S.WRAP_UP, "logout"): (frozenset({S.LOGGED_OUT}), _logout),
}

TRANSITIONS: dict[tuple[AgentState, str], frozenset[AgentState]] = {
    key: targets for key, (targets, _) in TABLE.items()
}


def allowed_inputs(state: AgentState) -> list[str]:
    return sorted(kind for (s, kind) in TABLE if s is state)


#: Pause reasons only the engine sets (never an agent's or a supervisor's choice).
ENGINE_PAUSE_REASONS = frozenset({NO_ANSWER, UNREACHABLE, "login"})


class AgentFsm:
    """Steps agents through :data:`TABLE`; knows the configured pause reasons."""

    def __init__(self, pause_reasons: Iterable[str]) -> None:
        # Only the configured reasons: "no-answer" and "unreachable" (failed offers) and
        # "login" (a new session) are the engine's own, set by those rules and never asked
        # for (an agent who paused itself "no-answer" showed on the wallboard and in the
        # reports as auto-paused).
        self.pause_reasons = frozenset(pause_reasons) - ENGINE_PAUSE_REASONS

    def step(
        self, config: AgentConfig, status: AgentStatus, event: AgentInput, now: float
    ) -> AgentTransition:
        if config.id != status.agent_id:
            raise ValueError(f"config of agent {config.id} given for agent {status.agent_id}")
        row = TABLE.get((status.state, event.kind))
        if row is None:
            raise IllegalAgentTransition(
                f"agent {status.agent_id}: {event.kind} is not allowed while "
                f"{status.state.value} (allowed: {', '.join(allowed_inputs(status.state))})",
                details={
                    "agent_id": status.agent_id,
                    "state": status.state.value,
                    "input": event.kind,
                    "allowed": allowed_inputs(status.state),
                },
            )
        if isinstance(event, Pause) and event.reason not in self.pause_reasons:
            raise UnknownPauseReason(
                f"pause reason {event.reason!r} is not configured "
                f"(acd.pause_reasons: {', '.join(sorted(self.pause_reasons))})",
                details={"reason": event.reason, "allowed": sorted(self.pause_reasons)},
            )
        _, rule = row
        return AgentTransition(status, rule(config, status, event, now), event, now)
