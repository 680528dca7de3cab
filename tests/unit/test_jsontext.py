"""engine.core.jsontext: the stdlib's compact encoding, parsed back equal; refusals unchanged."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.calls.model import CallState
from engine.core.jsontext import dumps


def _stdlib(value: Any, sort_keys: bool = False) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_values, st.booleans())
def test_same_values_and_key_order_as_the_stdlib(value: Any, sort_keys: bool) -> None:
    ours = dumps(value, sort_keys=sort_keys)
    assert json.loads(ours) == json.loads(_stdlib(value, sort_keys))
    if isinstance(value, dict):
        assert list(json.loads(ours)) == list(json.loads(_stdlib(value, sort_keys)))


def test_a_call_event_is_byte_for_byte_the_stdlibs() -> None:
    event = {
        "type": "CallStateChanged",
        "call_id": "6b0c8f0e-1c8c-4c5e-9a8e-2f7d1c4b9a10",
        "ts": 1733322000.123456,
        "state": CallState.ANSWERED,
        "previous": None,
        "cause_text": "Normal Clearing — ü",
        "attempts": ({"trunk": "t1", "verdict": "ok"},),
        "interrupted": False,
    }
    assert dumps(event) == _stdlib(event)
    assert dumps(event, sort_keys=True) == _stdlib(event, sort_keys=True)


def test_what_orjson_refuses_goes_through_the_stdlib() -> None:
    # Past 64 bits, and non-string keys: the stdlib encodes both.
    assert dumps({"n": 2**70, 1: "a"}) == _stdlib({"n": 2**70, 1: "a"})


@dataclasses.dataclass
class _Thing:
    x: int


@pytest.mark.parametrize("value", [datetime.datetime(2026, 1, 1), _Thing(1), object(), {1, 2}])
def test_what_the_stdlib_refuses_is_still_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        _stdlib({"v": value})
    with pytest.raises(TypeError):
        dumps({"v": value})
