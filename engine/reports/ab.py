"""A/B results: per variant, the sample, conversion with its 95 % interval, and AHT; each
variant against the control by a two-proportion test and Welch's t-test. Pure (scipy).

The statistics are scipy's, not hand-written: the Wilson score interval
(``binomtest(...).proportion_ci``), the two-proportion z-test (``chi2_contingency`` without
continuity correction: its chi-square is z squared, so its p-value is the two-sided z-test's),
and Welch's t-test from each variant's mean, standard deviation and size
(``ttest_ind_from_stats(equal_var=False)``). docs/reports.md "A/B results".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05
# The normal approximation behind the two-proportion test wants at least this many
# conversions and as many non-conversions in each variant (the usual np >= 10 rule).
MIN_EACH_OUTCOME = 10
# Welch's t-test on handle times: at least this many handled calls per variant.
MIN_HANDLED = 30


@dataclass(frozen=True, slots=True)
class VariantSample:
    """What the test needs of one variant: sufficient statistics, not the calls."""

    variant: str
    n: int  # calls in the variant
    conversions: int
    handled: int  # calls with a handle time (answered, wrap-up over)
    aht_mean_s: float | None
    aht_sd_s: float | None  # sample standard deviation (n - 1)


def wilson(conversions: int, n: int) -> tuple[float, float] | None:
    if n <= 0:
        return None
    from scipy import stats  # on use: importing scipy.stats costs ~1 s of every engine start

    ci = stats.binomtest(conversions, n).proportion_ci(confidence_level=1 - ALPHA, method="wilson")
    return float(ci.low), float(ci.high)


def two_proportion_p(c1: int, n1: int, c2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test (None when undefined: an empty
    variant, or every call in both variants converted or none did)."""
    table = [[c1, n1 - c1], [c2, n2 - c2]]
    if n1 <= 0 or n2 <= 0 or c1 + c2 == 0 or c1 + c2 == n1 + n2:
        return None
    from scipy import stats  # on use: importing scipy.stats costs ~1 s of every engine start

    res = stats.chi2_contingency(table, correction=False)
    return float(res.pvalue)


def welch_p(a: VariantSample, b: VariantSample) -> tuple[float, float] | None:
    """(t, two-sided p) of Welch's t-test on AHT, or None with fewer than 2 handled calls on a
    side or no spread at all."""
    if a.handled < 2 or b.handled < 2 or a.aht_mean_s is None or b.aht_mean_s is None:
        return None
    sa, sb = a.aht_sd_s or 0.0, b.aht_sd_s or 0.0
    if sa == 0.0 and sb == 0.0:
        return None
    from scipy import stats  # on use: importing scipy.stats costs ~1 s of every engine start

    res = stats.ttest_ind_from_stats(
        a.aht_mean_s, sa, a.handled, b.aht_mean_s, sb, b.handled, equal_var=False
    )
    return float(res.statistic), float(res.pvalue)


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None or math.isnan(v) else round(v, nd)


def _too_small(s: VariantSample) -> list[str]:
    why = []
    if s.conversions < MIN_EACH_OUTCOME or s.n - s.conversions < MIN_EACH_OUTCOME:
        why.append(
            f"{s.variant}: {s.conversions} conversions and {s.n - s.conversions} others; "
            f"the conversion test needs at least {MIN_EACH_OUTCOME} of each"
        )
    if s.handled < MIN_HANDLED:
        why.append(
            f"{s.variant}: {s.handled} handled calls; the AHT test needs at least {MIN_HANDLED}"
        )
    return why


def analyse(samples: list[VariantSample], control: str | None = None) -> dict[str, Any]:
    """The report: every variant, each compared with the control (the first variant, or
    ``control``), and a verdict in words that says plainly when the samples are too small."""
    if not samples:
        return {"variants": [], "control": None, "verdict": "no calls in this experiment yet"}
    by_name = {s.variant: s for s in samples}
    base = by_name.get(control or "", samples[0])
    variants = []
    verdicts: list[str] = []
    small: list[str] = []
    for s in samples:
        ci = wilson(s.conversions, s.n)
        row: dict[str, Any] = {
            "variant": s.variant,
            "n": s.n,
            "conversions": s.conversions,
            "conversion_pct": _r(100.0 * s.conversions / s.n, 3) if s.n else None,
            "conversion_ci95_pct": [_r(100 * ci[0], 3), _r(100 * ci[1], 3)] if ci else None,
            "handled": s.handled,
            "aht_s": _r(s.aht_mean_s, 3),
            "aht_sd_s": _r(s.aht_sd_s, 3),
        }
        small.extend(_too_small(s))
        if s is not base:
            p = two_proportion_p(s.conversions, s.n, base.conversions, base.n)
            w = welch_p(s, base)
            row["vs_control"] = {
                "conversion_diff_pct_points": _r(
                    100.0 * (s.conversions / s.n - base.conversions / base.n), 3
                )
                if s.n and base.n
                else None,
                "conversion_p_value": _r(p, 6),
                "aht_diff_s": _r((s.aht_mean_s or 0.0) - (base.aht_mean_s or 0.0), 3)
                if s.aht_mean_s is not None and base.aht_mean_s is not None
                else None,
                "aht_t": _r(w[0], 4) if w else None,
                "aht_p_value": _r(w[1], 6) if w else None,
            }
            verdicts.append(_verdict(s, base, p, w))
        variants.append(row)
    if small:
        verdict = "too small to conclude: " + "; ".join(small)
    else:
        verdict = "; ".join(verdicts) if verdicts else "only one variant: nothing to compare"
    return {
        "control": base.variant,
        "alpha": ALPHA,
        "variants": variants,
        "conclusive": not small and len(samples) > 1,
        "verdict": verdict,
    }


def _verdict(
    s: VariantSample,
    base: VariantSample,
    p: float | None,
    w: tuple[float, float] | None,
) -> str:
    parts = []
    if p is None:
        parts.append("conversion: no test possible")
    elif p < ALPHA:
        better = "higher" if s.conversions / s.n > base.conversions / base.n else "lower"
        parts.append(f"conversion {better} than {base.variant} (p = {p:.4g})")
    else:
        parts.append(f"no significant conversion difference from {base.variant} (p = {p:.4g})")
    if w is None:
        parts.append("AHT: no test possible")
    elif w[1] < ALPHA:
        longer = "longer" if w[0] > 0 else "shorter"
        parts.append(f"AHT {longer} (p = {w[1]:.4g})")
    else:
        parts.append(f"no significant AHT difference (p = {w[1]:.4g})")
    return f"{s.variant}: " + ", ".join(parts)
