"""The dry run (``simulate --campaign``): the campaign's own rules drive a simulated list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.campaigns.dryrun import SimContact, dry_run, hopper_key
from engine.campaigns.model import CallingWindow, CampaignSpec, Outcome, RetryRule
from engine.campaigns.windows import is_open
from engine.dialer.sim.scenario import load_scenario
from tests.harness import ROOT

SCENARIO = load_scenario(ROOT / "bench" / "campaign_scenarios" / "live-campaign.json")
START = datetime(2026, 12, 2, 8, 30, tzinfo=UTC)  # Wednesday 08:30 London, 16:30 Shanghai


def spec(**changes: object) -> CampaignSpec:
    base: dict[str, object] = {
        "trunk_group": "g",
        "queue": "q",
        "mode": "progressive",
        "window": CallingWindow(start="09:00", end="20:00"),
        "retries": {
            Outcome.BUSY: RetryRule(after_s=60),
            Outcome.NO_ANSWER: RetryRule(after_s=60),
            Outcome.MACHINE: RetryRule(after_s=60),
        },
        "max_attempts_per_day": 3,
    }
    base.update(changes)
    return CampaignSpec.model_validate(base)


def contacts() -> list[SimContact]:
    fates = ["live", "machine", "fast_fail", "no_answer"]
    out = []
    for i in range(40):
        tz = "Europe/London" if i % 2 == 0 else "Asia/Shanghai"
        out.append(SimContact(i + 1, f"+4420794{i:05d}", tz, fate=fates[i % 4]))
    return out


def test_windows_limits_and_retries_hold_in_the_dry_run() -> None:
    s = spec()
    result, feed = dry_run(s, contacts(), SCENARIO, start=START, dnc={"+442079400000"})
    for c in feed.contacts:
        # Nothing outside the contact's window: London opens at 09:00, Shanghai shuts at 20:00.
        for dialed, _ended, _ in c.history:
            assert is_open(s.window, c.tz, START + timedelta(seconds=dialed))
        # Retries come no sooner than their rule (60 s here) after the previous end.
        for (_, ended, _), (dialed, _, _) in zip(c.history, c.history[1:], strict=False):
            assert dialed >= ended + 60
        assert len(c.history) <= s.max_attempts
        if c.phone == "+442079400000":
            assert c.history == []  # on DNC
    shanghai = [c for c in feed.contacts if c.tz == "Asia/Shanghai"]
    # 16:30 in Shanghai: open until 20:00 (3.5 h), so they are dialled from the start.
    assert all(c.history for c in shanghai)
    london = [c for c in feed.contacts if c.tz == "Europe/London" and c.phone != "+442079400000"]
    # London's window opens 30 minutes into the shift: no London dial before that.
    assert london and all(c.history[0][0] >= 1800 for c in london)
    finals = {c.fate: c.final for c in feed.contacts if c.state == "done"}
    assert finals.get("live") == "human"
    assert finals.get("machine") == "max_attempts"
    assert feed.summary()["by_state"].get("dialing", 0) <= SCENARIO.agents * 3
    assert result.figures.dials_per_agent_hour > 0


def test_hopper_order_callbacks_then_retries_then_priority() -> None:
    now = START
    fresh_low = SimContact(1, "+1", "UTC", priority=0)
    fresh_high = SimContact(2, "+2", "UTC", priority=5)
    retry = SimContact(3, "+3", "UTC", rank=1, next_at=now)
    callback = SimContact(4, "+4", "UTC", rank=0, next_at=now)
    order = sorted([fresh_low, fresh_high, retry, callback], key=hopper_key)
    assert [c.contact_id for c in order] == [4, 3, 2, 1]
