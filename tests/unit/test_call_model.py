"""Call.to_dict is field by field (cheap) yet equal to what asdict gave."""

from __future__ import annotations

from dataclasses import asdict

from engine.calls.model import Call, CallState


def test_to_dict_equals_asdict_and_round_trips() -> None:
    call = Call(
        "id-1",
        "sw",
        CallState.ANSWERED,
        "1001",
        {"kind": "dialplan", "context": "c", "exten": "s", "priority": 1},
        10.0,
        trunk_group="g",
        attempts=({"attempt": 1, "trunk": "t", "verdict": "failover", "cause": 34},),
        variables={"a": "b"},
        answered_at=11.0,
    )
    expected = asdict(call)
    expected["state"] = "answered"
    expected["attempts"] = [dict(a) for a in call.attempts]
    assert call.to_dict() == expected
    assert Call.from_json(call.to_json()) == call
    # A copy: changing it leaves the frozen call alone.
    data = call.to_dict()
    data["variables"]["a"] = "changed"
    assert call.variables["a"] == "b"
