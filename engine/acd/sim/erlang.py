"""Erlang C: the M/M/N queue (Poisson arrivals, exponential handle times, N agents, no
abandonment, first come first served).

With offered load ``A = lambda * AHT`` Erlangs and ``N > A`` agents (Erlang 1917; e.g. Gans, Koole
and Mandelbaum, "Telephone call centers: tutorial, review, and research prospects", M&SOM 2003,
section 4.1)::

                      A^N / N! * N / (N - A)
    C(N, A) = -------------------------------------------      probability that a call waits
              sum_{k=0}^{N-1} A^k / k!  +  A^N / N! * N / (N - A)

    SL(T)  = P(wait <= T) = 1 - C(N, A) * exp(-(N - A) * T / AHT)
    ASA    = E[wait]      = C(N, A) * AHT / (N - A)

C is computed from the Erlang B recursion ``B(0) = 1, B(k) = A B(k-1) / (k + A B(k-1))`` and
``C = N B / (N - A (1 - B))``, which never forms ``A^N`` or ``N!`` and so stays exact in floating
point for any realistic N.
"""

from __future__ import annotations

import math


def _check(agents: int, load: float) -> None:
    if agents < 1:
        raise ValueError(f"agents: expected an integer >= 1, got {agents!r}")
    if not (math.isfinite(load) and 0.0 <= load < agents):
        raise ValueError(
            f"offered load: expected 0 <= A < agents ({agents}) Erlangs for a stable queue, "
            f"got {load!r}"
        )


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of M/M/N/N (Erlang B) by the stable recursion."""
    if agents < 0 or not (math.isfinite(load) and load >= 0.0):
        raise ValueError(f"erlang_b: expected agents >= 0 and load >= 0, got {agents}, {load}")
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """Probability that a call has to wait, C(N, A)."""
    _check(agents, load)
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1.0 - b))


def service_level(agents: int, load: float, aht_s: float, threshold_s: float) -> float:
    """P(wait <= threshold_s), as a fraction."""
    if aht_s <= 0 or threshold_s < 0:
        raise ValueError(f"expected aht_s > 0 and threshold_s >= 0, got {aht_s}, {threshold_s}")
    return 1.0 - erlang_c(agents, load) * math.exp(-(agents - load) * threshold_s / aht_s)


def asa(agents: int, load: float, aht_s: float) -> float:
    """Average speed of answer (mean wait over all calls, zero waits included), seconds."""
    if aht_s <= 0:
        raise ValueError(f"expected aht_s > 0, got {aht_s}")
    return erlang_c(agents, load) * aht_s / (agents - load)
