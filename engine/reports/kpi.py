"""KPIs of one report row, from the interval tables' sums. Pure.

Every ratio is the ACD's own (engine/acd/kpi.py: one definition of each KPI); what this module
adds is the reports' KPIs the live view has no use for. Definitions: docs/reports.md.
Rates are None when their denominator is zero (nothing counted yet), never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.acd.kpi import abandon_pct, mean_of, occupancy_pct, ratio_pct, service_level_pct

AGENT_STATES = ("available", "reserved", "on_call", "wrap_up", "paused")
BUSY_STATES = ("reserved", "on_call", "wrap_up")


def _r(v: float | None) -> float | None:
    return round(v, 3) if v is not None else None


def queue_kpis(s: Mapping[str, Any]) -> dict[str, Any]:
    answered, abandoned = int(s["answered"]), int(s["abandoned"])
    handled = int(s["handled"])
    return {
        "service_level_pct": _r(service_level_pct(int(s["answered_in_sl"]), answered, abandoned)),
        "abandon_pct": _r(abandon_pct(answered, abandoned)),
        "asa_s": _r(mean_of(float(s["wait_answered_s"]), answered)),
        "aht_s": _r(mean_of(float(s["talk_s"]) + float(s["wrap_up_s"]), handled)),
        "avg_talk_s": _r(mean_of(float(s["talk_s"]), handled)),
        "avg_wrap_up_s": _r(mean_of(float(s["wrap_up_s"]), handled)),
        "avg_abandon_wait_s": _r(mean_of(float(s["wait_abandoned_s"]), abandoned)),
    }


def agent_kpis(s: Mapping[str, Any]) -> dict[str, Any]:
    by_state = {st: float(s[f"{st}_s"]) for st in AGENT_STATES}
    logged_in = sum(by_state.values())
    busy = sum(by_state[st] for st in BUSY_STATES)
    out: dict[str, Any] = {
        "logged_in_s": round(logged_in, 3),
        "occupancy_pct": _r(occupancy_pct(busy, by_state["available"])),
    }
    for st in AGENT_STATES:
        out[f"{st}_pct"] = _r(ratio_pct(by_state[st], logged_in))
    out["avg_talk_s"] = _r(mean_of(float(s["talk_s"]), int(s["answered"])))
    return out


def campaign_kpis(s: Mapping[str, Any], dispositions: Mapping[str, int]) -> dict[str, Any]:
    connected = int(s["connected"])
    return {
        "answer_pct": _r(ratio_pct(int(s["answered"]), int(s["dials"]))),
        "abandon_pct": _r(ratio_pct(int(s["abandoned"]), int(s["human"]))),
        "connect_pct": _r(ratio_pct(connected, int(s["human"]))),
        "conversion_pct": {d: _r(ratio_pct(n, connected)) for d, n in sorted(dispositions.items())},
    }


def trunk_kpis(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "asr_pct": _r(ratio_pct(int(s["answered"]), int(s["seizures"]))),
        "pdd_s": _r(mean_of(float(s["pdd_s"]), int(s["pdd_calls"]))),
        "acd_s": _r(mean_of(float(s["billsec_s"]), int(s["answered"]))),
    }


def period_abandon(abandoned: int, human: int, limit: float) -> dict[str, Any]:
    """A campaign's abandon rate over its legal period (abandoned / live answers)."""
    pct = ratio_pct(abandoned, human)
    return {
        "abandoned": abandoned,
        "human": human,
        "abandon_pct": _r(pct),
        "limit_pct": round(100.0 * limit, 3),
        "over_limit": pct is not None and pct > 100.0 * limit,
    }
