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
  guards that cut it as the cumulative, clock-hour or rolling-hour budget runs out. The margin
  is half a standard error of an abandon rate measured over the answers seen so far (wide at
  the start of a campaign, 0.1 point once thousands of answers back the estimate).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
    """Largest margin kept below the target (used while few answers have been seen)."""
    margin_se_factor: float = 0.5
    """The margin is this many standard errors of a running abandon rate at the target."""
    min_margin_pct: float = 0.1
    """Smallest margin, however many answers have been seen (the controller's own jitter)."""
    hour_limit_pct: float = 5.0
    hour_margin_pct: float = 1.5
    unseen_sd_factor: float = 2.0
    """Standard deviations of the AMD false positives (people the detector hung up on, known to
    the dialer only in expectation, so feedback cannot correct their noise) kept below the
    target (margin) and below the hour limit (hour and rolling-hour guards)."""
    share_sd_factor: float = 1.5
    """The risk forecast uses the answer share plus this many of its standard errors (an upper
    credible bound of its posterior): while few dials back the share (a cold start, or just
    after a jump in list quality) the policy dials as if answers were that likely."""
    hour_lookahead_s: float = 600.0
    """The rolling-hour guard's reserve covers the answers expected in this much time ahead
    (run 5; it was the whole window's)."""
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
        if not 0 <= self.min_margin_pct <= self.safety_margin_pct:
            raise ValueError("min_margin_pct must be in [0, safety_margin_pct]")
        if not self.margin_se_factor >= 0:
            raise ValueError("margin_se_factor must be >= 0")
        if not self.unseen_sd_factor >= 0:
            raise ValueError("unseen_sd_factor must be >= 0")
        if not self.share_sd_factor >= 0:
            raise ValueError("share_sd_factor must be >= 0")
        if not 0 <= self.hour_margin_pct < self.hour_limit_pct:
            raise ValueError("hour_margin_pct must be in [0, hour_limit_pct)")
        if not 0 < self.hour_lookahead_s <= self.hour_s:
            raise ValueError("hour_lookahead_s must be in (0, hour_s]")
        if not 0 < self.theta_min <= self.theta_init <= self.theta_max <= 1:
            raise ValueError("need 0 < theta_min <= theta_init <= theta_max <= 1")


_PHI_Z, _PHI_P = phi_table()
_TALK_ROWS = 1800  # elapsed talk seconds tabulated; longer calls use the last row (exp. tail)
_WRAP_ROWS = 1200  # elapsed wrap-up half-seconds tabulated (10 minutes)


def _talk_prior() -> list[float]:
    # Before 30 real talks: an exponential with a 10-minute mean. Deliberately no campaign's
    # timing: so long that supply is under-rated and the cold start leans on the progressive
    # floor (idle agents) rather than on agents expected to finish.
    return [-600.0 * math.log(1.0 - (i + 0.5) / 40.0) for i in range(40)]


_WRAP_PRIOR = [60.0]
"""Before 10 real wrap-ups: one minute (long for the same reason)."""


