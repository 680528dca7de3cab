"""Online estimators the predictive policy learns from: durations and dial outcomes.

Everything lives on one time grid of ``STEP`` seconds so the policy can answer "what is the chance
this agent is free within t seconds" with array indexing instead of per-agent arithmetic.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

from engine.dialer.pacing.view import FloatArray

STEP = 0.5
"""Grid resolution in seconds. Half a second is well under the 2 s abandon window."""


def phi_table() -> tuple[FloatArray, FloatArray]:
    """Standard normal CDF sampled on [-8, 8] (numpy has no erf; interpolation is enough)."""
    z = np.linspace(-8.0, 8.0, 3201)
    return z, np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z], dtype=np.float64)


class DurationModel:
    """Distribution of a duration (talk or wrap-up), learned from finished and running segments.

    ``survival[k]`` is P(X > k * STEP). It is a Kaplan-Meier estimate: segments still running
    (agents talking now) are right-censored at their elapsed time. Counting finished segments
    only is badly biased at a campaign's start: the first talks to end are the short ones (a
    200-agent team's first 30 talks averaged 21 s against a 150 s mean, and the policy dialled a
    thousand calls into agents it thought were about to be free).

    The sample is every segment begun after the latest start the sliding window has forgotten
    (``window`` finished segments are kept): all of those that ended are still in the window, so
    finished plus running ones are the whole population begun since then, which is what
    Kaplan-Meier needs to be unbiased. Past the largest few events the tail is an exponential
    whose rate is the events past that point over the exposure past it (censored time included),
    so the survival never reaches 0 and an agent talking longer than anything seen so far is
    still expected to finish.

    :meth:`add` records a finished segment; :meth:`refresh` rebuilds the estimate (it needs the
    running segments' start instants, which only the caller's view has) when enough new ones
    have finished: every quarter of those seen so far early on, every ``refresh_every`` later.
    """

    def __init__(
        self,
        prior: list[float],
        *,
        window: int = 400,
        min_real: int = 30,
        horizon_s: float = 4 * 3600.0,
        refresh_every: int = 100,
    ) -> None:
        if not prior:
            raise ValueError("a duration model needs at least one prior sample")
        self._prior = [max(0.0, float(x)) for x in prior]
        self._samples: deque[tuple[float, float]] = deque(maxlen=window)
        self._forgotten = -math.inf
        self._min_real = min_real
        self._size = int(horizon_s / STEP) + 1
        self._refresh_every = refresh_every
        self._since_refresh = 0
        self._finished = 0
        self._real = False
        self._grid = np.arange(self._size, dtype=np.float64) * STEP
        self.survival: FloatArray = np.ones(self._size, dtype=np.float64)
        self.quantiles: FloatArray = np.zeros(1, dtype=np.float64)
        self.version = 0
        self._mean = 0.0
        self._rebuild(np.asarray(self._prior, dtype=np.float64), np.zeros(0))

    @property
    def size(self) -> int:
        return self._size

    def add(self, value: float, ended_at: float | None = None) -> None:
        """A segment of ``value`` seconds finished at ``ended_at`` (unknown: treated as begun
        after anything forgotten, i.e. always in the sample)."""
        if not math.isfinite(value) or value < 0:
            return
        if len(self._samples) == self._samples.maxlen:
            self._forgotten = max(self._forgotten, self._samples[0][0])
        begun = ended_at - value if ended_at is not None and math.isfinite(ended_at) else math.inf
        self._samples.append((begun, value))
        self._since_refresh += 1
        self._finished += 1

    @property
    def due(self) -> bool:
        if self._finished < self._min_real:
            return False
        if not self._real:
            return True
        return self._since_refresh >= min(
            self._refresh_every, max(self._min_real // 3, self._finished // 4, 1)
        )

    def refresh(self, now: float, running_since: tuple[float, ...] = ()) -> None:
        """Rebuild from the finished segments and the running ones (begun at ``running_since``,
        censored at ``now``) when :attr:`due`."""
        if not self.due:
            return
        cut = self._forgotten
        done = [d for s, d in self._samples if s > cut]
        if len(done) < self._min_real:
            return
        running = [now - s for s in running_since if s > cut]
        self._since_refresh = 0
        self._real = True
        self._rebuild(
            np.asarray(done, dtype=np.float64), np.maximum(np.asarray(running, np.float64), 0.0)
        )

    def _rebuild(self, done: FloatArray, running: FloatArray) -> None:
        times = np.concatenate((done, running))
        event = np.concatenate((np.ones(done.size), np.zeros(running.size)))
        # Sort by time, events before censorings at equal times (the usual convention).
        order = np.lexsort((1.0 - event, times))
        ts, ev = times[order], event[order]
        at_risk = ts.size - np.arange(ts.size, dtype=np.float64)
        after = np.cumprod(1.0 - ev / at_risk)  # P(X > ts[i])
        idx = np.searchsorted(ts, self._grid, side="right") - 1
        surv = np.where(idx >= 0, after[np.maximum(idx, 0)], 1.0)
        events = np.sort(done)
        n = events.size
        m = max(1, min(10, n // 10))
        x_m = float(events[n - m - 1]) if n > m else 0.0
        past = ts > x_m
        exposure = float(np.sum(ts[past] - x_m))
        hits = float(np.sum(ev[past]))
        tail_mean = max(exposure / max(hits, 1.0), STEP)
        k = int(np.searchsorted(ts, x_m, side="right")) - 1
        s_m = float(after[k]) if k >= 0 else 1.0
        tail = self._grid >= x_m
        surv[tail] = s_m * np.exp(-(self._grid[tail] - x_m) / tail_mean)
        surv = np.maximum(surv, 1e-12)
        # Quantiles of the estimate (grid resolution: the tables round to it anyway).
        qs = [
            self._grid[min(self._size - 1, int(np.searchsorted(-surv, -(1.0 - q), "left")))]
            for q in (0.125, 0.375, 0.625, 0.875)
        ]
        quantiles = np.unique(np.asarray(qs, dtype=np.float64))
        # A new version makes the policy rebuild its lookup tables (~1 ms): only when the
        # distribution did change (a constant wrap-up time never does).
        if (
            self.version == 0
            or not np.array_equal(surv, self.survival)
            or not np.array_equal(quantiles, self.quantiles)
        ):
            self.version += 1
            self.survival, self.quantiles = surv, quantiles
            self._mean = float(STEP * np.sum(surv[:-1]))

    def mean(self) -> float:
        """Mean of the current estimate: the area under the survival, summed on the grid
        (left sums: exact for durations on the grid, half a step high otherwise)."""
        return self._mean


class EwRate:
    """Exponentially weighted Bernoulli rate with a pseudo-count prior."""

    def __init__(self, prior: float, weight: float, window: float) -> None:
        self.hits = prior * weight
        self.total = weight
        self._decay = 1.0 - 1.0 / window

    def add(self, hit: bool) -> None:
        self.hits = self.hits * self._decay + (1.0 if hit else 0.0)
        self.total = self.total * self._decay + 1.0

    def add_many(self, count: int, hits: int) -> None:
        """``count`` outcomes with no order among them (one dial cohort), ``hits`` of them hits:
        the same total weight as ``count`` calls of :meth:`add`, spread evenly. Adding them one
        by one, hits first, let a big cohort's trailing misses wipe a short window's memory of
        its hits (a 363-dial opening burst read as a 0.2 % answer share)."""
        if count <= 0:
            return
        keep = self._decay**count
        weight = (1.0 - keep) / (1.0 - self._decay) if self._decay < 1.0 else float(count)
        self.hits = self.hits * keep + weight * hits / count
        self.total = self.total * keep + weight

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total > 0 else 0.0

    def reset_to(self, other: EwRate) -> None:
        scale = min(1.0, other.total / max(self.total, 1e-9))
        self.hits = other.value * self.total * scale
        self.total = self.total * scale


class _Cohort:
    """The dials placed in one second: how many, and the delays (dial to resolution) of those
    handed over and of those released, kept until none of them is still ringing."""

    __slots__ = ("demand", "release", "total")

    def __init__(self) -> None:
        self.total = 0
        self.demand: list[float] = []
        self.release: list[float] = []


class DialModel:
    """What one dial turns into, learned from resolved dials.

    * ``p_demand``: share of dials handed to the agent pool (a human, or an undetected machine).
      Outcomes arrive out of dial order (a busy resolves in 2 s, a no-answer in 25 s), so counting
      them as they resolve is badly biased whenever dials go out in bursts. Dials are therefore
      grouped by the second they were placed, and a group only counts once it is old enough for
      every call in it to have resolved. A slow estimate over complete groups is used for
      stability; a fast one runs beside it and replaces it when the two disagree by more than
      three standard errors, so a change in list quality shows within a few dozen dials.
    * ``demand_cdf[k]``: P(demand time < k * STEP | demand) measured from the dial.
    * ``release_cdf[k]``: the same for dials released without needing an agent.
    * ``patience``: how long a handed-over call may wait for an agent before it is abandoned.
    """

    BINS = 160  # 80 s: past any sane ring timeout
    MIN_REAL = 30

    def __init__(self, *, window: int = 400, fast_window: int = 40) -> None:
        self.slow = EwRate(prior=0.5, weight=10.0, window=window)
        self.fast = EwRate(prior=0.5, weight=10.0, window=fast_window)
        self.share_n = self.slow.total
        self._fast_window = fast_window
        self._decay = 1.0 - 1.0 / window
        # Flat priors over the whole grid (0..80 s): no campaign's ring or timeout family. They
        # stand in only until MIN_REAL outcomes of the kind have been seen, then drop out (a
        # forgotten-but-present flat prior would keep a tail to 80 s, and the horizon with it,
        # for hours on a small team).
        self._prior_hist = np.full(self.BINS, 1.0 / self.BINS)
        self._demand_hist = np.zeros(self.BINS)
        self._release_hist = np.zeros(self.BINS)
        self._demand_seen = 0
        self._release_seen = 0
        self._cohorts: dict[int, _Cohort] = {}
        self.complete_after = 30.0
        self._pending_demand: list[float] = []
        self._pending_release: list[float] = []
        self.patience = 2.0
        self._patience_w = 0.0
        self.version = 0
        self._rebuilt_at = -math.inf
        self.horizon = 8
        self.demand_cdf: FloatArray = np.zeros(self.BINS + 1)
        self.release_cdf: FloatArray = np.zeros(self.BINS + 1)
        self._rebuild()

    @property
    def p_demand(self) -> float:
        return self.slow.value

    @property
    def p_sd(self) -> float:
        """Standard error of :attr:`p_demand`: ``sqrt(p (1 - p) / n)`` with ``n`` the dials
        behind the estimate (the prior's weight plus every dial folded since the start, or
        since a change of list quality made the fast estimate replace the slow one). Wide at a
        cold start and after a jump, negligible once thousands of dials back the share."""
        p = self.slow.value
        return math.sqrt(max(p * (1.0 - p), 1e-4) / self.share_n)

    def add(
        self,
        dialed_at: float,
        delay: float,
        needs_agent: bool,
        patience: float | None,
    ) -> None:
        # Called once per resolved dial (hundreds of thousands per big shift): kept lean, the
        # grid bins are computed in bulk at the next rebuild.
        sec = math.floor(dialed_at)
        cohort = self._cohorts.get(sec)
        if cohort is None:
            cohort = self._cohorts[sec] = _Cohort()
        cohort.total += 1
        if needs_agent:
            cohort.demand.append(delay)
            if patience is not None and math.isfinite(patience):
                if self._patience_w < 50.0:
                    self._patience_w += 1.0
                self.patience += (max(0.0, patience) - self.patience) / self._patience_w
        else:
            cohort.release.append(delay)

    def advance(self, now: float, oldest_in_progress: float | None = None) -> None:
        """Fold every dial cohort that is fully resolved into the rate estimates.

        With ``oldest_in_progress`` (the dial instant of the oldest call still ringing, or
        ``inf`` when none is), a cohort is complete exactly when no call of it is still in
        progress: the dialer knows which of its calls are ringing. Without it, a cohort counts
        once it is older than the learned 99.9 % point of the outcome times. That guess is
        biased early in a campaign: the first outcomes seen are the fastest ones (fast failures,
        quick answers), so the learned times are too short, cohorts were folded before their
        no-answers came back, and on a big team's opening burst the share fell to ~0 and the
        policy dialled a thousand calls into 200 agents.
        """
        if not self._cohorts:
            return
        if oldest_in_progress is None:
            horizon = now - self.complete_after
        else:
            # Backstop: a call the dialer still lists as ringing 10 s past the whole 80 s grid
            # is a lost event (a live switch can drop one), not a reason to stop learning.
            horizon = max(min(oldest_in_progress, now - 1.0), now - self.BINS * STEP - 10.0)
        if next(iter(self._cohorts)) + 1 > horizon:
            return
        done = [sec for sec in self._cohorts if sec + 1 <= horizon]
        for sec in done:
            cohort = self._cohorts.pop(sec)
            self.slow.add_many(cohort.total, len(cohort.demand))
            self.fast.add_many(cohort.total, len(cohort.demand))
            self.share_n += cohort.total
            # Outcome times join with their whole cohort too: taken as they resolve, the first
            # ones seen are the fastest (a short ring read as the whole distribution made the
            # policy treat calls still ringing as past any hand-over).
            self._pending_demand += cohort.demand
            self._pending_release += cohort.release
            p = self.slow.value
            se = math.sqrt(max(p * (1.0 - p), 1e-4) / self._fast_window)
            if abs(self.fast.value - p) > 3.0 * se:
                self.slow.reset_to(self.fast)
                self.share_n = self.fast.total
        pending = len(self._pending_demand) + len(self._pending_release)
        # Rebuilding invalidates the policy's lookup tables: at most every 15 s of resolutions.
        if pending >= 20 and (now - self._rebuilt_at >= 15.0 or pending >= 2000):
            self._rebuilt_at = now
            self._rebuild()

    def _bins(self, delays: list[float]) -> npt.NDArray[np.intp]:
        """Grid bin of each delay (dial to resolution), clamped to [0, BINS - 1]."""
        pos = np.asarray(delays, dtype=np.float64) / STEP
        return np.minimum(np.maximum(pos, 0.0), self.BINS - 1.0).astype(np.intp)

    def _rebuild(self) -> None:
        self.version += 1
        seen = len(self._pending_demand) + len(self._pending_release)
        if seen:
            # Every observation ages both histograms, whichever one it lands in.
            factor = self._decay**seen
            self._demand_hist *= factor
            self._release_hist *= factor
            if self._pending_demand:
                np.add.at(self._demand_hist, self._bins(self._pending_demand), 1.0)
            if self._pending_release:
                np.add.at(self._release_hist, self._bins(self._pending_release), 1.0)
            self._demand_seen += len(self._pending_demand)
            self._release_seen += len(self._pending_release)
            self._pending_demand.clear()
            self._pending_release.clear()
        demand = self._demand_hist if self._demand_seen >= self.MIN_REAL else self._prior_hist
        release = self._release_hist if self._release_seen >= self.MIN_REAL else self._prior_hist
        # cdf[k] = P(T < k * STEP); length BINS + 1 so cdf[0] == 0.
        self.demand_cdf = np.concatenate(([0.0], np.cumsum(demand)))
        self.demand_cdf /= self.demand_cdf[-1]
        self.release_cdf = np.concatenate(([0.0], np.cumsum(release)))
        self.release_cdf /= self.release_cdf[-1]
        # A cohort is complete once both outcome kinds have had 99.9 % of their time, plus 1 s.
        last = max(
            int(np.searchsorted(self.demand_cdf, 0.999)),
            int(np.searchsorted(self.release_cdf, 0.999)),
        )
        self.complete_after = last * STEP + 1.0
        # Decision horizon (bins): until a fresh dial has had 99.9 % of its chance to be handed
        # over. It grows at once but shrinks only by more than a quarter, so the policy's
        # tables are not rebuilt on every wobble (the flat prior starts it at the full grid).
        reach = min(self.BINS - 1, int(np.searchsorted(self.demand_cdf, 0.999)) + 1)
        if reach > self.horizon or reach < 0.75 * self.horizon:
            self.horizon = max(8, reach)
