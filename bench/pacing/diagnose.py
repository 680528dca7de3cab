"""``python -m bench.pacing.diagnose``: where a scenario's non-busy agent time goes (run 8).

Runs the predictive policy through an instrumented copy of the simulator and splits every
agent's idle time (freed up -> connected) by the call that ended it:

* ``ring_luck``: that call was already dialled when the agent freed up; the agent waited for a
  call in flight to be answered (ring time and answer luck).
* ``no_dial``: no call was dialled for the agent yet (the policy chose not to); the share of
  that wait during which a guard had cut theta to under half the controller's value is
  ``no_dial_guard`` (which guard: ``*_guard_cut_share`` of all decisions).
* ``late_ring``: the ring time of a call dialled only after the agent freed up.
* ``open``: idle at the end of the shift.

Counterfactual variants (bench-only; they read the simulator's truth, no live dialer can):

* ``oracle-supply``: the same policy and controller told every busy agent's true free instant.
* ``oracle-ring``: told the true hand-over instant of every call already ringing (fresh dials
  are still a forecast); ``oracle-both``: both.
* ``clairvoyant``: knows every dial's far end in advance (the simulator's own draw sequence)
  and every agent's free instant; dials the next number as soon as no hand-over would wait
  longer than the abandon window less 0.3 s. It never abandons, so it obeys any gate: a lower
  estimate of what a clairvoyant dialer reaches, i.e. an upper bound for real ones.

The oracles need an agent's free instant at hand-over, so they take scenarios with a constant
wrap-up, no AMD and no changes (S0-S5 but S1); the plain decomposition takes any scenario.
Figures are percentages of logged-in agent-seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from engine.dialer.pacing.learn import STEP
from engine.dialer.pacing.predictive import PredictivePolicy, _add, _gather, _phi, _rows
from engine.dialer.pacing.view import Observation, PacingView, clamp_dials
from engine.dialer.sim import simulator as simmod
from engine.dialer.sim.scenario import Scenario, load_scenario
from engine.dialer.sim.simulator import CampaignSimulator

VARIANTS = ("base", "oracle-supply", "oracle-ring", "oracle-both", "clairvoyant")
PARTS = ("ring_luck", "no_dial", "no_dial_guard", "late_ring", "open")


class _Policy(PredictivePolicy):
    """The predictive policy, recording theta before and after its guards."""

    raw_theta = 0.0
    guard_factors: tuple[float, float] = (1.0, 1.0)

    def __init__(self) -> None:
        super().__init__()
        self._factors: list[float] = []

    def _theta(self, view: PacingView, now: float) -> float:
        self._factors = []
        theta = super()._theta(view, now)
        cfg = self.config
        self.raw_theta = max(cfg.theta_min, min(cfg.theta_max, math.exp(self._log_theta)))
        got = [*self._factors, 1.0, 1.0]
        self.guard_factors = (got[0], got[1])  # clock hour, rolling hour
        return theta

    def _guard(self, budget: float) -> float:
        factor = super()._guard(budget)
        self._factors.append(factor)
        return factor


class _Oracle(_Policy):
    """:class:`_Policy` with true supply and/or true hand-overs of calls in flight."""

    def __init__(self, sim: _Sim, *, supply: bool, ring: bool) -> None:
        super().__init__()
        self.sim, self.supply_oracle, self.ring_oracle = sim, supply, ring

    def decide(self, view: PacingView, now: float) -> int:
        theta = self._theta(view, now)
        self.dials.advance(now, min(view.ringing_since, default=math.inf))
        self.talk.refresh(now, view.talking_since)
        self.wrap.refresh(now, view.wrap_since)
        agents = self._agents = view.agents
        cap = min(view.free_lines, math.ceil(self.config.max_lines_per_agent * agents))
        if agents == 0 or cap <= 0:
            return 0
        dm, sim = self.dials, self.sim
        h = dm.horizon
        pat = max(0, round(dm.patience / STEP))
        p_risk = self._p_risk()
        q0, q0_var, f0 = self._demand_table(h, p_risk)
        acc = np.full(2 * h, 0.25)
        acc[:h] = len(view.idle_since) - len(view.waiting_since)
        if self.supply_oracle:
            busy = [sim.free_at[a] for a in (*sim.talking, *sim.wrapping)]
            if busy:
                grid = now + (np.arange(h) + pat) * STEP
                acc[:h] += (np.asarray(busy)[:, None] <= grid[None, :]).sum(0)
        else:
            talk_t, wrap_t = self._supply_tables(h, pat)
            if view.wrap_since:
                acc += _add(_gather(wrap_t, view.wrap_since, now, 1.0 / STEP), 0)
            if view.talking_since:
                acc += _add(_gather(talk_t, view.talking_since, now, 1.0), 0)
        if self.ring_oracle:
            due = list(sim.handover_at.values())
            if due:
                grid = now + (np.arange(h) + 1) * STEP
                acc[:h] -= (np.asarray(due)[:, None] <= grid[None, :]).sum(0)
        elif view.ringing_since:
            bins = self._ring_a.size
            rows = _rows(view.ringing_since, now, 1.0 / STEP, bins)
            counts = np.bincount(rows, minlength=bins).astype(np.float64)
            got_mean, got_var = self._ringing_demand(counts, h, p_risk)
            acc[:h] -= got_mean
            acc[h:] += got_var
        base_mean, base_var = acc[:h], acc[h:]
        self._forecast_sd = math.sqrt(float(base_var[self._median]))
        floor = len(view.idle_since) - len(view.ringing_since) - len(view.waiting_since)
        n = max(0, floor)
        gap = 0.5 - base_mean
        while n < cap:  # a plain scan: same answer as the policy's search, slower
            z = (gap + n * q0) / np.sqrt(base_var + n * q0_var)
            if float(_phi(z) @ f0) > theta:
                break
            n += 1
        self.last_floor, self.last_model = floor, n
        return clamp_dials(max(n, floor), view)


class _Clairvoyant:
    name = "clairvoyant"
    event_driven = True
    tick_s = 0.1

    def __init__(self, sim: _Sim, handovers: list[float | None], slack: float = 0.3) -> None:
        self.sim, self.handovers = sim, handovers
        self.window = sim.sc.abandon_window_s - slack

    def observe(self, obs: Observation) -> None:
        return None

    def decide(self, view: PacingView, now: float) -> int:
        sim = self.sim
        free = sorted(
            [now] * len(view.idle_since) + [sim.free_at[a] for a in (*sim.talking, *sim.wrapping)]
        )
        pending = sorted([*sim.handover_at.values(), *([now] * len(view.waiting_since))])
        n, first = 0, sim.next_call
        while n < view.free_lines:
            delay = self.handovers[first + n]
            if delay is not None:
                trial = sorted([*pending, now + delay])
                # First come, first served: the k-th hand-over takes the k-th agent to free up
                # (an agent a call in flight connects to is not free again within a ring).
                if len(trial) > len(free) or any(
                    f - t > self.window for t, f in zip(trial, free, strict=False)
                ):
                    break
                pending = trial
            n += 1
        return n


def _handovers(sc: Scenario, seed: int, count: int) -> list[float | None]:
    """Delay from dial to hand-over of the i-th dial (None: it never needs an agent), drawn
    from the simulator's own streams (each dial takes one value from each)."""

    def stream(purpose: str) -> random.Random:
        return random.Random(f"pacing-sim:{seed}:{purpose}")

    r_out, r_amd = stream("outcome"), stream("amd")
    pdd = sc.post_dial_delay_s.sampler(stream("pdd"))
    ring = sc.ring_to_answer_s.sampler(stream("ring"))
    fast = sc.fast_fail_s.sampler(stream("fast_fail"))
    out: list[float | None] = []
    for _ in range(count):
        u = r_out.random()
        delay = pdd() + ring()
        fast()
        r_amd.random()
        answers = u < sc.live or sc.live + sc.fast_fail <= u < sc.live + sc.fast_fail + sc.machine
        out.append(delay if answers and delay < sc.ring_timeout_s else None)
    return out


