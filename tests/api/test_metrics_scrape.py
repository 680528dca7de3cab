"""/v1/metrics of a running engine (real PostgreSQL and Redis, the fake AMI carrier) with a
queue, a campaign and trunks configured: the labelled per-queue, per-campaign and per-trunk
series exist, and every metric the Grafana dashboard queries is exported."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.telemetry.live import StorageGauges
from tests import grafana_check, metrics_docs
from tests.campaign_rig import campaign_body
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import Client, engine_config, running_engine

CONFIG = """
[[trunk_groups]]
name = "campaign-out"
members = ["self-trunk"]
[[agents]]
id = "m-alice"
endpoints = { asterisk-1 = "PJSIP/agent1" }
skills = { camp = 5 }
[[agents]]
id = "m-bob"
endpoints = { asterisk-1 = "PJSIP/agent2" }
skills = { other = 5 }
[[queues]]
name = "campq"
skills = { camp = 5 }
service_level_s = 15.0
"""


@pytest.fixture(scope="module")
async def metrics_api(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> AsyncIterator[tuple[Any, Client]]:
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"metrics:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-metrics",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=CONFIG,
        )
        async with running_engine(cfg) as (engine, client):
            yield engine, client


async def _scrape(engine: Any, client: Client) -> tuple[set[str], list[Any]]:
    # The storage-backed values are refreshed by a 15 s background loop; read them now.
    for loop in engine.metrics_loops:
        if isinstance(loop, StorageGauges):
            assert await loop.refresh_once(), f"storage read for metrics failed: {loop.name}"
    status, text, resp = await client.request("GET", "/metrics")
    assert status == 200, text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return grafana_check.exported(text)


def _value(samples: list[Any], name: str, **labels: str) -> float:
    hits = [
        v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples"
    return float(hits[0])


async def test_labelled_series_and_every_dashboard_metric_is_exported(
    metrics_api: tuple[Any, Client],
) -> None:
    engine, client = metrics_api
    campaign = f"m{uuid.uuid4().hex[:10]}"
    status, body, _ = await client.request("POST", "/campaigns", json=campaign_body(campaign, 5))
    assert status == 201, body
    status, body, _ = await client.request("POST", "/agents/m-alice/login")
    assert status == 200, body

    names, samples = await _scrape(engine, client)

    # Queues: live state and the fixed state enum; m-bob cannot serve campq.
    assert _value(samples, "engine_queue_waiting", queue="campq") == 0
    assert _value(samples, "engine_queue_service_level_threshold_seconds", queue="campq") == 15
    assert _value(samples, "engine_queue_agents", queue="campq", state="logged_out") == 0
    assert _value(samples, "engine_queue_agents", queue="campq", state="paused") == 1
    assert _value(samples, "engine_agents", state="logged_out") == 1
    assert _value(samples, "engine_queue_calls_total", queue="campq", outcome="answered") == 0
    # Campaigns: from storage (state, contacts left), by the id the API created.
    assert _value(samples, "engine_campaign_state", campaign=campaign, state="draft") == 1
    assert _value(samples, "engine_campaign_state", campaign=campaign, state="running") == 0
    assert _value(samples, "engine_campaign_contacts_left", campaign=campaign) == 0
    # Trunks: breaker phase and limits read from the fleet, failure classes at 0.
    assert _value(samples, "engine_trunk_breaker_state", trunk="self-trunk", state="closed") == 1
    assert _value(samples, "engine_trunk_max_channels", trunk="self-trunk") == 500
    assert _value(samples, "engine_trunk_cps_limit", trunk="self-trunk") == 1000
    assert (
        _value(
            samples,
            "engine_trunk_failures_by_class_total",
            trunk="self-trunk",
            **{"class": "congestion"},
        )
        == 0
    )
    # Engine health.
    assert _value(samples, "engine_webhook_backlog") >= 0
    assert _value(samples, "engine_metrics_storage_age_seconds", source="campaigns") >= 0
    assert _value(samples, "engine_metrics_label_cap", kind="queue") == 100
    assert "engine_event_loop_lag_seconds" in names
    assert not [s for s in samples if s[0] == "engine_metrics_source_errors_total" and s[2] > 0]

    dashboard = grafana_check.load()
    missing = {
        (title, name)
        for title, expr in grafana_check.expressions(dashboard)
        for name in grafana_check.metric_names(expr)
        if name not in names
    }
    assert not missing, f"the dashboard queries metrics the engine does not export: {missing}"
    for var, metric, label in grafana_check.variable_queries(dashboard):
        values = {lab.get(label) for n, lab, _v in samples if n == metric}
        assert values - {None}, f"${var}: no {metric} series with a {label} label"


def _label_names(registry: Any) -> dict[str, frozenset[str]]:
    """Each family's label names as declared, whether or not it has a sample yet (a queue's
    ASA before its first answered call, a campaign's live figures while it is not running):
    prometheus_client's wrappers keep them on the collector, the families built at scrape
    time on the family."""
    out: dict[str, frozenset[str]] = {}
    for collector in list(registry._collector_to_names):
        if (names := getattr(collector, "_labelnames", None)) is not None:
            out[collector._name] = frozenset(names)
    for fam in registry.collect():
        if (names := getattr(fam, "_labelnames", None)) is not None:
            out[fam.name] = frozenset(names)
    return out


async def test_the_metrics_doc_lists_exactly_what_is_exported(
    metrics_api: tuple[Any, Client],
) -> None:
    """docs/metrics.md's tables against /v1/metrics: the same names and types, and the same
    label names as the engine declares them."""
    engine, client = metrics_api
    status, text, _ = await client.request("GET", "/metrics")
    assert status == 200, text
    labels = _label_names(engine.metrics.registry)
    exported = {
        fam.name: metrics_docs.Documented(fam.type, labels.get(fam.name, frozenset({"?"})))
        for fam in text_string_to_metric_families(text)
        if fam.name.startswith("engine_")
    }
    table = metrics_docs.documented()
    assert not sorted(set(exported) - set(table)), "exported but not in docs/metrics.md"
    assert not sorted(set(table) - set(exported)), "in docs/metrics.md but not exported"
    wrong = {
        name: (f"doc {doc.type} {sorted(doc.labels)}", f"got {got.type} {sorted(got.labels)}")
        for name, doc in table.items()
        if (got := exported[name]) != doc
    }
    assert not wrong, f"docs/metrics.md type or labels differ from /v1/metrics: {wrong}"
