"""The long-lived loops, under one ``asyncio.TaskGroup`` (a crash in one is not lost),
and the shutdown step that ends them.

Two kinds: consumers (switch events, timers, pollers), cancelled at stop; and
flushers (the outbox lanes and the mirrors), which keep running at stop until
what is pending is delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from engine.acd.service import AcdService
from engine.api.live_feed import LiveFeed, campaign_stats, queue_stats, trunk_stats
from engine.calls.service import CallService
from engine.campaigns.service import CampaignService
from engine.cluster.ownership import Ownership
from engine.config import EngineConfig
from engine.pbx.base import PbxDriver
from engine.recordings.service import RecordingService
from engine.reports.refresher import Refresher
from engine.store.pg.pool import PgStore
from engine.trunks.service import TrunkService
from engine.wiring.acd import Acd
from engine.wiring.calls import Calls
from engine.wiring.outbox import Outbox


@dataclass
class Background:
    group: asyncio.TaskGroup
    consumers: list[asyncio.Task[None]] = field(default_factory=list)
    # The outbox lanes and the registry mirror are not cancelled with the
    # consumers: they must keep running to deliver what is pending.
    flushers: list[asyncio.Task[None]] = field(default_factory=list)

    def consume(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A loop cancelled at stop."""
        task = self.group.create_task(coro, name=name)
        self.consumers.append(task)
        return task

    def flush(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A loop that delivers what is pending at stop, then ends."""
        task = self.group.create_task(coro, name=name)
        self.flushers.append(task)
        return task


async def start_background(
    stack: AsyncExitStack,
    *,
    outbox: Outbox,
    calls: Calls,
    acd: Acd,
    campaigns: CampaignService,
    trunks: TrunkService,
    ownership: Ownership | None,
    storage_timeout_s: float,
    mark_closing: Callable[[], None],
) -> Background:
    """The task group, the shutdown step, and the flushers and first consumers."""
    timeout = storage_timeout_s
    background = Background(await stack.enter_async_context(asyncio.TaskGroup()))
    consumers, flushers = background.consumers, background.flushers
    lanes = outbox.lanes

    async def cancel_consumers() -> None:
        # Runs after every driver stopped (LIFO): nothing is left to consume.
        mark_closing()
        outbox.dispatcher.close()
        calls.service.close()
        campaigns.close()
        acd.service.close()
        trunks.close()
        for task in consumers:
            task.cancel()
        # Deliver what is still pending while storage answers; what is
        # not delivered stays in the journal for the next start.
        await calls.mirror.wait_flushed(2 * timeout)
        calls.mirror.close()
        await acd.mirror.wait_flushed(2 * timeout)
        acd.mirror.close()
        for lane in lanes:
            await lane.wait_drained(2 * timeout)
            lane.close()
        # close() ends them (a delivery in flight is bounded by its timeout).
        _done, stuck = await asyncio.wait(flushers, timeout=2 * timeout)
        for task in stuck:
            task.cancel()

    # Leases are handed back last: after the drivers stopped and the lanes drained (LIFO).
    if ownership is not None:
        stack.push_async_callback(ownership.close)
    stack.push_async_callback(cancel_consumers)
    for lane in lanes:
        background.flush(lane.run(), f"outbox-{lane.name}")
    background.flush(calls.mirror.run(calls.service.tracked), "registry-mirror")
    background.flush(acd.mirror.run(), "acd-mirror")
    background.consume(acd.service.run(), "acd-timers")
    if ownership is not None:
        background.consume(ownership.run(), "leases")
    background.consume(outbox.dispatcher.run(), "webhooks")
    return background


def start_report_intervals(
    cfg: EngineConfig, pg: PgStore, background: Background, stack: AsyncExitStack
) -> Refresher:
    """KPI intervals of the buckets the lanes' latest rows changed (docs/reports.md)."""
    refresher = Refresher(
        pg.pool,
        cfg.reports.settings({q.name: q.service_level_s for q in cfg.queues}),
        interval_s=cfg.reports.refresh_s,
        timeout_s=max(cfg.calls.storage_timeout_s, 10.0),
    )
    if cfg.reports.enabled:
        stack.callback(refresher.stop)
        background.consume(refresher.run(), "report-intervals")
    return refresher


def start_domain_loops(
    cfg: EngineConfig,
    background: Background,
    calls: CallService,
    recordings: RecordingService,
    trunks: TrunkService,
    drivers: dict[str, PbxDriver],
    closing: Callable[[], bool],
) -> None:
    background.consume(calls.sweep(), "sweeper")
    # The registry's calls whose read failed (at start, a takeover): adopted once Redis answers.
    background.consume(calls.adopt_unread(), "registry-adoption")
    background.consume(recordings.sweep(closing), "recording-retention")
    # Recordings of calls this engine tracked before a restart: taken back, or finished
    # when their call ended meanwhile (docs/recordings.md "Durability").
    background.consume(recordings.recover(closing), "recording-recovery")
    # Timed trunk transitions (breaker half-open), TrunkStateChanged events
    # and the reachability poll.
    background.consume(trunks.run(drivers, cfg.trunk_health.poll_interval_s), "trunks")


def start_live_feed(
    cfg: EngineConfig,
    background: Background,
    outbox: Outbox,
    acd: AcdService,
    campaigns: CampaignService,
    trunks: TrunkService,
    closing: Callable[[], bool],
) -> None:
    if cfg.api.live_feed_interval_s > 0:
        event_lane = outbox.events
        # Summary events for live views (the wallboard): queue KPIs, campaign pacing,
        # trunk load, each published when it changes (engine/api/live_feed.py).
        feed = LiveFeed(
            event_lane.put,
            [queue_stats(acd), campaign_stats(campaigns), trunk_stats(trunks)],
            interval_s=cfg.api.live_feed_interval_s,
        )
        # It learns which queues changed from the events themselves.
        event_lane.tap(feed.observe)
        background.consume(feed.run(closing), "live-feed")
