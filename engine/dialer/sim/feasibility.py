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
time (so the check is deterministic).

Log-offs (run 10; run 9's H30: 70 -> 3 agents, where progressive broke the hour after the drop on
7 of 10 seeds): the simulator sends idle agents home at once, and under progressive dialling an
idle agent is one whose own call is still in progress. Those calls are orphaned: by Little's law
an agent has ``handover rate x mean dial-to-hand-over time`` calls in flight that will still be
handed over, i.e. that over its idle share per idle agent; the drop orphans
``min(N - M, idle agents)`` of them. Each is abandoned unless one of the M agents left frees up
within the abandon window (``exp(-M * window / (talk + wrap))``). Those abandons (Poisson) land in
the drop's hour on top of the false positives, and in the shift's count.
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
    logoff_abandons: tuple[float, ...] = ()  # expected orphaned abandons per shift hour


def _binomial_sf(n: int, p: float, k: int) -> float:
    """P(X > k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 1.0
    if k >= n or p <= 0.0:
        return 0.0
    if p >= 1.0:
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


def _poisson_pmf(mu: float) -> list[float]:
    """P(X = x) for X ~ Poisson(mu), x = 0 .. far into the tail."""
    if mu <= 0:
        return [1.0]
    top = int(mu + 12 * math.sqrt(mu) + 12)
    return [math.exp(x * math.log(mu) - mu - math.lgamma(x + 1)) for x in range(top + 1)]


def _break_chance(mean_answers: float, share: float, limit_pct: float, extra: float = 0.0) -> float:
    """P(abandons > limit % of the answers) when each answer is abandoned with ``share`` and
    the answer count itself is Poisson around ``mean_answers``: the count's own noise matters
    on a small team (2 of 40 answers is exactly 5 % and holds, 2 of 38 breaks; run 5's H24,
    which the rule admitted when it took the count at its mean). ``extra``: the mean of further
    abandons (Poisson, independent of the answer count: calls orphaned by a log-off)."""
    if mean_answers <= 0 or (share <= 0 and extra <= 0):
        return 0.0
    extra_pmf = _poisson_pmf(extra)
    sd = math.sqrt(mean_answers)
    lo, hi = max(1, math.floor(mean_answers - 6 * sd)), math.ceil(mean_answers + 6 * sd)
    log_mean = math.log(mean_answers)
    total = 0.0
    for n in range(lo, hi + 1):
        weight = math.exp(n * log_mean - mean_answers - math.lgamma(n + 1))
        k = math.floor(limit_pct / 100.0 * n + 1e-9)
        tail = sum(px * _binomial_sf(n, share, k - x) for x, px in enumerate(extra_pmf))
        total += weight * tail
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
        machine_busy = machine_hold
    else:
        # A person is passed on after the verdict; the window opens after the greeting.
        too_late = amd.human_decision_s >= amd.greeting_s + sc.abandon_window_s
        fp = 1.0 if too_late else amd.human_false_positive
        decide = amd.human_decision_s
        machine_hold = q * (
            amd.machine_detect * amd.machine_decision_s
            + (1.0 - amd.machine_detect) * (decide + amd.undetected_machine_agent_s + wrap)
        )
        machine_busy = q * (1.0 - amd.machine_detect) * (amd.undetected_machine_agent_s + wrap)
    # Agent-seconds one dial costs under progressive dialling, by outcome, and of those the
    # seconds the agent is busy (talking or wrapping up; otherwise it waits on its call).
    ring_out = q * mean_answer + (1.0 - q) * sc.ring_timeout_s
    hand_delay = mean_answer + decide  # dial to hand-over, for a person passed on

    def per_dial(t: float) -> tuple[float, float, float, float, int]:
        """(handed-over people, agent-seconds, busy agent-seconds) per dial at hour t, with the
        talk mean and the agents logged in."""
        live, fast_fail, machine, talk, agents = _state_at(sc, t)
        none = max(0.0, 1.0 - live - fast_fail - machine)
        cost = (
            live * (ring_out + q * decide + q * (1.0 - fp) * (talk + wrap))
            + fast_fail * mean_ff
            + machine * (ring_out + machine_hold)
            + none * sc.ring_timeout_s
        )
        busy = live * q * (1.0 - fp) * (talk + wrap) + machine * machine_busy
        return live * q, cost, busy, talk, agents

    hours = max(1, math.ceil(sc.shift_hours - 1e-9))
    per_hour: list[float] = []
    for h in range(hours):
        span = min(1.0, sc.shift_hours - h)
        volume = 0.0
        for i in range(_STEPS_PER_HOUR):
            t = h + span * (i + 0.5) / _STEPS_PER_HOUR
            answers, cost, _, _, agents = per_dial(t)
            rate = agents * answers / cost if cost > 0 else 0.0
            volume += rate * 3600.0 * span / _STEPS_PER_HOUR
        per_hour.append(volume)
    orphaned = [0.0] * hours
    for ch in sc.changes:
        if ch.key != "agents" or not 0.0 < ch.at_hour < sc.shift_hours:
            continue
        answers, cost, busy, talk, before = per_dial(ch.at_hour - 1e-9)
        after = int(ch.value)
        if after >= before or cost <= 0:
            continue
        idle_share = max(0.0, 1.0 - busy / cost)
        # Calls in flight per agent that will still hand a person over (Little's law).
        in_flight = answers * (1.0 - fp) / cost * hand_delay
        idle_agents = before * idle_share
        orphans = min(before - after, idle_agents) * in_flight / idle_share if idle_share else 0.0
        lost = math.exp(-after * sc.abandon_window_s / (talk + wrap)) if talk + wrap > 0 else 1.0
        orphaned[min(hours - 1, int(ch.at_hour))] += orphans * lost
    seeds = max(1, len(sc.seeds))
    hour_breaks = sum(
        _break_chance(n, fp, hour_limit_pct, extra)
        for n, extra in zip(per_hour, orphaned, strict=True)
    )
    shift_break = _break_chance(sum(per_hour), fp, shift_limit_pct, sum(orphaned))
    expected = seeds * (hour_breaks + shift_break)
    admitted = expected <= max_expected_breaks
    quietest = min((n for n in per_hour if n > 0), default=0.0)
    reason = (
        f"progressive dialling breaks a gate {expected:.2f} times in expectation over "
        f"{seeds} seeds (limit {max_expected_breaks}): abandons whatever the pacing "
        f"{100 * fp:.2f} % of live answers, ~{quietest:.0f} live answers in the quietest hour, "
        f"so {hour_limit_pct:g} % of an hour is ~{hour_limit_pct / 100 * quietest:.1f} of them"
    )
    if any(orphaned):
        h = max(range(hours), key=lambda i: orphaned[i])
        reason += (
            f"; agents logging off orphan calls in flight: ~{orphaned[h]:.1f} abandons in hour "
            f"{h + 1} of ~{per_hour[h]:.0f} live answers (limit "
            f"{hour_limit_pct / 100 * per_hour[h]:.1f})"
        )
    return Feasibility(admitted, expected, tuple(per_hour), fp, reason, tuple(orphaned))