class _Sim(CampaignSimulator):
    """Records idle spells with the dial instant of the call that ended each, the decisions'
    thetas, every agent's true free instant and every call's true hand-over instant."""

    def __init__(self, sc: Scenario, seed: int) -> None:
        super().__init__(sc, PredictivePolicy(), seed)
        self.spells: list[tuple[float, float, float]] = []
        self.open_spells: list[tuple[float, float]] = []
        self.decisions: list[tuple[float, float, float, float, float, int, int]] = []
        self.free_at: dict[int, float] = {}
        self.handover_at: dict[int, float] = {}
        self.wrap_const = float(sc.wrap_s.a) if sc.wrap_s.kind == "const" else math.nan
        self.talking, self.wrapping = self._talking, self._wrapping
        self._drawn_talk = 0.0
        draw = self._talk

        def talk() -> float:
            self._drawn_talk = draw()
            return self._drawn_talk

        self._talk = talk

    @property
    def next_call(self) -> int:
        return self._next_call

    def use(self, policy: Any) -> None:
        self.policy = policy
        self._tick_s = float(policy.tick_s)
        self._event_driven = bool(policy.event_driven)
        self._decide_floor = getattr(policy, "decide_floor", None)
        self._read_hints()

    def _connect(self, agent: int, call_id: int, now: float) -> None:
        since = self._idle.get(agent)
        dialed = self._calls[call_id].dialed_at
        super()._connect(agent, call_id, now)
        if since is not None:
            self.spells.append((since, now, dialed))
        machine_s = self.sc.amd.undetected_machine_agent_s if self.sc.amd else 12.0
        held = self._drawn_talk if self._talk_human[agent] else machine_s
        self.free_at[agent] = now + held + self.wrap_const

    def _dial(self, now: float) -> None:
        call_id = self._next_call
        super()._dial(now)
        call = self._calls[call_id]
        if call.outcome in (simmod._HUMAN, simmod._MACHINE):
            self.handover_at[call_id] = call.resolve_at

    def _resolve(self, call_id: int, now: float) -> bool:
        self.handover_at.pop(call_id, None)
        return super()._resolve(call_id, now)

    def _decide(self, now: float, *, floor_only: bool = False) -> None:
        super()._decide(now, floor_only=floor_only)
        pol = self.policy
        if not floor_only and isinstance(pol, _Policy):
            hour, rolling = pol.guard_factors
            self.decisions.append(
                (now, pol.raw_theta, pol.last_theta, hour, rolling, pol.last_floor, pol.last_model)
            )

    def _finish(self, end: float) -> None:
        self.open_spells.extend((since, end) for since in self._idle.values())
        super()._finish(end)


