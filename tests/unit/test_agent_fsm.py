"""The agent state machine: table rows, exact per-queue wrap-up, no-answer auto-pause."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.agents.errors import AgentCallMismatch, IllegalAgentTransition, UnknownPauseReason
from engine.agents.fsm import (
    TRANSITIONS,
    AgentFsm,
    AgentInput,
    CallEnded,
    Login,
    Logout,
    Offer,
    OfferAnswered,
    OfferCancelled,
    OfferMissed,
    OfferUnreachable,
    Pause,
    Ready,
    WrapUpElapsed,
)
from engine.agents.model import NO_ANSWER, UNREACHABLE, AgentConfig, AgentState, AgentStatus

S = AgentState
FSM = AgentFsm(["break", "lunch"])
ALICE = AgentConfig(id="alice", name="Alice", skills={"sales": 5}, max_no_answer=2)


def run(*steps: tuple[AgentInput, float], status: AgentStatus | None = None) -> AgentStatus:
    st_ = status or AgentStatus("alice")
    for event, now in steps:
        st_ = FSM.step(ALICE, st_, event, now).after
    return st_


def available(at: float = 1.0) -> AgentStatus:
    return run((Login(), 0.0), (Ready(), at))


def offer(call: str, now: float, queue: str = "sales", wrap: float = 10.0) -> Offer:
    return Offer(call, queue, wrap, now + 15)


def test_login_pauses_until_ready_and_starts_a_session() -> None:
    st_ = run((Login(), 5.0))
    assert (st_.state, st_.pause_reason, st_.logged_in_at, st_.since) == (S.PAUSED, "login", 5, 5)
    st_ = run((Ready(), 7.0), status=st_)
    assert (st_.state, st_.pause_reason, st_.idle_since) == (S.AVAILABLE, None, 7.0)


def test_a_call_from_offer_to_wrap_up_and_back() -> None:
    st_ = available(1.0)
    st_ = run((offer("c1", 10.0), 10.0), status=st_)
    assert (st_.state, st_.call_id, st_.queue, st_.offer_expires_at) == (
        S.RESERVED,
        "c1",
        "sales",
        25.0,
    )
    st_ = run((OfferAnswered("c1"), 12.0), (CallEnded("c1"), 72.0), status=st_)
    assert (st_.state, st_.wrap_up_until, st_.calls_handled, st_.talk_s) == (
        S.WRAP_UP,
        82.0,
        1,
        60.0,
    )
    st_ = run((WrapUpElapsed(), 82.0), status=st_)
    assert (st_.state, st_.call_id, st_.idle_since) == (S.AVAILABLE, None, 82.0)
    # 9 s idle before the offer, 72 s reserved/on call/wrap-up: occupancy counts them.
    assert st_.busy_s == 72.0 and st_.available_s == 9.0
    assert st_.occupancy(82.0) == pytest.approx(72 / 81)


def test_wrap_up_is_the_queue_of_the_call_and_never_ends_early() -> None:
    # Asterisk #1006: a tech call (30 s wrap-up) must keep the agent out of every
    # queue for 30 s, even when another queue's timer (10 s) fires first.
    st_ = run(
        (offer("c1", 10.0, queue="tech", wrap=30.0), 10.0),
        (OfferAnswered("c1"), 11.0),
        (CallEnded("c1"), 20.0),
        status=available(),
    )
    assert st_.wrap_up_until == 50.0
    early = FSM.step(ALICE, st_, WrapUpElapsed(), 30.0)
    assert not early.changed and early.after.state is S.WRAP_UP
    assert run((WrapUpElapsed(), 49.999), status=st_).state is S.WRAP_UP
    assert run((WrapUpElapsed(), 50.0), status=st_).state is S.AVAILABLE


def test_a_queue_without_wrap_up_frees_the_agent_at_hangup() -> None:
    st_ = run(
        (offer("c1", 10.0, wrap=0.0), 10.0),
        (OfferAnswered("c1"), 11.0),
        (CallEnded("c1"), 20.0),
        status=available(),
    )
    assert (st_.state, st_.idle_since, st_.calls_handled) == (S.AVAILABLE, 20.0, 1)


def test_max_no_answer_missed_in_a_row_auto_pauses() -> None:
    st_ = run((offer("c1", 10.0), 10.0), (OfferMissed("c1"), 25.0), status=available())
    assert (st_.state, st_.missed_in_row) == (S.AVAILABLE, 1)
    step = FSM.step(ALICE, run((offer("c2", 30.0), 30.0), status=st_), OfferMissed("c2"), 45.0)
    assert (step.after.state, step.after.pause_reason, step.after.missed_in_row) == (
        S.PAUSED,
        NO_ANSWER,
        0,
    )
    assert step.state_changed and step.time_in_previous_state_s == 15.0


def test_an_unreachable_phone_counts_like_a_miss_and_pauses_unreachable() -> None:
    # A phone that cannot be reached (no registered contact: the originate fails at once)
    # loses its longest-idle place and counts toward max_no_answer; the pause says why.
    st_ = run((offer("c1", 10.0), 10.0), (OfferUnreachable("c1"), 10.1), status=available())
    assert (st_.state, st_.missed_in_row, st_.idle_since) == (S.AVAILABLE, 1, 10.1)
    step = FSM.step(ALICE, run((offer("c2", 20.0), 20.0), status=st_), OfferUnreachable("c2"), 20.1)
    assert (step.after.state, step.after.pause_reason, step.after.missed_in_row) == (
        S.PAUSED,
        UNREACHABLE,
        0,
    )
    # One count of failed offers: the one that reaches max_no_answer names the reason.
    st_ = run((offer("c3", 30.0), 30.0), (OfferUnreachable("c3"), 30.1), status=available(29.0))
    st_ = run((offer("c4", 40.0), 40.0), (OfferMissed("c4"), 55.0), status=st_)
    assert (st_.state, st_.pause_reason) == (S.PAUSED, NO_ANSWER)


def test_an_answer_or_ready_resets_the_missed_count_and_cancel_does_not_count() -> None:
    st_ = run((offer("c1", 10.0), 10.0), (OfferMissed("c1"), 25.0), status=available())
    st_ = run((offer("c2", 30.0), 30.0), (OfferCancelled("c2"), 31.0), status=st_)
    assert (st_.state, st_.missed_in_row) == (S.AVAILABLE, 1)
    assert st_.idle_since == 25.0  # a cancelled offer keeps the agent's place in longest-idle
    st_ = run((offer("c3", 40.0), 40.0), (OfferAnswered("c3"), 41.0), status=st_)
    assert st_.missed_in_row == 0


def test_illegal_input_names_state_input_and_what_is_allowed() -> None:
    on_call = run((offer("c1", 10.0), 10.0), (OfferAnswered("c1"), 11.0), status=available())
    with pytest.raises(IllegalAgentTransition) as info:
        FSM.step(ALICE, on_call, Ready(), 12.0)
    err = info.value
    assert err.status == 409 and err.error_id == "illegal-agent-transition"
    assert "ready is not allowed while on_call (allowed: call_ended)" in err.message
    assert err.details == {
        "agent_id": "alice",
        "state": "on_call",
        "input": "ready",
        "allowed": ["call_ended"],
    }


def test_a_stale_event_for_another_call_is_refused() -> None:
    reserved = run((offer("c1", 10.0), 10.0), status=available())
    with pytest.raises(AgentCallMismatch) as info:
        FSM.step(ALICE, reserved, OfferAnswered("c9"), 11.0)
    assert info.value.details == {"agent_id": "alice", "call_id": "c9", "held": "c1"}


def test_pause_reason_must_be_configured() -> None:
    with pytest.raises(UnknownPauseReason) as info:
        FSM.step(ALICE, available(), Pause("nap"), 2.0)
    assert info.value.details["allowed"] == ["break", "lunch"]
    assert run((Pause("lunch"), 2.0), status=available()).pause_reason == "lunch"
    # The engine's own reasons are set by its rules, never asked for (docs/api.md: "a reason
    # from [acd] pause_reasons"); an agent could pause itself "no-answer" or "login".
    for own in (NO_ANSWER, UNREACHABLE, "login"):
        with pytest.raises(UnknownPauseReason):
            FSM.step(ALICE, available(), Pause(own), 2.0)


def test_an_offer_must_expire_in_the_future() -> None:
    with pytest.raises(IllegalAgentTransition):
        FSM.step(ALICE, available(), Offer("c1", "sales", 0.0, 1.0), 2.0)


def test_logout_only_when_not_holding_a_live_call() -> None:
    reserved = run((offer("c1", 10.0), 10.0), status=available())
    with pytest.raises(IllegalAgentTransition):
        FSM.step(ALICE, reserved, Logout(), 11.0)
    assert run((Logout(), 3.0), status=available()).state is S.LOGGED_OUT


INPUTS = st.sampled_from(
    [
        Login(),
        Logout(),
        Ready(),
        Pause("break"),
        Offer("c1", "sales", 5.0, 10_000.0),
        OfferAnswered("c1"),
        OfferMissed("c1"),
        OfferUnreachable("c1"),
        OfferCancelled("c1"),
        CallEnded("c1"),
        WrapUpElapsed(),
    ]
)


@given(st.lists(st.tuples(INPUTS, st.floats(0, 20)), max_size=60))
def test_every_step_follows_the_table(steps: list[tuple[AgentInput, float]]) -> None:
    status, now = AgentStatus("alice"), 0.0
    for event, dt in steps:
        now += dt
        key = (status.state, event.kind)
        if key not in TRANSITIONS:
            with pytest.raises(IllegalAgentTransition):
                FSM.step(ALICE, status, event, now)
            continue
        step = FSM.step(ALICE, status, event, now)
        assert step.after.state in TRANSITIONS[key]
        if step.state_changed:
            assert step.after.since == now
        # Holding a call exactly in the states that hold one.
        holds = step.after.state in (S.RESERVED, S.ON_CALL, S.WRAP_UP)
        assert (step.after.call_id is not None) == holds
        assert step.after.missed_in_row < ALICE.max_no_answer
        status = step.after
