"""From an attempt's outcome (and the agent's disposition) to the contact's next step. Pure.

Rules per outcome come from the campaign (``CampaignSpec.retries``; the defaults: busy 15 min,
no answer 2 h, machine next day, carrier failure 5 min and not counted as an attempt). A
disposition wins over the outcome: sale, not interested, wrong number and do-not-call finish the
contact; a callback schedules it at the asked time with rank 0 (first in the hopper), for the
same agent or anyone. ``max_attempts`` finishes a contact; ``max_attempts_per_day`` moves the next
try to the next local day (the calling window then decides the hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.campaigns.model import CampaignSpec, Disposition, Outcome
from engine.campaigns.windows import zone

RANK_CALLBACK = 0
RANK_RETRY = 1
RANK_FRESH = 2


@dataclass(frozen=True, slots=True)
class ContactCounters:
    attempts: int  # counted attempts before this one
    attempts_today: int  # counted attempts on the contact's local day, before this one
    tz: str
    uncounted: int = 0  # attempts before this one that did not count


@dataclass(frozen=True, slots=True)
class NextStep:
    state: str  # ready | done
    rank: int
    next_at: datetime | None
    final_outcome: str | None
    counts: bool  # whether this attempt counted toward the limits
    callback_agent: str | None = None


_FINISHING = {
    Disposition.SALE: "sale",
    Disposition.NOT_INTERESTED: "not_interested",
    Disposition.WRONG_NUMBER: "wrong_number",
    Disposition.DO_NOT_CALL: "dnc",
}


def next_step(
    spec: CampaignSpec,
    outcome: Outcome,
    counters: ContactCounters,
    now: datetime,
    *,
    disposition: Disposition | None = None,
    callback_at: datetime | None = None,
    callback_agent: str | None = None,
) -> NextStep:
    rule = spec.retries[outcome]
    counts = rule.counts
    if disposition in _FINISHING:
        return NextStep("done", RANK_RETRY, None, _FINISHING[disposition], counts)
    if disposition is Disposition.CALLBACK:
        at = callback_at if callback_at is not None else now + timedelta(hours=1)
        return NextStep("ready", RANK_CALLBACK, at, None, counts, callback_agent)
    if rule.final:
        return NextStep("done", RANK_RETRY, None, outcome.value, counts)
    attempts = counters.attempts + (1 if counts else 0)
    if attempts >= spec.max_attempts:
        return NextStep("done", RANK_RETRY, None, "max_attempts", counts)
    if not counts and counters.uncounted + 1 >= spec.max_uncounted_attempts:
        return NextStep("done", RANK_RETRY, None, outcome.value, counts)
    at = now + timedelta(seconds=rule.after_s)
    today = counters.attempts_today + (1 if counts else 0)
    if today >= spec.max_attempts_per_day:
        # Not before the contact's next local midnight; the window picks the hour.
        local = now.astimezone(zone(counters.tz))
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        at = max(at, midnight)
    return NextStep("ready", RANK_RETRY, at, None, counts)