def diagnose(path: str, seed: int, variant: str = "base") -> dict[str, Any]:
    """One shift of the scenario at ``path``: figures and the split of idle time."""
    sc = load_scenario(path)
    sim = _Sim(sc, seed)
    if variant != "base" and (sc.amd is not None or sc.changes or math.isnan(sim.wrap_const)):
        raise ValueError(f"{variant} needs a constant wrap-up, no AMD and no changes")
    if variant == "base":
        sim.use(_Policy())
    elif variant == "clairvoyant":
        # One dial per agent per 3 s is several times what it places (an IndexError says if not).
        count = int(sc.agents * sc.shift_s / 3.0) + 10_000
        sim.use(_Clairvoyant(sim, _handovers(sc, seed, count)))
    else:
        supply, ring = variant in ("oracle-supply", "oracle-both"), variant != "oracle-supply"
        sim.use(_Oracle(sim, supply=supply, ring=ring))
    fig = sim.run().figures
    hours = max(1, math.ceil(sc.shift_s / 3600.0))
    parts = {k: np.zeros(hours) for k in PARTS}

    def add(key: str, start: float, end: float) -> None:
        while start < end:
            hour = min(int(start // 3600.0), hours - 1)
            stop = min(end, (hour + 1) * 3600.0)
            parts[key][hour] += stop - start
            start = stop

    times = np.array([d[0] for d in sim.decisions])
    cut = np.array([d[2] < 0.5 * d[1] for d in sim.decisions], dtype=bool)
    for since, until, dialed in sim.spells:
        if dialed <= since:
            add("ring_luck", since, until)
            continue
        i, j = np.searchsorted(times, since), np.searchsorted(times, dialed)
        share = float(cut[i:j].mean()) if j > i else 0.0
        mid = since + (dialed - since) * (1.0 - share)
        add("no_dial", since, mid)
        add("no_dial_guard", mid, dialed)
        add("late_ring", dialed, until)
    for since, until in sim.open_spells:
        add("open", since, until)
    agent_s = sim.tally.agent_s
    dec = sim.decisions

    def share_of(test: Any) -> float:
        return float(np.mean([bool(test(d)) for d in dec])) if dec else 0.0

    return {
        "scenario": sc.name,
        "variant": variant,
        "seed": seed,
        "busy_pct": fig.busy_pct,
        "abandon_pct": fig.abandon_pct,
        "worst_hour_abandon_pct": fig.worst_hour_abandon_pct,
        "idle_pct": {k: 100.0 * float(v.sum()) / agent_s for k, v in parts.items()},
        # per shift hour, as a share of the hour's agent-seconds if all were logged in
        "idle_pct_by_hour": {
            k: (100.0 * v / (sc.agents * 3600.0)).round(2).tolist() for k, v in parts.items()
        },
        "guard_cut_share": float(cut.mean()) if dec else 0.0,
        "hour_guard_cut_share": share_of(lambda d: d[3] < 0.5),
        "rolling_guard_cut_share": share_of(lambda d: d[4] < 0.5),
        "cumulative_guard_cut_share": share_of(lambda d: d[2] < 0.5 * d[1] * d[3] * d[4]),
        "floor_only_share": share_of(lambda d: d[6] <= max(0, d[5])),
    }


def _job(job: tuple[str, int, str]) -> dict[str, Any]:
    return diagnose(*job)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pacing.diagnose", description=__doc__)
    ap.add_argument("--scenario", default="bench/pacing_scenarios/S0.json")
    ap.add_argument("--seeds", default="1,2,3,4")
    ap.add_argument("--variants", default="base")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        ap.error(f"unknown variants {bad}; known: {', '.join(VARIANTS)}")
    jobs = [(args.scenario, s, v) for v in variants for s in seeds]
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(_job, jobs))
    for row in rows:
        print(json.dumps(row))
    for v in variants:
        got = [r for r in rows if r["variant"] == v]
        n = len(got)

        def mean(key: str, rows: list[dict[str, Any]] = got) -> float:
            return sum(float(r[key]) for r in rows) / len(rows)

        idle = {k: round(sum(r["idle_pct"][k] for r in got) / n, 2) for k in PARTS}
        print(
            f"{v}: busy {mean('busy_pct'):.2f} % abandons {mean('abandon_pct'):.2f} % "
            f"(worst seed {max(r['abandon_pct'] for r in got):.2f}, worst hour "
            f"{max(r['worst_hour_abandon_pct'] for r in got):.2f}) idle {idle} "
            f"guard cut {mean('guard_cut_share'):.3f} (cumulative "
            f"{mean('cumulative_guard_cut_share'):.3f}, hour {mean('hour_guard_cut_share'):.3f}, "
            f"rolling {mean('rolling_guard_cut_share'):.3f}) floor only "
            f"{mean('floor_only_share'):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