class PredictivePolicy:
    name = "predictive"
    # Scheduling hints for the caller: a decision costs ~0.1 ms of numpy, so it is taken on a
    # tick and whenever an agent frees up rather than after every call event. How often is
    # derived from the last forecast's standard deviation (sd of supply - demand at the
    # hand-over time), not from a team size: one agent freeing up, or half a second of events,
    # only changes the decision when it moves the forecast by a sizeable part of its sd.
    event_driven = False

    @property
    def tick_s(self) -> float:
        # One grid step per call of the forecast's sd, from one to four: half a second of
        # events moves the forecast by about a call, which matters against an sd under one
        # and is a small part of it once the sd is several calls (many independent agents
        # and calls). Run 3: was min(2, var / 3) steps, which kept S4-large (sd ~2.6) at 1 s
        # ticks and over its CPU budget; 1.3 s ticks there cost no busy or abandon points.
        return STEP * min(4.0, max(1.0, self._forecast_sd))

    @property
    def floor_on_resolve(self) -> bool:
        # Progressive redials the moment a call is released; so does the floor (a cheap count,
        # no model) while agent frees get decisions of their own. Past that, releases come
        # every few milliseconds and the model's calls cover the floor anyway.
        return self._forecast_sd <= 2.0

    def decide_floor(self, view: PacingView, now: float) -> int:
        """The progressive floor alone: one call per idle agent not covered by a call in
        progress (see :meth:`decide`)."""
        pending = len(view.ringing_since) + len(view.waiting_since)
        return clamp_dials(len(view.idle_since) - pending, view)

    @property
    def decide_on_agent_free(self) -> bool:
        # An agent freeing up moves the forecast mean by one: worth a decision of its own while
        # that is at least half the forecast's sd (otherwise the next tick is as good).
        return self._forecast_sd <= 2.0

    def __init__(self, config: PredictiveConfig | None = None) -> None:
        self.config = config or PredictiveConfig()
        self.talk = DurationModel(_talk_prior())
        self.wrap = DurationModel(_WRAP_PRIOR, min_real=10)
        self.dials = DialModel()
        self._log_theta = math.log(self.config.theta_init)
        self._seen_live = 0.0
        self._seen_abandon = 0.0
        self._hour_index = -1
        self._hour_live0 = 0.0
        self._hour_abandon0 = 0.0
        self._hour_unseen0 = 0.0
        self._rolling: deque[tuple[float, float, float]] = deque()
        self._agent_clock: float | None = None
        self._agent_last = 0
        self._agent_s = 0.0
        self._hour_agent_s0 = 0.0
        self._live_start = 0.0
        self.last_theta = self.config.theta_init
        self._agents = 0
        self._forecast_sd = 0.0
        self._median = 0
        self.last_floor = 0
        self.last_model = 0
        self._supply_key: tuple[int, ...] = ()
        self._talk_id: tuple[float, ...] = ()
        self._wrap_key: tuple[int, ...] = ()
        self._ratio_key = (-1, -1.0)
        self._ratio: FloatArray = np.zeros((2, 1))
        self._demand_key: tuple[int, ...] = ()
        self._table_p = 0.0
        self._talk_table: FloatArray = np.zeros((1, 2))
        self._wrap_table: FloatArray = np.zeros((1, 2))
        self._ring_d: FloatArray = np.zeros((1, 2))
        self._ring_a: FloatArray = np.zeros(1)
        self._ring_b: FloatArray = np.zeros(1)
        self._ring_ab: FloatArray = np.zeros(1)
        self._ring_ok: FloatArray = np.zeros(1)
        self._cdf_h: FloatArray = np.zeros(1)
        self._f0: FloatArray = np.zeros(1)
        self._fresh: tuple[FloatArray, FloatArray, FloatArray] = (np.zeros(1),) * 3

    # -- learning -------------------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        if isinstance(obs, DialResolved):
            self.dials.add(
                obs.dialed_at,
                obs.resolved_at - obs.dialed_at,
                obs.needs_agent,
                obs.patience,
            )
        elif isinstance(obs, AgentTaskDone):
            (self.talk if obs.kind == "talk" else self.wrap).add(obs.duration, obs.ended_at)

    # -- abandon budget controller --------------------------------------------------------------
    def _theta(self, view: PacingView, now: float) -> float:
        cfg = self.config
        live, ab = view.stats.live_estimate, view.stats.abandon_estimate
        unseen = view.stats.false_positive_estimate
        target = (cfg.target_abandon_pct - self.margin_pct(live, unseen)) / 100.0
        # Logged-in agent-seconds: answer rates are per agent, so a team that shrinks or grows
        # mid-hour changes the answers expected in the rest of it.
        agents = view.agents
        if self._agent_clock is None:
            self._live_start = live  # a policy started mid-shift measures rates from here
        else:
            self._agent_s += max(0.0, now - self._agent_clock) * self._agent_last
        self._agent_clock, self._agent_last = now, agents
        hour_lim, hour_mrg = cfg.hour_limit_pct / 100.0, cfg.hour_margin_pct / 100.0
        z_fp = cfg.unseen_sd_factor
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
            self._hour_unseen0 = unseen
            self._hour_agent_s0 = self._agent_s
        in_hour = elapsed - hour * cfg.hour_s
        live_h, ab_h = live - self._hour_live0, ab - self._hour_abandon0
        # Answers per logged-in agent-second: over the shift at first, over this hour later.
        rate = (live - self._live_start) / self._agent_s if self._agent_s >= 60.0 else 0.0
        hour_agent_s = self._agent_s - self._hour_agent_s0
        if in_hour > 300.0 and hour_agent_s > 0:
            rate = live_h / hour_agent_s
        future = rate * agents * (cfg.hour_s - in_hour)
        expected = live_h + future
        # AMD false positives: the dialer counts them at their expected number as they come,
        # so the hour's budget must also hold those still to come this hour, and its margin
        # below the limit must cover at least the noise of the hour's count (sd ~ sqrt of the
        # expected number), which no feedback can see: on a small team that noise is larger
        # than the fixed margin (4 agents: 0.6 expected a hour, 1.5 % of 60 answers is 0.9).
        # Without AMD both terms are 0 and the guard is as before.
        fp_share = unseen / live if live > 0 else 0.0
        fp_future = fp_share * future
        fp_hour = max(0.0, unseen - self._hour_unseen0 + fp_future)
        # Run 5: the reserve is a share of the answers still to come this hour (was: of the
        # whole hour's). What has happened is counted; only what is still to come can push the
        # hour over, so near its end the guard no longer throttles an hour running at target.
        reserve = max(hour_mrg * future, z_fp * math.sqrt(fp_hour))
        theta *= self._guard(hour_lim * expected - reserve - ab_h - fp_future)

        # Rolling-hour guard, for regulators whose hours are not the shift's hours.
        if self._rolling:
            _, live0, ab0 = self._rolling[0]
            window_live = max(live - live0, rate * agents * cfg.hour_s)
            # Run 5: a window always has a future, so the reserve covers the answers of the
            # next ``hour_lookahead_s`` (the controller reacts well within it): a share of them,
            # and at least ``unseen_sd_factor`` sd of their abandons at the hour limit. It was
            # 1.5 % of the whole window, which on a 20-agent team (~500 answers an hour) left
            # less headroom than the guard's own budget at a 3 % rate, so the guard throttled
            # an hour running on target (S0).
            ahead = rate * agents * cfg.hour_lookahead_s
            reserve = max(
                hour_mrg * ahead,
                z_fp * math.sqrt(hour_lim * ahead),
                z_fp * math.sqrt(fp_share * window_live),
            )
            theta *= self._guard(hour_lim * window_live - reserve - (ab - ab0))
        theta = max(cfg.theta_min, min(cfg.theta_max, theta))
        self.last_theta = theta
        return theta

    def margin_pct(self, live: float, unseen: float = 0.0) -> float:
        """Safety margin below the target, in percentage points: ``margin_se_factor`` standard
        errors of an abandon rate at the target measured over ``live`` answers, plus the
        ``guard_budget`` abandons the cumulative guard lets through, clamped to
        [``min_margin_pct``, ``safety_margin_pct``]. The campaign's own estimate is noisiest
        early on, so the margin starts wide and closes as answers accumulate."""
        cfg = self.config
        n = max(live, 1)
        p = cfg.target_abandon_pct / 100.0
        se_pct = 100.0 * math.sqrt(p * (1.0 - p) / n)
        # The cumulative guard lets the count run up to ~guard_budget abandons past the line
        # before it bites; reserve that too, or a short shift ends over target.
        jitter_pct = 100.0 * cfg.guard_budget / n
        margin = cfg.margin_se_factor * se_pct + jitter_pct
        margin = min(cfg.safety_margin_pct, max(cfg.min_margin_pct, margin))
        # The AMD's false positives are counted at their expected number (Poisson-like noise
        # of sd sqrt(expected)), which the feedback never sees: keep that noise under the line.
        return margin + 100.0 * cfg.unseen_sd_factor * math.sqrt(max(unseen, 0.0)) / n

    def _guard(self, budget: float) -> float:
        if budget >= self.config.guard_budget:
            return 1.0
        return float(max(0.0, budget / self.config.guard_budget) ** 2)

    # -- lookup tables ----------------------------------------------------------------------------
    # Probabilities depend on an agent's (or call's) elapsed time only through its grid bin, so
    # they are tabulated per bin whenever a model changes and gathered per decision.
    def _supply_tables(self, horizon: int, pat: int) -> tuple[FloatArray, FloatArray]:
        # Two tables, two keys: a talking agent's chance also depends on the wrap-up quantiles
        # (talk then wrap), a wrapping agent's only on the wrap-up survival.
        wrap_key = (self.wrap.version, horizon, pat)
        talk_key = (self.talk.version, *wrap_key)
        if talk_key == self._supply_key:
            return self._talk_table, self._wrap_table
        offs = np.arange(horizon) + pat
        wrap_q = self.wrap.quantiles
        talk_id = (self.talk.version, *wrap_q.tolist(), horizon, pat)
        if talk_id != self._talk_id:
            # Talking agents: rows per elapsed second (0.5 s is finer than talk times need).
            surv = self.talk.survival
            rows = np.arange(_TALK_ROWS) * 2
            base = surv[rows][:, None]
            talk = np.zeros((_TALK_ROWS, horizon))
            for w in wrap_q:
                k = np.maximum(offs - round(w / STEP), 0)
                talk += 1.0 - surv[rows[:, None] + k[None, :]] / base
            talk /= wrap_q.size
            # Rows hold means then variances, so one row gather and one sum give both.
            self._talk_table = np.ascontiguousarray(np.concatenate((talk, talk * (1 - talk)), 1))
            self._talk_id = talk_id
        if wrap_key != self._wrap_key:
            surv = self.wrap.survival
            rows = np.arange(_WRAP_ROWS)
            wrap = 1.0 - surv[rows[:, None] + offs[None, :]] / surv[rows][:, None]
            self._wrap_table = np.ascontiguousarray(np.concatenate((wrap, wrap * (1 - wrap)), 1))
            self._wrap_key = wrap_key
        self._supply_key = talk_key
        return self._talk_table, self._wrap_table

    def _demand_table(self, horizon: int, p: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """For a fresh dial: the cumulative chance ``q0`` it is handed over by each grid step,
        its variance and the hand-over density ``f0``. Every hand-over counts as one that can
        be abandoned: whether it is a person is not known to a live dialer, and dropped machines
        count in its abandon estimate. Also tabulates, per ringing-time bin ``a``, the cdf
        increments ``D[a, k] = F(a + k) - F(a)`` that :meth:`_ringing_demand` combines with the
        current hand-over share (so a moving share never forces a rebuild)."""
        dm = self.dials
        key = (dm.version, horizon)
        if key != self._demand_key:
            cdf, rel = dm.demand_cdf, dm.release_cdf
            bins = cdf.size - 1
            a = np.arange(bins + 1)
            ahead = np.minimum(a[:, None] + np.arange(1, horizon + 1)[None, :], bins)
            d = cdf[ahead] - cdf[:, None]
            self._ring_d = np.ascontiguousarray(np.concatenate((d, d * d), axis=1))
            self._ring_a = 1.0 - cdf
            self._ring_b = 1.0 - rel
            # Past every outcome time nothing rings (den = 0): those bins get ratio 0.
            self._ring_ab = self._ring_a - self._ring_b
            self._ring_ok = (self._ring_a + self._ring_b > 1e-9).astype(np.float64)
            self._demand_key = key
            self._table_p = -1.0
            # The shape of a fresh dial's hand-over time does not depend on the share p.
            self._cdf_h = cdf[1 : horizon + 1]
            f0 = cdf[1 : horizon + 1] - cdf[:horizon]
            weight = float(f0.sum())
            self._f0 = f0 / weight if weight > 0 else np.zeros(horizon)
            self._median = self._median_bin(self._cdf_h)
        if abs(p - self._table_p) > 0.005 * p:
            self._table_p = p
            q0 = p * self._cdf_h
            self._fresh = (q0, q0 * (1.0 - q0), self._f0)
        return self._fresh

    def _ringing_demand(
        self, counts: FloatArray, horizon: int, p: float
    ) -> tuple[FloatArray, FloatArray]:
        """Mean and variance of the hand-overs by each grid step among calls still ringing,
        ``counts[a]`` of them in ringing-time bin ``a``. A call that has rung for ``a`` is
        handed over within ``k`` steps with ``q = p D[a, k] / (p (1 - F(a)) + (1 - p)(1 - G(a)))``
        (Bayes on "still ringing"); the variance sum is ``sum q (1 - q) = sum q - sum q^2``."""
        key = (self.dials.version, p)
        if key != self._ratio_key:
            den = self._ring_b + p * self._ring_ab
            ratio = p / np.maximum(den, 1e-9) * self._ring_ok
            self._ratio = np.stack((ratio, ratio * ratio))
            self._ratio_key = key
        both = (self._ratio * counts) @ self._ring_d
        mean = both[0, :horizon]
        return mean, mean - both[1, horizon:]

    def _p_risk(self) -> float:
        """The answer share the risk forecast uses: its estimate plus ``share_sd_factor``
        standard errors (the upper bound of a credible interval), so the abandon risk stays
        bounded while the share rests on few dials."""
        dm = self.dials
        return min(1.0, dm.p_demand + self.config.share_sd_factor * dm.p_sd)

    # -- the decision -----------------------------------------------------------------------------
    def decide(self, view: PacingView, now: float) -> int:
        theta = self._theta(view, now)
        self.dials.advance(now, min(view.ringing_since, default=math.inf))
        # Durations: agents still talking (wrapping) are right-censored samples.
        self.talk.refresh(now, view.talking_since)
        self.wrap.refresh(now, view.wrap_since)
        agents = self._agents = view.agents
        cap = min(view.free_lines, math.ceil(self.config.max_lines_per_agent * agents))
        if agents == 0 or cap <= 0:
            return 0
        dm = self.dials
        h = dm.horizon
        talk_t, wrap_t = self._supply_tables(h, max(0, round(dm.patience / STEP)))
        p_risk = self._p_risk()  # ``p`` of the docstrings below, the same for both
        q0, q0_var, f0 = self._demand_table(h, p_risk)

        # acc[:h] = E[supply - demand] and acc[h:] = Var[supply - demand] per grid step.
        # The variance has a floor of 0.25: even a "certain" forecast is not certain.
        acc = np.full(2 * h, 0.25)
        acc[:h] = len(view.idle_since) - len(view.waiting_since)
        if view.wrap_since:
            acc += _add(_gather(wrap_t, view.wrap_since, now, 1.0 / STEP), 0)
        if view.talking_since:
            acc += _add(_gather(talk_t, view.talking_since, now, 1.0), 0)
        if view.ringing_since:
            bins = self._ring_a.size
            a = _rows(view.ringing_since, now, 1.0 / STEP, bins)
            counts = np.bincount(a, minlength=bins).astype(np.float64)
            got_mean, got_var = self._ringing_demand(counts, h, p_risk)
            acc[:h] -= got_mean  # demand lowers the margin, but adds to its variance
            acc[h:] += got_var
        base_mean, base_var = acc[:h], acc[h:]
        # sd at the median hand-over time of a fresh dial: the scheduling hints' yardstick.
        self._forecast_sd = math.sqrt(float(base_var[self._median]))
        # The progressive floor: a call for every idle agent not already covered by a call in
        # progress can never be abandoned (first come, first served, each finds an idle agent),
        # so it costs no abandon budget. The model only ever adds calls on top of it; where the
        # normal approximation is poor (a few agents, a few calls) or theta is throttled, the
        # campaign still dials 1:1 rather than leaving agents idle.
        floor = len(view.idle_since) - len(view.ringing_since) - len(view.waiting_since)
        # r(n) grows with n: the calls under the floor are dialled anyway, so the answer lies
        # in [max(0, floor), cap]. It moves little between decisions, so the search looks at a
        # few counts around the last answer first, then gallops up (chunks four times larger)
        # or scans down to the floor. The answer is the same as a scan from the floor.
        lo = max(0, floor)

        gap = 0.5 - base_mean

        def over(first: int, last: int) -> list[bool]:
            """r(n) > theta for n in [first, last), as a list: the search's tests on it
            (any, first True) are cheaper in Python than as numpy calls at 8 entries."""
            others = _COUNTS[first:last] if last <= _COUNTS.size else _counts(first, last)
            # (gap + others q0) / sqrt(base_var + others q0_var), in place (same arithmetic).
            z = others * q0
            z += gap
            den = others * q0_var
            den += base_var
            z /= np.sqrt(den, out=den)
            hits: list[bool] = ((_phi(z) @ f0) > theta).tolist()
            return hits

        n = cap
        if lo < cap:
            # Eight counts per first look: one matrix of 8 rows costs about as much as one of
            # 4 (numpy's per-call overhead dominates at these sizes) and saves a second call.
            start = min(max(lo, self.last_model - 3), cap - 1)
            end = min(cap, start + 8)
            hit = over(start, end)
            if hit[0] and start > lo:
                down = over(lo, start)
                n = lo + down.index(True) if True in down else start
            elif True in hit:
                n = start + hit.index(True)
            else:
                size = 4
                while end < cap:
                    size *= 4
                    nxt = min(cap, end + size)
                    hit = over(end, nxt)
                    if True in hit:
                        n = end + hit.index(True)
                        break
                    end = nxt
        else:
            n = lo
        self.last_floor, self.last_model = floor, n
        return clamp_dials(max(n, floor), view)

    @staticmethod
    def _median_bin(q0: FloatArray) -> int:
        top = float(q0[-1])
        if top <= 0:
            return int(q0.size - 1)
        return min(int(q0.size - 1), int(np.searchsorted(q0, 0.5 * top)))


def _elapsed(since: tuple[float, ...], now: float) -> FloatArray:
    """``now - since`` per timestamp. ``fromiter`` with a count converts a tuple of floats in
    half the time ``np.array`` takes (no type discovery); the values are the same."""
    return now - np.fromiter(since, np.float64, len(since))


def _rows(since: tuple[float, ...], now: float, per_s: float, rows: int) -> npt.NDArray[np.intp]:
    """Table row per timestamp: elapsed time in rows, clamped to [0, rows - 1]. Truncating
    first and clamping the integers gives the rows clamping the floats first gave (the bounds
    are whole numbers), in two in-place calls (``np.clip`` costs more than both)."""
    pos = (_elapsed(since, now) * per_s).astype(np.intp)
    np.maximum(pos, 0, out=pos)
    np.minimum(pos, rows - 1, out=pos)
    return pos


_add = np.add.reduce
"""``np.add.reduce(rows, 0)``: what ``rows.sum(axis=0)`` runs, without its Python wrapper."""

_COUNTS = np.arange(4096, dtype=np.float64)[:, None]
"""Column of call counts 0..4095 for the threshold search (sliced, not rebuilt, per decision)."""


def _counts(first: int, last: int) -> FloatArray:
    return np.arange(first, last, dtype=np.float64)[:, None]


def _gather(table: FloatArray, since: tuple[float, ...], now: float, per_s: float) -> FloatArray:
    """The table's row per timestamp (elapsed time in rows), clamped to the table: ``take``
    with ``mode="clip"`` clamps in the gather itself (a cast truncates toward zero, so a
    timestamp a little in the future lands on row 0 too)."""
    pos = _elapsed(since, now)
    if per_s != 1.0:  # x * 1.0 == x: one call saved for the talk table (rows of 1 s)
        pos *= per_s
    return np.take(table, pos.astype(np.intp), axis=0, mode="clip")


def _phi(z: FloatArray) -> FloatArray:
    """Standard normal CDF by table lookup (0.005 steps; plenty for a dial-or-not threshold).
    ``z`` is finite (the variance has a 0.25 floor); ``take`` clamps past +-8."""
    z += 8.0  # in place: ``z`` is a temporary of the caller's
    z *= 200.0
    return _PHI_P.take(z.astype(np.intp), mode="clip")
