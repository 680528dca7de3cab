"""Call.to_dict and Call.evolve are field by field (cheap) yet equal to asdict / replace."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, asdict, replace
from typing import Any

import pytest

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


def test_evolve_is_dataclasses_replace() -> None:
    call = Call("id-2", "sw", CallState.CREATED, "1001", {"kind": "park"}, 10.0, trunk="t")
    changes: dict[str, Any] = {
        "state": CallState.DIALING,
        "dialing_at": 11.0,
        "variables": {"k": "v"},
    }
    new = call.evolve(**changes)
    assert new == replace(call, **changes)
    assert asdict(new) == asdict(replace(call, **changes))
    assert call.state is CallState.CREATED and call.dialing_at is None  # the original stays
    assert call.evolve() == call and call.evolve() is not call
    with pytest.raises(TypeError, match="no field 'nope'"):
        call.evolve(nope=1)
    with pytest.raises(FrozenInstanceError):
        new.state = CallState.ENDED  # type: ignore[misc]
