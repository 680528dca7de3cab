"""CdrRow validation and derived timings (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.store.pg.cdr import CdrCursor, CdrRow

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def row(**over: Any) -> CdrRow:
    base: dict[str, Any] = {
        "call_id": "c1",
        "switch": "ast1",
        "direction": "outbound",
        "channel": "PJSIP/carrier-00000001",
        "destination": "+15551234567",
        "started_at": T0,
        "answered_at": T0 + timedelta(seconds=4.5),
        "ended_at": T0 + timedelta(seconds=64.25),
        "final_state": "ended",
    }
    base.update(over)
    return CdrRow(**base)


def test_durations_are_derived_from_timestamps() -> None:
    r = row()
    assert r.duration_s == pytest.approx(64.25)
    assert r.billsec_s == pytest.approx(59.75)
    assert row(answered_at=None).billsec_s == 0.0


def test_defaults() -> None:
    r = row()
    assert r.attempt == 1
    assert r.variables == {}
    assert r.interrupted is False
    assert r.cursor == CdrCursor(T0, "c1", 1)


def test_variables_are_copied_not_shared() -> None:
    vars_ = {"campaign": "spring"}
    r = row(variables=vars_)
    vars_["campaign"] = "changed"
    assert r.variables == {"campaign": "spring"}


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"call_id": ""}, "call_id: must not be empty"),
        ({"attempt": 0}, "attempt: expected >= 1"),
        ({"direction": "sideways"}, "direction: expected 'outbound' or 'inbound'"),
        ({"started_at": datetime(2025, 3, 1, 12)}, "started_at: expected a timezone-aware"),
        ({"ended_at": T0 - timedelta(seconds=1), "answered_at": None}, "is before started_at"),
        ({"answered_at": T0 + timedelta(hours=1)}, "answered_at"),
        ({"cause": 300}, "Q.850 cause 0..127"),
        ({"sip_code": 99}, "sip_code: expected 100..699"),
        ({"variables": {"a": 1}}, "variables: keys and values must be str"),
    ],
)
def test_invalid_rows_name_the_field(over: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match="invalid CdrRow") as exc:
        row(**over)
    assert needle in str(exc.value)


def test_row_is_frozen() -> None:
    r = row()
    with pytest.raises(AttributeError):
        r.call_id = "other"  # type: ignore[misc]
