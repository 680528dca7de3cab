"""Prometheus metrics, one registry per engine instance (tests get their own)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from engine.telemetry.cardinality import DEFAULT_CAP
from engine.telemetry.live import LiveCollector

#: At most this many queue, campaign or trunk names get their own label value each
#: (engine/telemetry/cardinality.py; docs/metrics.md "Cardinality").
LABEL_CAP = DEFAULT_CAP

# prometheus_client would add a ``<name>_created`` gauge (the start time) next to every
# counter and histogram series: as many series again, none documented, none any panel or
# alert reads (``resets()`` and ``rate()`` find restarts without it). Process-wide, as the
# library's switch is; docs/metrics.md lists what is exported.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.calls_originated = Counter(
            "engine_calls_originated", "Originate requests accepted", ["switch"], registry=r
        )
        self.calls_ended = Counter(
            "engine_calls_ended",
            "Calls ended by final state and cause",
            ["switch", "cause"],
            registry=r,
        )
        self.illegal_transitions = Counter(
            "engine_call_illegal_transitions",
            "Events that did not fit the call state machine (logged, never fatal)",
            ["state", "input"],
            registry=r,
        )
        self.calls_live = Gauge("engine_calls_live", "Calls not yet ended", ["switch"], registry=r)
        self.switch_up = Gauge(
            "engine_switch_link_up", "1 when the control link is UP", ["switch"], registry=r
        )
        # engine/api/forward.py: each forwardable request that was not served here.
        self.api_forwarded = Counter(
            "engine_api_forwarded",
            "API requests for objects another engine owns, by result",
            ["result"],
            registry=r,
        )
        self.events_published = Counter(
            "engine_events_published", "Events written to the event stream", registry=r
        )
        self.originate_latency = Histogram(
            "engine_originate_seconds",
            "API originate: request to switch acknowledgement",
            ["switch"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        # engine/pbx/event_queue.py: point each driver's ``fanout.on_shed`` here.
        self.pbx_events_shed = Counter(
            "engine_pbx_events_shed",
            "Non-essential switch events dropped because a subscriber's queue was full",
            ["switch", "type"],
            registry=r,
        )
        # The durable local outbox (engine/store/outbox): per lane ("cdrs", "events").
        self.outbox_depth = Gauge(
            "engine_outbox_depth", "Records accepted but not yet delivered", ["lane"], registry=r
        )
        self.outbox_oldest_age = Gauge(
            "engine_outbox_oldest_age_seconds",
            "Age of the oldest undelivered record (0 when empty)",
            ["lane"],
            registry=r,
        )
        self.outbox_unwritten = Gauge(
            "engine_outbox_unwritten",
            "Records kept in memory because the disk refused the journal write (full, read-only)",
            ["lane"],
            registry=r,
        )
        self.outbox_failures = Counter(
            "engine_outbox_delivery_failures", "Delivery tries that failed", ["lane"], registry=r
        )
        self.outbox_delivered = Counter(
            "engine_outbox_delivered", "Records delivered to their sink", ["lane"], registry=r
        )
        self.outbox_dead_letters = Counter(
            "engine_outbox_dead_letters",
            "Records a sink refused for a data reason, set aside in <lane>.dead.jsonl",
            ["lane"],
            registry=r,
        )
        self.calls_swept = Counter(
            "engine_calls_swept",
            "Calls ended by the sweeper for exceeding a maximum duration",
            ["limit"],
            registry=r,
        )
        self.calls_adopted = Counter(
            "engine_calls_adopted", "Live calls taken over from the registry at start", registry=r
        )
        self.registry_write_failures = Counter(
            "engine_registry_write_failures",
            "Live-call registry writes that failed (retried in the background)",
            registry=r,
        )

        # Per trunk (docs/trunks.md). The state is one-hot over up/degraded/
        # down/probing so a dashboard can sum or alert on `state="down"`.
        self.trunk_state = Gauge(
            "engine_trunk_state",
            "1 for the trunk's current health state (up|degraded|down|probing), else 0",
            ["trunk", "state"],
            registry=r,
        )
        self.trunk_drained = Gauge(
            "engine_trunk_drained", "1 when an operator drained the trunk", ["trunk"], registry=r
        )
        self.trunk_channels_in_use = Gauge(
            "engine_trunk_channels_in_use", "Channels held on the trunk", ["trunk"], registry=r
        )
        self.trunk_attempts = Counter(
            "engine_trunk_attempts", "Call attempts placed on the trunk", ["trunk"], registry=r
        )
        self.trunk_failures = Counter(
            "engine_trunk_failures",
            "Attempts that ended with a failover cause (carrier-side failures)",
            ["trunk"],
            registry=r,
        )
        self.trunk_answered = Counter(
            "engine_trunk_answered", "Attempts answered on the trunk", ["trunk"], registry=r
        )
        # Bounded classes of engine/trunks/metrics.py FAILURE_CLASSES, never the raw cause.
        self.trunk_failures_by_class = Counter(
            "engine_trunk_failures_by_class",
            "Failover-cause attempts on the trunk by cause class "
            "(congestion|network|timeout|server_error|gateway_down|other)",
            ["trunk", "class"],
            registry=r,
        )
        self.trunk_breaker_opened = Counter(
            "engine_trunk_breaker_opened", "Times the trunk's breaker opened", ["trunk"], registry=r
        )
        self.trunk_failover_seconds = Histogram(
            "engine_trunk_failover_seconds",
            "Failover cause received to the next attempt's originate written",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )

        # Per-queue, per-campaign and per-trunk state read at scrape time (docs/metrics.md).
        self.live = LiveCollector()
        r.register(self.live)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def render_live(self) -> bytes:
        """``/v1/metrics``: let the live sources prepare (yielding to the loop), then render."""
        await self.live.prepare()
        return generate_latest(self.registry)
