"""Per-trunk metrics: the cause classes of failures (bounded) and the state read from the
fleet at scrape time (docs/metrics.md).

The fleet already pushes what changes on every call (``engine_trunk_state``,
``engine_trunk_channels_in_use``, attempts/answers/failures; exporter.py ``export`` and
``count``). What is read here at scrape time is what only time or config changes: the
breaker phase (it half-opens by itself when its cooldown ends) and the configured limits
the in-use and CPS panels are drawn against. Trunk names come only from engine.toml;
the live families still go through a :class:`LabelBudget`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from engine.telemetry.cardinality import LabelBudget
from engine.trunks import breaker as brk
from engine.trunks.causes import cause_name
from engine.trunks.fleet import Fleet
from engine.trunks.model import CauseInfo, Phase

#: The bounded cause classes of ``engine_trunk_failures_by_class_total``.
FAILURE_CLASSES = ("congestion", "network", "timeout", "server_error", "gateway_down", "other")

_CONGESTION_Q850 = frozenset({34, 42, 44, 47})  # no circuit, congestion, channel/resource
_NETWORK_Q850 = frozenset({27, 38, 41})  # destination/network out of order, temporary failure
_TIMEOUT_Q850 = frozenset({102})  # recovery on timer expiry
_GATEWAY_NAMES = frozenset({"GATEWAY_DOWN", "INVALID_GATEWAY"})


def failure_class(cause: CauseInfo | None) -> str:
    """One of FAILURE_CLASSES for a failover outcome: the SIP code first (more precise),
    then the switch's cause name, then the Q.850 cause."""
    if cause is None:
        return "other"
    sip = cause.sip_code
    if sip == 408:
        return "timeout"
    if sip is not None and 500 <= sip < 600:
        return "server_error"
    if cause.cause_text and cause_name(cause.cause_text) in _GATEWAY_NAMES:
        return "gateway_down"
    q = cause.cause
    if q in _CONGESTION_Q850:
        return "congestion"
    if q in _TIMEOUT_Q850:
        return "timeout"
    if q in _NETWORK_Q850:
        return "network"
    return "other"


class TrunkMetrics:
    def __init__(self, fleet: Callable[[], Fleet], now: Callable[[], float], cap: int) -> None:
        self._fleet = fleet
        self._now = now
        self.budget = LabelBudget("trunk", cap, fleet().trunks)

    def families(self) -> Iterable[Metric]:
        fleet, now = self._fleet(), self._now()
        t = ["trunk"]
        phase = GaugeMetricFamily(
            "engine_trunk_breaker_state",
            "1 for the breaker's current phase (closed|open|half_open), else 0 "
            "(for 'other': how many folded trunks are in it)",
            labels=["trunk", "state"],
        )
        max_channels = GaugeMetricFamily(
            "engine_trunk_max_channels", "Configured channel limit of the trunk", labels=t
        )
        cps = GaugeMetricFamily(
            "engine_trunk_cps_limit", "Configured call attempts per second of the trunk", labels=t
        )
        phases: dict[str, dict[str, int]] = {}
        limits: dict[str, tuple[float, float]] = {}
        for name, spec in fleet.trunks.items():
            label = self.budget.label(name)
            b = brk.advance(fleet.states[name].breaker, spec.breaker, now)
            row = phases.setdefault(label, {p.value: 0 for p in Phase})
            row[b.phase.value] += 1
            ch, rate = limits.get(label, (0.0, 0.0))
            limits[label] = (ch + spec.max_channels, rate + spec.max_cps)
        for label in sorted(phases):
            for p, n in phases[label].items():
                phase.add_metric([label, p], n)
            ch, rate = limits[label]
            max_channels.add_metric([label], ch)
            cps.add_metric([label], rate)
        return [phase, max_channels, cps]
