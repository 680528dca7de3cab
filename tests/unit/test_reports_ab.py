"""A/B statistics against values computed independently, and the report parameters' errors."""

from __future__ import annotations

import csv
import io
import math
import statistics

import pytest

from engine.core.errors import InvalidRequest
from engine.reports import ab
from engine.reports.experiments import parse_experiment
from engine.reports.query import parse_params, to_csv

# R's `sleep` data set, the textbook example of Welch's test: t.test(extra ~ group, sleep)
# prints "t = -1.8608, df = 17.776, p-value = 0.07939".
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def sample(name: str, n: int, conv: int, values: list[float]) -> ab.VariantSample:
    return ab.VariantSample(
        name, n, conv, len(values), statistics.fmean(values), statistics.stdev(values)
    )


def test_welch_matches_r_on_the_sleep_data() -> None:
    a, b = sample("a", 10, 0, SLEEP_1), sample("b", 10, 0, SLEEP_2)
    result = ab.welch_p(a, b)
    assert result is not None
    t, p = result
    assert round(t, 4) == -1.8608
    assert round(p, 5) == 0.07939


def _pooled_z_p(c1: int, n1: int, c2: int, n2: int) -> float:
    p = (c1 + c2) / (n1 + n2)
    z = (c1 / n1 - c2 / n2) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))  # two-sided normal tail


@pytest.mark.parametrize(
    ("c1", "n1", "c2", "n2"), [(120, 1000, 150, 1000), (45, 300, 30, 310), (9, 20, 3, 25)]
)
def test_two_proportion_p_is_the_pooled_z_test(c1: int, n1: int, c2: int, n2: int) -> None:
    got = ab.two_proportion_p(c1, n1, c2, n2)
    assert got is not None
    assert got == pytest.approx(_pooled_z_p(c1, n1, c2, n2), rel=1e-9)


def test_wilson_interval_matches_the_formula() -> None:
    # Wilson score interval by hand, z = 1.959964 (95 %).
    c, n, z = 18, 60, 1.959963984540054
    p = c / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = ab.wilson(c, n) or (0.0, 0.0)
    assert low == pytest.approx(centre - half, rel=1e-9)
    assert high == pytest.approx(centre + half, rel=1e-9)


def test_small_samples_are_said_to_be_too_small() -> None:
    out = ab.analyse([sample("a", 12, 5, SLEEP_1), sample("b", 15, 9, SLEEP_2)])
    assert out["conclusive"] is False
    assert out["verdict"].startswith("too small to conclude: a: 5 conversions and 7 others")
    assert "needs at least 30" in out["verdict"]
    (b,) = [v for v in out["variants"] if v["variant"] == "b"]
    assert b["vs_control"]["conversion_p_value"] == round(_pooled_z_p(9, 15, 5, 12), 6)


def test_a_large_difference_is_reported_with_its_direction() -> None:
    long_ = [200.0 + (i % 7) for i in range(40)]
    short = [230.0 + (i % 5) for i in range(40)]
    out = ab.analyse(
        [sample("control", 1000, 120, long_), sample("new", 1000, 170, short)], "control"
    )
    assert out["conclusive"] is True
    assert out["verdict"].startswith("new: conversion higher than control (p = ")
    assert "AHT longer" in out["verdict"]
    assert (
        out["variants"][0]["conversion_ci95_pct"][0]
        < 12.0
        < out["variants"][0]["conversion_ci95_pct"][1]
    )


def test_one_variant_or_none() -> None:
    assert ab.analyse([])["verdict"] == "no calls in this experiment yet"
    many = [200.0 + i for i in range(40)]
    assert ab.analyse([sample("a", 100, 50, many)])["verdict"] == (
        "only one variant: nothing to compare"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"to": "2026-12-02T00:00:00Z"}, "from: required"),
        ({"from": "yesterday", "to": "2026-12-02T00:00:00Z"}, "from: expected an ISO 8601"),
        ({"from": "2026-12-01T00:00:00", "to": "2026-12-02T00:00:00Z"}, "with a time zone"),
        ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "to: expected a time"),
        (
            {"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z", "interval": "2h"},
            "interval: expected one of 15m, 30m, 1h, 1d, total",
        ),
        (
            {"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z", "format": "xml"},
            "format: expected json or csv",
        ),
    ],
)
def test_bad_parameters_are_named(query: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_params(query)
    assert message in str(err.value)
    assert err.value.status == 400


def test_csv_by_accept_header_or_format() -> None:
    q = {"from": "2026-12-01t00:00:00z", "to": "2026-12-02T00:00:00+01:00"}
    assert parse_params(q, "text/csv").csv is True
    assert parse_params(q, "application/json, text/csv").csv is False
    assert parse_params(q, "text/csv;q=1, */*").csv is True
    assert parse_params({**q, "format": "json"}, "text/csv").csv is False
    assert parse_params({**q, "format": "csv"}).csv is True


def test_csv_flattens_dispositions_and_quotes() -> None:
    doc = {
        "kind": "campaigns",
        "rows": [
            {
                "campaign_id": 'c,"1"',
                "start": "s",
                "end": "e",
                "dispositions": {"sale": 2},
                "conversion_pct": {"sale": 50.0},
                "abandon_pct": None,
            }
        ],
        "abandon_period": {'c,"1"': {"abandon_pct": 1.5, "limit_pct": 3.0}},
    }
    (row,) = list(csv.DictReader(io.StringIO(to_csv(doc))))
    assert row["campaign_id"] == 'c,"1"'
    assert (row["dispositions.sale"], row["conversion_pct.sale"]) == ("2", "50.0")
    assert (row["abandon_pct"], row["period_abandon_pct"], row["dials"]) == ("", "1.5", "")


def test_experiment_parameters() -> None:
    q = {"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"}
    exp = parse_experiment(
        "queues", "sales", {**q, "goal": "disposition", "dispositions": "sale,callback"}
    )
    assert exp.dispositions == ("sale", "callback")
    with pytest.raises(InvalidRequest, match="goal: expected answered or disposition"):
        parse_experiment("splits", "greeting", {**q, "goal": "sales"})
    with pytest.raises(InvalidRequest, match="dispositions: expected up to 20"):
        parse_experiment("splits", "greeting", {**q, "dispositions": "Sale;drop"})
