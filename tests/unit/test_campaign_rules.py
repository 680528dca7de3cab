"""The campaign's pure rules: outcomes from switch results, retries, windows, the abandon guard."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.campaigns.abandon import (
    MIN_LIVE_FOR_RATE,
    AbandonFigures,
    figures,
    guard_tripped,
    wilson_lower,
)
from engine.campaigns.model import (
    CallingWindow,
    CampaignSpec,
    Disposition,
    Outcome,
    RetryRule,
)
from engine.campaigns.outcomes import DialResult, classify
from engine.campaigns.retry import RANK_CALLBACK, ContactCounters, next_step
from engine.campaigns.windows import is_open, next_open, open_timezones
from engine.dialer.pacing.view import PacingStats

SPEC = CampaignSpec(trunk_group="g", queue="q")
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (DialResult(answered=False, cause=17, sip_code=486), Outcome.BUSY),
        (DialResult(answered=False, cause=17), Outcome.BUSY),
        (DialResult(answered=False, cause=19, sip_code=480), Outcome.NO_ANSWER),
        (DialResult(answered=False, cause=16), Outcome.NO_ANSWER),
        (DialResult(answered=False, cause=21, sip_code=603), Outcome.DECLINED),
        (DialResult(answered=False, cause=34, sip_code=503), Outcome.CARRIER_FAILURE),
        (DialResult(answered=False, cause=38), Outcome.CARRIER_FAILURE),
        (DialResult(answered=False, cause=1, sip_code=404), Outcome.INVALID_NUMBER),
        (DialResult(answered=True, cause=16, amd_status="MACHINE"), Outcome.MACHINE),
        (DialResult(answered=True, cause=16, amd_status="HUMAN"), Outcome.HUMAN),
        # Unsure is a person: the dialer never hangs up on someone it is unsure of.
        (DialResult(answered=True, cause=16, amd_status="NOTSURE"), Outcome.HUMAN),
        (DialResult(answered=True, cause=16), Outcome.HUMAN),
        # Gone while the AMD listened: never handed over, neither a person reached nor abandoned.
        (DialResult(answered=True, cause=16, amd_status="HANGUP"), Outcome.NO_ANSWER),
        (DialResult(answered=False, interrupted=True), Outcome.INTERRUPTED),
    ],
)
def test_classify(result: DialResult, outcome: Outcome) -> None:
    assert classify(result) is outcome


def test_default_retry_delays_and_counting() -> None:
    fresh = ContactCounters(attempts=0, attempts_today=0, tz="UTC")
    busy = next_step(SPEC, Outcome.BUSY, fresh, NOW)
    assert (busy.state, busy.next_at, busy.counts) == ("ready", NOW + timedelta(minutes=15), True)
    assert next_step(SPEC, Outcome.NO_ANSWER, fresh, NOW).next_at == NOW + timedelta(hours=2)
    carrier = next_step(SPEC, Outcome.CARRIER_FAILURE, fresh, NOW)
    assert carrier.next_at == NOW + timedelta(minutes=5)
    assert carrier.counts is False
    # A machine: tomorrow (the per-day limit is not what delays it: its own rule is a day).
    assert next_step(SPEC, Outcome.MACHINE, fresh, NOW).next_at == NOW + timedelta(days=1)
    assert next_step(SPEC, Outcome.DECLINED, fresh, NOW).final_outcome == "declined"


def test_max_attempts_finishes_and_carrier_failures_never_do() -> None:
    last = ContactCounters(attempts=2, attempts_today=0, tz="UTC")
    assert next_step(SPEC, Outcome.BUSY, last, NOW).final_outcome == "max_attempts"
    assert next_step(SPEC, Outcome.CARRIER_FAILURE, last, NOW).state == "ready"


def test_per_day_limit_moves_to_the_contacts_next_local_day() -> None:
    spec = CampaignSpec(trunk_group="g", queue="q", max_attempts=9, max_attempts_per_day=2)
    counters = ContactCounters(attempts=1, attempts_today=1, tz="Asia/Shanghai")
    step = next_step(spec, Outcome.BUSY, counters, NOW)  # 23:00 in Shanghai
    assert step.next_at == datetime(2026, 12, 3, 0, 0, tzinfo=UTC) - timedelta(hours=8)


def test_dispositions() -> None:
    c = ContactCounters(attempts=0, attempts_today=0, tz="UTC")
    sale = next_step(SPEC, Outcome.HUMAN, c, NOW, disposition=Disposition.SALE)
    assert (sale.state, sale.final_outcome) == ("done", "sale")
    dnc = next_step(SPEC, Outcome.HUMAN, c, NOW, disposition=Disposition.DO_NOT_CALL)
    assert dnc.final_outcome == "dnc"
    at = NOW + timedelta(days=2)
    cb = next_step(
        SPEC,
        Outcome.HUMAN,
        c,
        NOW,
        disposition=Disposition.CALLBACK,
        callback_at=at,
        callback_agent="a1",
    )
    assert (cb.state, cb.rank, cb.next_at, cb.callback_agent) == ("ready", RANK_CALLBACK, at, "a1")


def test_retry_rules_given_replace_only_their_outcome() -> None:
    spec = CampaignSpec(trunk_group="g", queue="q", retries={Outcome.BUSY: RetryRule(after_s=60)})
    assert spec.retries[Outcome.BUSY].after_s == 60
    assert spec.retries[Outcome.NO_ANSWER].after_s == 7200


def test_window_in_the_contacts_local_time() -> None:
    w = CallingWindow(days=("mon", "tue", "wed", "thu", "fri"), start="09:00", end="20:00")
    # 15:00 UTC: 10:00 in New York (open), 23:00 in Shanghai (shut), 15:00 in London (open).
    assert is_open(w, "America/New_York", NOW)
    assert not is_open(w, "Asia/Shanghai", NOW)
    assert open_timezones(w, ["Asia/Shanghai", "Europe/London", "America/New_York"], NOW) == [
        "America/New_York",
        "Europe/London",
    ]
    # Saturday is not a calling day here.
    assert not is_open(w, "Europe/London", datetime(2026, 12, 5, 12, tzinfo=UTC))
    nxt = next_open(w, "Asia/Shanghai", NOW)
    assert nxt == datetime(2026, 12, 3, 1, 0, tzinfo=UTC)  # 09:00 Thursday in Shanghai


def test_holidays_and_overnight_windows() -> None:
    w = CallingWindow(holidays=(date(2026, 12, 25),))
    assert not is_open(w, "Europe/Paris", datetime(2026, 12, 25, 11, tzinfo=UTC))
    night = CallingWindow(days=("wed",), start="22:00", end="02:00")
    assert is_open(night, "UTC", datetime(2026, 12, 2, 23, tzinfo=UTC))
    # 01:00 Thursday belongs to Wednesday's window.
    assert is_open(night, "UTC", datetime(2026, 12, 3, 1, tzinfo=UTC))
    assert not is_open(night, "UTC", datetime(2026, 12, 3, 23, tzinfo=UTC))


def test_window_refuses_bad_times() -> None:
    with pytest.raises(ValueError, match="start"):
        CallingWindow(start="25:00")


def test_abandon_guard_matches_the_simulators_rate() -> None:
    stats = PacingStats(handed_over=100, dropped=3, amd_human=0)
    f = figures(stats)
    assert f.rate == pytest.approx(0.03)
    assert guard_tripped(f, 0.03)
    assert not guard_tripped(figures(PacingStats(handed_over=100, dropped=1)), 0.03)
    assert not guard_tripped(AbandonFigures(5, 0, 0.0), 0.03)


def _period(live: float, abandoned: float) -> AbandonFigures:
    return AbandonFigures(live, abandoned, abandoned / live)


def test_wilson_lower_bound() -> None:
    # Hand-computed 95 % Wilson intervals.
    assert wilson_lower(1, 5) == pytest.approx(0.0362, abs=1e-4)
    assert wilson_lower(1, 19) == pytest.approx(0.0094, abs=1e-4)
    assert wilson_lower(3, 40) == pytest.approx(0.0258, abs=1e-4)
    assert wilson_lower(0, 50) == 0.0
    assert wilson_lower(0, 0) == 0.0


def test_abandon_guard_needs_evidence_with_few_live_answers() -> None:
    # Under MIN_LIVE_FOR_RATE answers one unlucky drop does not stop predictive dialling...
    assert not guard_tripped(_period(19, 1), 0.03)
    assert not guard_tripped(_period(60, 2), 0.03)
    # ... but drops that show the dialler drops too many do (lower bound >= 2.5 %).
    assert guard_tripped(_period(5, 1), 0.03)
    assert guard_tripped(_period(40, 3), 0.03)
    assert not guard_tripped(_period(40, 2), 0.03)
    # From MIN_LIVE_FOR_RATE answers the rate itself is judged, as the regulator does.
    assert MIN_LIVE_FOR_RATE == 100
    assert guard_tripped(_period(150, 4), 0.03)  # 2.67 % >= 3 % - 0.5
    assert not guard_tripped(_period(150, 3), 0.03)  # 2 %


def test_abandon_guard_is_monotonic_in_drops() -> None:
    # One more drop never releases the guard, at any sample size.
    for live in range(1, 400):
        tripped = [guard_tripped(_period(live, ab), 0.03) for ab in range(0, min(live, 30) + 1)]
        assert tripped == sorted(tripped), live


def test_uncounted_attempts_are_capped() -> None:
    spec = CampaignSpec(trunk_group="g", queue="q", max_uncounted_attempts=3)
    again = next_step(spec, Outcome.CARRIER_FAILURE, ContactCounters(0, 0, "UTC", uncounted=1), NOW)
    assert again.state == "ready"
    last = next_step(spec, Outcome.CARRIER_FAILURE, ContactCounters(0, 0, "UTC", uncounted=2), NOW)
    assert (last.state, last.final_outcome) == ("done", "carrier_failure")


def test_a_retry_rule_changes_only_the_fields_it_names() -> None:
    spec = CampaignSpec.model_validate(
        {"trunk_group": "g", "queue": "q", "retries": {"carrier_failure": {"after_s": 30}}}
    )
    rule = spec.retries[Outcome.CARRIER_FAILURE]
    assert (rule.after_s, rule.counts) == (30, False)
