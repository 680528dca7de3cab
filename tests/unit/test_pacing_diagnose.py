"""The run-8 diagnosis helper (``python -m bench.pacing.diagnose``) on a short cut of S0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.pacing.diagnose import diagnose

S0 = Path(__file__).resolve().parents[2] / "bench" / "pacing_scenarios" / "S0.json"


@pytest.fixture
def short_s0(tmp_path: Path) -> str:
    data = json.loads(S0.read_text(encoding="utf-8"))
    data["shift_hours"] = 0.5
    path = tmp_path / "S0-short.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("variant", ["base", "oracle-supply", "clairvoyant"])
def test_idle_split_adds_up_to_the_non_busy_time(short_s0: str, variant: str) -> None:
    row = diagnose(short_s0, 1, variant)
    assert 50.0 < row["busy_pct"] < 100.0
    assert sum(row["idle_pct"].values()) == pytest.approx(100.0 - row["busy_pct"], abs=1e-6)


def test_clairvoyant_never_abandons_and_beats_the_policy(short_s0: str) -> None:
    base = diagnose(short_s0, 2, "base")
    best = diagnose(short_s0, 2, "clairvoyant")
    assert best["abandon_pct"] == 0.0
    assert best["busy_pct"] > base["busy_pct"]


def test_oracles_refuse_scenarios_whose_free_instants_they_cannot_know(tmp_path: Path) -> None:
    data = json.loads(S0.read_text(encoding="utf-8"))
    data["shift_hours"] = 0.1
    data["wrap_s"] = {"uniform": [5.0, 15.0]}
    path = tmp_path / "S0-wrap.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="constant wrap-up"):
        diagnose(str(path), 1, "clairvoyant")
    assert diagnose(str(path), 1, "base")["busy_pct"] > 0.0
