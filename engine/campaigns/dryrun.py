"""``python -m engine simulate --campaign NAME``: a configured campaign, in virtual time.

The far ends come from a pacing scenario (bench/pacing_scenarios/README.md: outcome shares,
timings, agents); the campaign's own decision code does the rest: its pacing policy
(:func:`engine.campaigns.runner.policy_for`), the hopper's order (callbacks, due retries, then
fresh contacts by priority), the calling windows in each contact's time zone, DNC, the attempt
limits and the retry rules (:func:`engine.campaigns.retry.next_step`). So a dry run shows when
each contact would be dialled and how the list would end, before a single call is placed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.campaigns.model import CampaignSpec, Outcome
from engine.campaigns.retry import RANK_FRESH, ContactCounters, next_step
from engine.campaigns.runner import policy_for
from engine.campaigns.windows import is_open, zone
from engine.dialer.sim.scenario import Scenario
from engine.dialer.sim.simulator import SimResult, simulate


@dataclass(slots=True)
class SimContact:
    contact_id: int
    phone: str
    tz: str
    priority: int = 0
    rank: int = RANK_FRESH
    next_at: datetime | None = None
    attempts: int = 0
    attempts_today: int = 0
    attempts_day: Any = None
    uncounted: int = 0
    state: str = "ready"
    final: str | None = None
    # What its far end always does, when known (a test rig's numbers): the simulator's
    # live, fast_fail, machine, no_answer, or declined / congestion (fast failures whose
    # outcome the switch reports as a 603 or a carrier failure).
    fate: str | None = None
    # (dialled at, ended at, outcome), seconds into the run
    history: list[tuple[float, float, str]] = field(default_factory=list)
    dialed_at: float = 0.0


_FAST_FAILS = {"declined": Outcome.DECLINED, "congestion": Outcome.CARRIER_FAILURE}


def hopper_key(c: SimContact) -> tuple[int, int, datetime, int]:
    """The hopper's ORDER BY (engine/campaigns/hopper.py), in Python."""
    return (
        c.rank,
        -c.priority,
        c.next_at or datetime.min.replace(tzinfo=zone("UTC")),
        c.contact_id,
    )


class ContactList:
    """A :class:`engine.dialer.sim.simulator.ContactFeed` over a campaign's contacts."""

    def __init__(
        self,
        spec: CampaignSpec,
        contacts: list[SimContact],
        start: datetime,
        *,
        dnc: set[str] | None = None,
    ) -> None:
        self.spec = spec
        self.contacts = contacts
        self.start = start
        self.dnc = set(dnc or ())
        self._by_call: dict[int, SimContact] = {}
        self.dials_by_hour: Counter[int] = Counter()

    def wall(self, now: float) -> datetime:
        return self.start + timedelta(seconds=now)

    def _dialable(self, c: SimContact, at: datetime) -> bool:
        spec = self.spec
        if c.state != "ready" or c.phone in self.dnc:
            return False
        if c.next_at is not None and c.next_at > at:
            return False
        if c.attempts >= spec.max_attempts:
            return False
        today = at.astimezone(zone(c.tz)).date()
        if c.attempts_day == today and c.attempts_today >= spec.max_attempts_per_day:
            return False
        return is_open(spec.window, c.tz, at)

    def take(self, call: int, now: float) -> bool:
        at = self.wall(now)
        due = [c for c in self.contacts if self._dialable(c, at)]
        if not due:
            return False
        c = min(due, key=hopper_key)
        c.state = "dialing"
        c.dialed_at = now
        self._by_call[call] = c
        self.dials_by_hour[int(now // 3600)] += 1
        return True

    def fate(self, call: int) -> str | None:
        fate = self._by_call[call].fate
        return "fast_fail" if fate in _FAST_FAILS else fate

    def ended(self, call: int, outcome: str, now: float) -> None:
        c = self._by_call.pop(call)
        at = self.wall(now)
        today = at.astimezone(zone(c.tz)).date()
        attempts_today = c.attempts_today if c.attempts_day == today else 0
        kind = _FAST_FAILS.get(c.fate or "") if outcome == "busy" else None
        step = next_step(
            self.spec,
            kind or Outcome(outcome),
            ContactCounters(c.attempts, attempts_today, c.tz, uncounted=c.uncounted),
            at,
        )
        c.history.append((round(c.dialed_at, 3), round(now, 3), (kind or Outcome(outcome)).value))
        if step.counts:
            c.attempts += 1
            c.attempts_today = attempts_today + 1
            c.attempts_day = today
        else:
            c.uncounted += 1
        c.state, c.rank, c.final = step.state, step.rank, step.final_outcome
        c.next_at = step.next_at

    def summary(self) -> dict[str, Any]:
        states = Counter(c.state for c in self.contacts)
        finals = Counter(c.final for c in self.contacts if c.state == "done")
        return {
            "contacts": len(self.contacts),
            "by_state": dict(states),
            "finished_by_outcome": dict(finals),
            "attempts": sum(len(c.history) for c in self.contacts),
            "dials_by_hour": {str(h): n for h, n in sorted(self.dials_by_hour.items())},
        }


def dry_run(
    spec: CampaignSpec,
    contacts: list[SimContact],
    scenario: Scenario,
    *,
    start: datetime,
    seed: int = 1,
    dnc: set[str] | None = None,
) -> tuple[SimResult, ContactList]:
    feed = ContactList(spec, contacts, start, dnc=dnc or set())
    result = simulate(scenario, policy_for(spec), seed, contacts=feed)
    return result, feed
