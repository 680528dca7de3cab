"""Is a scenario fit for the pacing corpus: can plain progressive dialling hold the gates on it?

Progressive 1:1 dialling never hands a person over with no agent for them, so its abandons are
the people the AMD hangs up on (false positives), and every person when the AMD's verdict comes
after the abandon window has closed. Those abandons do not depend on the pacing: if they alone
break the gates, no policy can hold them, and the scenario measures the detector, not the pacing
(run 4's H13-five-amd-fp15: every policy broke an hour on false positives alone).

The check reads the scenario's parameters only; no policy is run. Per shift hour it estimates the
live answers progressive dialling gets (each agent places one call at a time and waits for its
outcome, then talks and wraps up when it is handed over) and takes the binomial tail of the
false positives above the hour limit of those answers; the shift gate likewise over the whole
shift. Summed over the scenario's seeds, that is the expected number of gate breaks of
progressive dialling; a scenario is admitted when it is at most ``max_expected_breaks``.
Answer volumes come from the distributions' means and a fixed-seed sample of the dial-to-answer
time (so the check is deterministic). Not modelled: agents logging off with calls in progress.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from engine.dialer.sim.scenario import Scenario
from engine.dialer.sim.simulator import DEFAULT_MACHINE_AGENT_S

_SAMPLES = 4000
_STEPS_PER_HOUR = 4


@dataclass(frozen=True)
class Feasibility:
    admitted: bool
    expected_breaks: float  # expected gate breaks of progressive dialling over the seeds
    answers_per_hour: tuple[float, ...]  # expected live answers per shift hour (progressive)
    abandon_share: float  # share of live answers abandoned whatever the pacing
    reason: str


def _binomial_sf(n: int, p: float, k: int) -> float:
    """P(X > k) for X ~ Binomial(n, p)."""
    if k >= n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if k < 0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    lg = math.lgamma(n + 1)
    total = 0.0
    for x in range(k + 1, n + 1):
        term = math.exp(lg - math.lgamma(x + 1) - math.lgamma(n - x + 1) + x * lp + (n - x) * lq)
        total += term
        if x > n * p and term < total * 1e-12:
            break
    return min(1.0, total)


def _break_chance(mean_answers: float, share: float, limit_pct: float) -> float:
    """P(abandons > limit % of the answers) when each answer is abandoned with ``share`` and
    the answer count itself is Poisson around ``mean_answers``: the count's own noise matters
    on a small team (2 of 40 answers is exactly 5 % and holds, 2 of 38 breaks; run 5's H24,
    which the rule admitted when it took the count at its mean)."""
    if mean_answers <= 0 or share <= 0:
        return 0.0
    sd = math.sqrt(mean_answers)
    lo, hi = max(1, math.floor(mean_answers - 6 * sd)), math.ceil(mean_answers + 6 * sd)
    log_mean = math.log(mean_answers)
    total = 0.0
    for n in range(lo, hi + 1):
        weight = math.exp(n * log_mean - mean_answers - math.lgamma(n + 1))
        total += weight * _binomial_sf(n, share, math.floor(limit_pct / 100.0 * n + 1e-9))
    return min(1.0, total)


def _state_at(sc: Scenario, hour: float) -> tuple[float, float, float, float, int]:
    live, fast_fail, machine = sc.live, sc.fast_fail, sc.machine
    talk, agents = sc.talk_s.mean, sc.agents
    for ch in sc.changes:
        if ch.at_hour > hour:
            break
        if ch.key == "live":
            live = ch.value
        elif ch.key == "fast_fail":
            fast_fail = ch.value
        elif ch.key == "machine":
            machine = ch.value
        elif ch.key == "talk_mean_s":
            talk = ch.value
        elif ch.key == "agents":
            agents = int(ch.value)
    return live, fast_fail, machine, talk, agents


def assess(
    sc: Scenario,
    *,
    hour_limit_pct: float = 5.0,
    shift_limit_pct: float = 3.0,
    max_expected_breaks: float = 0.1,
) -> Feasibility:
    rng = random.Random(0)
    pdd, ring, ff = (
        d.sampler(rng) for d in (sc.post_dial_delay_s, sc.ring_to_answer_s, sc.fast_fail_s)
    )
    delays = [pdd() + ring() for _ in range(_SAMPLES)]
    answered = [d for d in delays if d < sc.ring_timeout_s]
    q = len(answered) / _SAMPLES
    mean_answer = sum(answered) / len(answered) if answered else 0.0
    mean_ff = sum(ff() for _ in range(_SAMPLES)) / _SAMPLES
    wrap = sc.wrap_s.mean
    amd = sc.amd
    if amd is None:
        fp, decide, machine_hold = 0.0, 0.0, q * (DEFAULT_MACHINE_AGENT_S + wrap)
    else:
        # A person is passed on after the verdict; the window opens after the greeting.
        too_late = amd.human_decision_s >= amd.greeting_s + sc.abandon_window_s
        fp = 1.0 if too_late else amd.human_false_positive
        decide = amd.human_decision_s
        machine_hold = q * (
            amd.machine_detect * amd.machine_decision_s
            + (1.0 - amd.machine_detect) * (decide + amd.undetected_machine_agent_s + wrap)
        )
    # Agent-seconds one dial costs under progressive dialling, by outcome.
    ring_out = q * mean_answer + (1.0 - q) * sc.ring_timeout_s
    hours = max(1, math.ceil(sc.shift_hours - 1e-9))
    per_hour: list[float] = []
    for h in range(hours):
        span = min(1.0, sc.shift_hours - h)
        volume = 0.0
        for i in range(_STEPS_PER_HOUR):
            t = h + span * (i + 0.5) / _STEPS_PER_HOUR
            live, fast_fail, machine, talk, agents = _state_at(sc, t)
            none = max(0.0, 1.0 - live - fast_fail - machine)
            cost = (
                live * (ring_out + q * decide + q * (1.0 - fp) * (talk + wrap))
                + fast_fail * mean_ff
                + machine * (ring_out + machine_hold)
                + none * sc.ring_timeout_s
            )
            rate = agents * live * q / cost if cost > 0 else 0.0
            volume += rate * 3600.0 * span / _STEPS_PER_HOUR
        per_hour.append(volume)
    seeds = max(1, len(sc.seeds))
    hour_breaks = sum(_break_chance(n, fp, hour_limit_pct) for n in per_hour)
    shift_break = _break_chance(sum(per_hour), fp, shift_limit_pct)
    expected = seeds * (hour_breaks + shift_break)
    admitted = expected <= max_expected_breaks
    quietest = min((n for n in per_hour if n > 0), default=0.0)
    reason = (
        f"progressive dialling breaks a gate {expected:.2f} times in expectation over "
        f"{seeds} seeds (limit {max_expected_breaks}): abandons whatever the pacing "
        f"{100 * fp:.2f} % of live answers, ~{quietest:.0f} live answers in the quietest hour, "
        f"so {hour_limit_pct:g} % of an hour is ~{hour_limit_pct / 100 * quietest:.1f} of them"
    )
    return Feasibility(admitted, expected, tuple(per_hour), fp, reason)
