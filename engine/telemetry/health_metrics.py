"""Engine health families read at scrape time: webhook backlog (from the background
storage read), the storage reads' own freshness, and the event-loop lag.

The outbox depth per lane is pushed by the lanes themselves (``engine_outbox_depth``).
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.telemetry.live import LoopLag, StorageGauges


def engine_health(webhooks: StorageGauges, *others: StorageGauges | LoopLag) -> list[Metric]:
    pending = GaugeMetricFamily(
        "engine_webhook_backlog",
        "Webhook deliveries pending (not yet delivered or dead-lettered), from storage",
    )
    oldest = GaugeMetricFamily(
        "engine_webhook_oldest_pending_seconds",
        "Age of the oldest pending webhook delivery (0 when none), from storage",
    )
    values = webhooks.values
    if values:
        pending.add_metric([], values.get("pending", {}).get((), 0.0))
        oldest.add_metric([], values.get("oldest", {}).get((), 0.0))
    out: list[Metric] = [pending, oldest]
    storage = [webhooks] + [o for o in others if isinstance(o, StorageGauges)]
    age = GaugeMetricFamily(
        "engine_metrics_storage_age_seconds",
        "Seconds since the storage-backed metrics were last read successfully (-1: never)",
        labels=["source"],
    )
    fails = CounterMetricFamily(
        "engine_metrics_storage_failures",
        "Storage reads for metrics that failed or timed out, since start",
        labels=["source"],
    )
    for s in storage:
        age.add_metric([s.name], s.age())
        fails.add_metric([s.name], s.failures)
    out += [age, fails]
    for o in others:
        if isinstance(o, LoopLag):
            out += o.families()
    return out
