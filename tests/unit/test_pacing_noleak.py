"""No ground truth reaches a pacing policy: it learns from what a live dialer sees.

The policy's inputs are the :class:`PacingView` it decides on and the records it observes. This
file checks the simulator's half: the records are exactly the shared types, none of them (nor
the view's counters) carries a "was it a person" field, and a campaign whose hand-overs are all
people looks, to the policy, exactly like one whose hand-overs are all undetected machines.
The live runner's half (issue 10: the runner builds the same records from switch events) cannot
be tested until that runner exists; see docs/pacing.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from engine.dialer.pacing import PacingView, PredictivePolicy, make_policy
from engine.dialer.pacing.view import (
    OBSERVATION_TYPES,
    AgentTaskDone,
    DialResolved,
    Observation,
    PacingPolicy,
    PacingStats,
)
from engine.dialer.sim import load_scenario, parse_scenario, simulate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pacing"

# What a live dialer knows per record: the switch's timestamps, the dialer's own hand-over and
# drop-timer decisions, agent segment lengths. Nothing else may appear here.
ALLOWED_FIELDS = {
    DialResolved: {"dialed_at", "resolved_at", "needs_agent", "patience"},
    AgentTaskDone: {"kind", "duration", "ended_at"},
    PacingStats: {
        "shift_start",
        "dials",
        "handed_over",
        "dropped",
        "connects",
        "amd_human",
        "amd_false_positive_rate",
    },
}
TRUTH_WORDS = ("human", "person", "live", "machine", "truth", "abandon", "outcome")


class Recorder:
    """Wraps a policy and keeps every input it is given."""

    def __init__(self, inner: PacingPolicy) -> None:
        self.inner = inner
        self.name = inner.name
        self.observed: list[Observation] = []
        self.views: list[tuple[float, PacingView]] = []

    @property
    def tick_s(self) -> float:
        return float(getattr(self.inner, "tick_s", 1.0))

    @property
    def event_driven(self) -> bool:
        return bool(getattr(self.inner, "event_driven", True))

    @property
    def decide_on_agent_free(self) -> bool:
        return bool(getattr(self.inner, "decide_on_agent_free", True))

    @property
    def floor_on_resolve(self) -> bool:
        return bool(getattr(self.inner, "floor_on_resolve", False))

    def decide(self, view: PacingView, now: float) -> int:
        self.views.append((now, view))
        return self.inner.decide(view, now)

    def decide_floor(self, view: PacingView, now: float) -> int:
        self.views.append((now, view))
        floor = getattr(self.inner, "decide_floor", None)
        assert floor is not None, "floor_on_resolve is only True for policies with a floor"
        return int(floor(view, now))

    def observe(self, obs: Observation) -> None:
        self.observed.append(obs)
        self.inner.observe(obs)


def test_the_learner_sees_only_the_shared_record_types_and_no_truth_field() -> None:
    for cls, allowed in ALLOWED_FIELDS.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == allowed, cls.__name__
    # The detector's *verdict* count is allowed ("amd_human" is what AMD said, not the truth);
    # every other field must not name the truth.
    for cls in (DialResolved, AgentTaskDone):
        for f in dataclasses.fields(cls):
            assert not any(word in f.name for word in TRUTH_WORDS), f"{cls.__name__}.{f.name}"
    assert set(OBSERVATION_TYPES) == {DialResolved, AgentTaskDone}

    sc = dataclasses.replace(load_scenario(FIXTURES / "S2b.json"), shift_hours=0.5)
    rec = Recorder(make_policy("predictive"))
    simulate(sc, rec, 3)
    kinds = {type(obs) for obs in rec.observed}
    assert kinds == {DialResolved, AgentTaskDone}  # exactly these classes, no subclasses
    assert any(isinstance(o, DialResolved) and o.needs_agent for o in rec.observed)
    assert all(type(view.stats) is PacingStats for _, view in rec.views)


def _shift(outcome_key: str) -> dict[str, object]:
    data = json.loads((FIXTURES / "S0.json").read_text())
    data.update(
        name=outcome_key,
        shift_hours=1,
        talk_s=12.0,  # the undetected-machine handling time without AMD (simulator default)
        dial_outcomes={"live": 0.0, "fast_fail": 0.0, "machine": 0.0, outcome_key: 0.3},
    )
    return dict(data)


def test_people_and_undetected_machines_look_the_same_to_the_policy() -> None:
    """Same far-end timings, once all people and once all machines the AMD missed (no AMD):
    the truth differs completely, so any leak would change what the policy is given."""
    people = parse_scenario(_shift("live"))
    machines = parse_scenario(_shift("machine"))
    runs = {}
    for sc in (people, machines):
        rec = Recorder(PredictivePolicy())
        result = simulate(sc, rec, 5)
        runs[sc.name] = (rec, result.figures)
    (rec_p, fig_p), (rec_m, fig_m) = runs["live"], runs["machine"]
    assert fig_p.live_answers > 100 and fig_m.live_answers == 0  # the truth does differ
    assert len(rec_p.observed) > 1000
    assert rec_p.observed == rec_m.observed
    assert rec_p.views == rec_m.views
