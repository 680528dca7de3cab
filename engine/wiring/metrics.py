"""Live metrics (docs/metrics.md): per-queue/campaign/trunk families read at scrape time;
storage-backed ones and the loop lag by background loops."""

from __future__ import annotations

from contextlib import AsyncExitStack

from engine.acd.service import AcdService
from engine.campaigns.metrics import CampaignMetrics
from engine.campaigns.service import CampaignService
from engine.telemetry.health_metrics import engine_health
from engine.telemetry.live import LoopLag, Source, StorageGauges
from engine.telemetry.metrics import LABEL_CAP, Metrics
from engine.trunks.service import TrunkService
from engine.webhooks.store import WebhookStore
from engine.wiring.background import Background


def start_live_metrics(
    metrics: Metrics,
    acd: AcdService,
    campaigns: CampaignService,
    trunks: TrunkService,
    store: WebhookStore,
    timeout: float,
    background: Background,
    stack: AsyncExitStack,
) -> list[StorageGauges | LoopLag]:
    """Register the live metric sources and run their loops (closed at stop); returns the
    loops."""
    live, cap = metrics.live, LABEL_CAP
    live.add(acd.metrics_source(cap))
    live.add(trunks.metrics_source(cap))
    cm = CampaignMetrics(campaigns, cap, storage_timeout_s=2 * timeout)
    campaign_storage = cm.storage
    live.add(Source("campaigns", cm.families, cm.prepare, cm.budget))

    async def read_webhooks() -> dict[str, dict[tuple[str, ...], float]]:
        pending, oldest = await store.backlog()
        return {"pending": {(): float(pending)}, "oldest": {(): oldest}}

    webhook_storage = StorageGauges("webhooks", read_webhooks, timeout_s=2 * timeout)
    lag = LoopLag()
    loops: list[StorageGauges | LoopLag] = [campaign_storage, webhook_storage, lag]
    live.add(Source("engine", lambda: engine_health(webhook_storage, campaign_storage, lag)))
    for loop in loops:
        stack.callback(loop.close)
    for loop in loops:
        background.consume(loop.run(), f"metrics-{type(loop).__name__}")
    return loops
