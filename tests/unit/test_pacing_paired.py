"""The run-9 paired runner: seed parsing and the paired summary (no simulation)."""

from __future__ import annotations

from bench.pacing.paired import parse_seeds, summary


def test_parse_seeds_takes_ranges_and_lists() -> None:
    assert parse_seeds("101-104") == [101, 102, 103, 104]
    assert parse_seeds("1,5,9") == [1, 5, 9]


def _row(variant: str, seed: int, busy: float, ab: float) -> dict[str, object]:
    return {
        "scenario": "S",
        "variant": variant,
        "seed": seed,
        "busy": busy,
        "abandon": ab,
        "worst_hour": ab + 1.0,
        "hours": [ab],
        "cpu_s": 1.0,
    }


def test_summary_pairs_each_variant_with_the_first_on_the_same_seeds() -> None:
    rows = [
        _row("base", 1, 90.0, 2.0),
        _row("base", 2, 80.0, 2.5),
        _row("v", 1, 91.0, 2.1),
        _row("v", 2, 80.5, 2.9),
    ]
    base_line, v_line = summary(rows, ["base", "v"])
    assert "busy  85.00 d +0.000" in base_line
    # paired differences +1.0 and +0.5: mean +0.75, se 0.25
    assert "busy  85.75 d +0.750 +- 0.250" in v_line
    assert "ab 2.50 (seed 2.90, hour 3.90)" in v_line
