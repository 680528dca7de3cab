"""/v1/health/ready says why it is not ready: which check fails, in one line, and since
when (engine/api/health.py); a check that passes once starts afresh."""

from __future__ import annotations

from typing import Any

from engine.api.health import FailingSince, readiness


def _report(pg: bool = True, switch: str = "up") -> dict[str, Any]:
    return {
        "storage": {"postgres": pg, "redis": True, "outbox": True},
        "switches": {"pbx1": {"kind": "asterisk", "state": switch}, "pbx2": {"state": "down"}},
    }


def test_ready_has_no_reasons() -> None:
    body = readiness(_report(), draining=False)
    assert (body["status"], body["reasons"]) == ("ready", [])


def test_each_failing_check_is_named_with_its_problem_and_since() -> None:
    now = [1_800_000_000.0]
    since = FailingSince(clock=lambda: now[0])
    body = readiness(_report(pg=False, switch="down"), draining=True, since=since)
    assert body["status"] == "not-ready"
    assert [(r["check"], r["since"]) for r in body["reasons"]] == [
        ("draining", "2027-01-15T08:00:00+00:00"),
        ("postgres", "2027-01-15T08:00:00+00:00"),
        ("switches", "2027-01-15T08:00:00+00:00"),
    ]
    problems = {r["check"]: r["problem"] for r in body["reasons"]}
    assert "PostgreSQL" in problems["postgres"] and "(0 of 2)" in problems["switches"]
    # Later probes keep the first time; PostgreSQL back, then gone again: a new since.
    now[0] += 60
    again = readiness(_report(pg=False), draining=False, since=since)
    assert [(r["check"], r["since"]) for r in again["reasons"]] == [
        ("postgres", "2027-01-15T08:00:00+00:00")
    ]
    assert readiness(_report(), draining=False, since=since)["reasons"] == []
    now[0] += 60
    later = readiness(_report(pg=False), draining=False, since=since)
    assert later["reasons"][0]["since"] == "2027-01-15T08:02:00+00:00"


def test_no_storage_at_all_is_a_reason() -> None:
    body = readiness({"switches": {"a": {"state": "up"}}}, draining=False)
    assert [r["check"] for r in body["reasons"]] == ["storage"]
