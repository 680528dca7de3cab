"""What the simulators read from their scenario files: distributions of
durations, and the error that names a file's problems.

Shared by the outbound simulator (engine/dialer/sim) and the inbound routing
simulator (engine/acd/sim), which read the same kinds of distributions.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


class ScenarioError(ValueError):
    """A scenario file is unreadable or does not follow the documented format."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class Dist:
    """A non-negative duration: ``const``, ``uniform`` on ``[a, b]``, ``exponential`` (mean
    ``a``), ``lognormal`` and ``gamma`` (mean ``a``, standard deviation ``b`` of the variable
    itself) or ``pareto`` (Lomax, mean ``a``, tail index ``b``).

    Every kind consumes exactly one value of the stream per draw, so the i-th draw is the same
    whatever else the simulation does with the stream.
    """

    kind: str
    a: float
    b: float = 0.0

    @property
    def mean(self) -> float:
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return self.a

    def with_mean(self, mean: float) -> Dist:
        """The same shape at a new mean: lognormal and gamma keep their coefficient of
        variation, uniform keeps its relative width, pareto keeps its tail index, a constant
        becomes the new value."""
        if self.kind == "const":
            return Dist("const", mean)
        scale = mean / self.mean if self.mean > 0 else 0.0
        if self.kind == "pareto":
            return Dist("pareto", self.a * scale, self.b)
        return Dist(self.kind, self.a * scale, self.b * scale)

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """A zero-argument draw function bound to ``rng`` (one draw per call, always)."""
        if self.kind == "const":
            value = self.a
            return lambda: (rng.random(), value)[1]  # burn one draw: streams stay aligned
        if self.kind == "uniform":
            # random.uniform's own formula, a call frame fewer per draw (hot in the simulators).
            a, width, rnd = self.a, self.b - self.a, rng.random
            return lambda: a + width * rnd()
        if self.kind == "exponential":
            rate = 1.0 / self.a
            return lambda: rng.expovariate(rate)
        if self.kind == "gamma":
            m, s = self.a, self.b
            if s == 0:
                return lambda: (rng.random(), m)[1]
            shape, scale = (m / s) ** 2, s * s / m
            return lambda: rng.gammavariate(shape, scale)
        if self.kind == "pareto":
            # Lomax (Pareto II from 0): P(X > x) = (1 + x/scale)^-alpha, mean scale / (alpha - 1)
            alpha = self.b
            scale = self.a * (alpha - 1.0)
            return lambda: scale * (rng.paretovariate(alpha) - 1.0)
        # Mean/sd of the variable itself -> parameters of its logarithm.
        m, s = self.a, self.b
        sigma = math.sqrt(math.log(1.0 + (s * s) / (m * m)))
        mu = math.log(m) - sigma * sigma / 2.0
        # random.lognormvariate is exp(normalvariate(mu, sigma)): the same, a frame fewer.
        normal, exp = rng.normalvariate, math.exp
        return lambda: exp(normal(mu, sigma))
