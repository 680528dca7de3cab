"""The call state machine: table rows, absorbing end state, illegal inputs counted."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from engine.calls.fsm import TABLE, apply_event, apply_input
from engine.calls.model import Call, CallState
from engine.pbx.base import (
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

INPUTS = [
    "originate_accepted",
    "originate_rejected",
    "interrupted",
    "ChannelCreated",
    "Ringing",
    "Answered",
    "Bridged",
    "Unbridged",
    "HungUp",
    "OriginateFailed",
]


def new_call() -> Call:
    return Call(
        call_id="c1",
        switch="pbx",
        state=CallState.CREATED,
        to="1001",
        then={"kind": "park"},
        created_at=100.0,
    )


def ev(cls: type[PbxEvent], t: float, **kw: Any) -> PbxEvent:
    return cls(switch="pbx", call_id="c1", ts=t, **kw)


def test_answered_call_lifecycle_with_timestamps_and_cause() -> None:
    call = new_call()
    call = apply_input(call, "originate_accepted", 100.1).call
    for cls, t in ((ChannelCreated, 100.2), (Ringing, 101.0), (Answered, 102.0), (Bridged, 102.5)):
        step = apply_event(call, ev(cls, t, channel="PJSIP/self-trunk-1"), t)
        assert step.illegal is None
        call = step.call
    assert call.state is CallState.BRIDGED
    call = apply_event(call, ev(Unbridged, 104.0), 104.0).call
    assert call.state is CallState.ANSWERED
    end = apply_event(call, ev(HungUp, 105.0, cause=16, cause_text="Normal Clearing"), 105.0)
    c = end.call
    assert end.changed and c.state is CallState.ENDED
    assert (c.dialing_at, c.ringing_at, c.answered_at, c.bridged_at, c.ended_at) == (
        100.1,
        101.0,
        102.0,
        102.5,
        105.0,
    )
    assert (c.cause, c.cause_text, c.channel) == (16, "Normal Clearing", "PJSIP/self-trunk-1")


def test_busy_keeps_hangup_cause_when_originate_failure_follows() -> None:
    # Asterisk sends the failed OriginateResponse after the channel's Hangup.
    call = apply_input(new_call(), "originate_accepted", 1.0).call
    call = apply_event(
        call, ev(HungUp, 2.0, cause=17, sip_code=486, cause_text="User busy"), 2.0
    ).call
    step = apply_event(call, ev(OriginateFailed, 2.1, cause=0), 2.1)
    assert step.illegal is None and not step.changed
    assert (step.call.cause, step.call.sip_code) == (17, 486)


def test_illegal_transition_is_counted_not_raised() -> None:
    call = apply_input(new_call(), "originate_accepted", 1.0).call
    step = apply_input(call, "Bridged", 2.0)
    assert step.illegal is not None and step.illegal.input == "Bridged"
    assert step.call.state is CallState.DIALING
    assert step.call.illegal_transitions == 1


def test_interrupted_marks_call() -> None:
    call = apply_input(new_call(), "Answered", 1.0).call
    c = apply_input(call, "interrupted", 5.0, cause_text="link lost").call
    assert c.state is CallState.ENDED and c.interrupted and c.cause is None


def test_dtmf_accumulates_without_state_change() -> None:
    call = apply_input(new_call(), "Answered", 1.0).call
    for d in "1234#":
        call = apply_event(call, ev(Dtmf, 2.0, digit=d), 2.0).call
    assert call.dtmf == "1234#" and call.state is CallState.ANSWERED


def test_every_live_state_can_end() -> None:
    for state in CallState:
        if state is not CallState.ENDED:
            assert "HungUp" in TABLE.inputs_for(state)


@given(st.lists(st.sampled_from(INPUTS), max_size=30))
def test_any_input_sequence_is_safe_and_end_is_absorbing(inputs: list[str]) -> None:
    call = new_call()
    ended_at = None
    t = 0.0
    for value in inputs:
        t += 1.0
        call = apply_input(call, value, t, cause=16).call
        if call.state is CallState.ENDED:
            ended_at = ended_at or call.ended_at
            assert call.ended_at == ended_at  # never re-stamped
    stamps = [
        x
        for x in (call.dialing_at, call.ringing_at, call.answered_at, call.ended_at)
        if x is not None
    ]
    if call.state is CallState.ENDED:
        assert call.ended_at == max(stamps)


def test_call_json_round_trip() -> None:
    call = apply_input(new_call(), "Answered", 1.0).call.evolve(variables={"a": "b"})
    assert Call.from_json(call.to_json()) == call
