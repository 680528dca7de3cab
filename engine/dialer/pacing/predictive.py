"""Our predictive policy: dial while the next call's predicted abandon risk is below a threshold
that a feedback loop moves to hold the campaign's abandon target.

Per decision, on a half-second grid over the next ring window:

* supply(t): agents free by ``t + patience``. Idle agents count 1; an agent in wrap-up or talking
  counts the learned probability that its remaining time (conditioned on the time already spent)
  ends by then. Mean and variance are summed over agents (independent Bernoullis).
* demand(t): answers needing an agent by ``t``: those already waiting, plus, for each call still
  ringing, the learned chance it turns into a hand-over within ``t`` given it has rung this long.
* A new call handed over at ``t`` is abandoned when, first come first served, demand before it
  reaches supply; with the normal approximation of ``supply - demand`` that is
  ``Phi((0.5 - mean) / sd)``. Averaging over the learned hand-over time of a fresh dial gives the
  marginal risk ``r(n)`` of the n-th call placed now (the other n-1 join the demand).
* Dial the largest ``n`` with ``r(n) <= theta``. ``theta`` is an integral controller on the
  campaign's abandon slack (target minus margin, times live answers, minus abandons) with
  guards that cut it as the cumulative, clock-hour or rolling-hour budget runs out.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.dialer.pacing.learn import STEP, DialModel, DurationModel, phi_table
from engine.dialer.pacing.view import (
    AgentTaskDone,
    DialResolved,
    FloatArray,
    Observation,
    PacingView,
    clamp_dials,
)


@dataclass(frozen=True)
class PredictiveConfig:
    target_abandon_pct: float = 3.0
    safety_margin_pct: float = 0.6
    hour_limit_pct: float = 5.0
    hour_margin_pct: float = 1.5
    guard_budget: float = 4.0
    """Abandons of headroom below which a guard starts throttling."""
    theta_init: float = 0.05
    theta_min: float = 0.0005
    theta_max: float = 0.6
    gain: float = 0.1
    """log-theta change per abandon of slack."""
    max_lines_per_agent: float = 6.0
    hour_s: float = 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.target_abandon_pct <= 100:
            raise ValueError("target_abandon_pct must be in (0, 100]")
        if not 0 <= self.safety_margin_pct < self.target_abandon_pct:
            raise ValueError("safety_margin_pct must be in [0, target_abandon_pct)")
        if not 0 <= self.hour_margin_pct < self.hour_limit_pct:
            raise ValueError("hour_margin_pct must be in [0, hour_limit_pct)")
        if not 0 < self.theta_min <= self.theta_init <= self.theta_max <= 1:
            raise ValueError("need 0 < theta_min <= theta_init <= theta_max <= 1")


_PHI_Z, _PHI_P = phi_table()


def _talk_prior() -> list[float]:
    # Before 30 real talks: an exponential with a 3-minute mean (long, so supply is under-rated
    # and the cold start errs towards idle agents rather than abandons).
    return [-180.0 * math.log(1.0 - (i + 0.5) / 40.0) for i in range(40)]


class PredictivePolicy:
    name = "predictive"
    # Scheduling hints for the caller: a decision costs ~0.1 ms of numpy, so take it on a
    # half-second tick and whenever an agent frees up rather than after every call event.
    tick_s = 0.5
    event_driven = False

    def __init__(self, config: PredictiveConfig | None = None) -> None:
        self.config = config or PredictiveConfig()
        self.talk = DurationModel(_talk_prior())
        self.wrap = DurationModel([15.0], min_real=10)
        self.dials = DialModel()
        self._log_theta = math.log(self.config.theta_init)
        self._seen_live = 0
        self._seen_abandon = 0
        self._hour_index = -1
        self._hour_live0 = 0
        self._hour_abandon0 = 0
        self._rolling: deque[tuple[float, int, int]] = deque()
        self.last_theta = self.config.theta_init

    # -- learning -------------------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        if isinstance(obs, DialResolved):
            self.dials.add(
                obs.dialed_at,
                obs.resolved_at - obs.dialed_at,
                obs.needs_agent,
                obs.human,
                obs.patience,
            )
        elif isinstance(obs, AgentTaskDone):
            (self.talk if obs.kind == "talk" else self.wrap).add(obs.duration)

    # -- abandon budget controller --------------------------------------------------------------
    def _theta(self, view: PacingView, now: float) -> float:
        cfg = self.config
        live, ab = view.stats.live_answers, view.stats.abandons
        target = (cfg.target_abandon_pct - cfg.safety_margin_pct) / 100.0
        hour_eff = (cfg.hour_limit_pct - cfg.hour_margin_pct) / 100.0
        d_live, d_ab = live - self._seen_live, ab - self._seen_abandon
        if d_live or d_ab:
            # Integral action on the slack: +target per clean answer, -1 per abandon.
            self._log_theta += cfg.gain * (target * d_live - d_ab)
            lo, hi = math.log(cfg.theta_min), math.log(cfg.theta_max)
            self._log_theta = min(hi, max(lo, self._log_theta))
            self._seen_live, self._seen_abandon = live, ab
            self._rolling.append((now, live, ab))
        while self._rolling and self._rolling[0][0] < now - cfg.hour_s:
            self._rolling.popleft()
        theta = math.exp(self._log_theta)

        # Cumulative guard: below the shift's slack, cut hard.
        slack = target * live - ab
        if slack < 0:
            theta *= max(0.05, 1.0 + slack / cfg.guard_budget)

        # Clock-hour guard: abandons still allowed this hour, given the answers expected in it.
        elapsed = max(0.0, now - view.stats.shift_start)
        hour = int(elapsed // cfg.hour_s)
        if hour != self._hour_index:
            self._hour_index, self._hour_live0, self._hour_abandon0 = hour, live, ab
        in_hour = elapsed - hour * cfg.hour_s
        live_h, ab_h = live - self._hour_live0, ab - self._hour_abandon0
        rate = live / elapsed if elapsed > 60.0 else 0.0
        if in_hour > 300.0:
            rate = live_h / in_hour
        expected = live_h + rate * (cfg.hour_s - in_hour)
        theta *= self._guard(hour_eff * expected - ab_h)

        # Rolling-hour guard, for regulators whose hours are not the shift's hours.
        if self._rolling:
            _, live0, ab0 = self._rolling[0]
            window_live = max(live - live0, rate * cfg.hour_s)
            theta *= self._guard(hour_eff * window_live - (ab - ab0))
        theta = max(cfg.theta_min, min(cfg.theta_max, theta))
        self.last_theta = theta
        return theta

    def _guard(self, budget: float) -> float:
        if budget >= self.config.guard_budget:
            return 1.0
        return float(max(0.0, budget / self.config.guard_budget) ** 2)

    # -- the decision -----------------------------------------------------------------------------
    def decide(self, view: PacingView, now: float) -> int:
        theta = self._theta(view, now)
        self.dials.advance(now)
        agents = view.agents
        cap = min(view.free_lines, math.ceil(self.config.max_lines_per_agent * agents))
        if agents == 0 or cap <= 0:
            return 0
        dm = self.dials
        p = dm.p_demand
        cdf = dm.demand_cdf
        bins = cdf.size - 1
        # Horizon: until a fresh dial has had 99.9 % of its chance to be handed over.
        horizon = int(min(bins - 1, max(4, int(np.searchsorted(cdf, 0.999)) + 1)))
        pat = max(0, round(dm.patience / STEP))
        offs = np.arange(horizon) + pat

        mu_s = np.full(horizon, float(len(view.idle_since)))
        var_s = np.zeros(horizon)
        if view.wrap_since:
            surv = self.wrap.survival
            idx = np.minimum(
                (view.elapsed(view.wrap_since, now) / STEP).astype(np.intp),
                self.wrap.size - 1 - offs[-1],
            )
            pf = 1.0 - surv[idx[:, None] + offs[None, :]] / surv[idx][:, None]
            mu_s += pf.sum(axis=0)
            var_s += (pf * (1.0 - pf)).sum(axis=0)
        if view.talking_since:
            surv = self.talk.survival
            idx = np.minimum(
                (view.elapsed(view.talking_since, now) / STEP).astype(np.intp),
                self.talk.size - 1 - offs[-1],
            )
            base = surv[idx][:, None]
            pf = np.zeros((idx.size, horizon))
            wq = self.wrap.quantiles
            for w in wq:
                k = np.maximum(offs - round(w / STEP), 0)
                pf += 1.0 - surv[idx[:, None] + k[None, :]] / base
            pf /= wq.size
            mu_s += pf.sum(axis=0)
            var_s += (pf * (1.0 - pf)).sum(axis=0)

        # Demand counted up to the end of each bin (j + 1): conservative on timing.
        steps = np.arange(1, horizon + 1)
        mu_d = np.full(horizon, float(len(view.waiting_since)))
        var_d = np.zeros(horizon)
        if view.ringing_since:
            rel = dm.release_cdf
            a = np.minimum((view.elapsed(view.ringing_since, now) / STEP).astype(np.intp), bins)
            den = p * (1.0 - cdf[a]) + (1.0 - p) * (1.0 - rel[a])
            ok = den > 1e-9
            a, den = a[ok], den[ok]
            ahead = np.minimum(a[:, None] + steps[None, :], bins)
            q = np.clip(p * (cdf[ahead] - cdf[a][:, None]) / den[:, None], 0.0, 1.0)
            mu_d += q.sum(axis=0)
            var_d += (q * (1.0 - q)).sum(axis=0)

        q0 = p * cdf[steps]
        f0 = cdf[1 : horizon + 1] - cdf[:horizon]
        weight = float(f0.sum())
        if weight <= 0:
            return 0
        f0 = f0 * (dm.human.value / weight)
        base_mean = mu_s - mu_d
        base_var = var_s + var_d + 0.25
        q0_var = q0 * (1.0 - q0)
        # r(n) grows with n, so search in doubling chunks: most decisions stop in the first.
        n = 0
        lo, size = 0, 8
        while lo < cap:
            others = np.arange(lo, min(cap, lo + size), dtype=np.float64)[:, None]
            mean = base_mean[None, :] - others * q0[None, :]
            var = base_var[None, :] + others * q0_var[None, :]
            risk = _phi((0.5 - mean) / np.sqrt(var)) @ f0
            over = risk > theta
            if over.any():
                n = lo + int(np.argmax(over))
                break
            lo += others.shape[0]
            n = lo
            size *= 2
        return clamp_dials(n, view)


def _phi(z: FloatArray) -> FloatArray:
    """Standard normal CDF by table lookup (0.005 steps; plenty for a dial-or-not threshold)."""
    idx = np.clip(((z + 8.0) * 200.0).astype(np.intp), 0, _PHI_P.size - 1)
    return _PHI_P[idx]
