"""The composition root: the one place that builds and wires every resource.

Each resource is an async context manager entered on an ``AsyncExitStack`` in
dependency order and torn down in reverse: storage, then drivers and their
event consumers, then the FastAGI and HTTP servers. Long-lived loops run under
one ``asyncio.TaskGroup`` so a crash in one is not silently lost.

``Engine.start`` is the order of the steps; each step lives in ``engine/wiring/``
(one module per concern) and returns what it built.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.acd.history import AcdRepository
from engine.acd.service import AcdService
from engine.api.events_ws import EVENT_SOCKETS
from engine.api.forward import Forwarder
from engine.calls.service import CallService
from engine.campaigns.service import CampaignService
from engine.cluster.ownership import Ownership
from engine.config import EngineConfig, load_config
from engine.core.errors import ConfigError
from engine.core.lifecycle import AsyncResource
from engine.core.systemd import Notifier
from engine.ivr.runtime import IvrRuntime
from engine.pbx.base import LinkState, PbxDriver
from engine.recordings.service import RecordingService
from engine.reports.refresher import Refresher
from engine.store.outbox import Lane
from engine.store.pg.audit import AuditLog
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.telemetry.live import LoopLag, StorageGauges
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService
from engine.webhooks.service import Dispatcher
from engine.webhooks.store import WebhookStore
from engine.wiring.acd import build_acd
from engine.wiring.api import Domains, serve_api
from engine.wiring.background import (
    start_background,
    start_domain_loops,
    start_live_feed,
    start_report_intervals,
)
from engine.wiring.calls import build_calls, recover
from engine.wiring.campaigns import build_campaigns
from engine.wiring.cluster import build_ownership, take_leases
from engine.wiring.ivr import start_ivr, unknown_flow_references
from engine.wiring.metrics import start_live_metrics
from engine.wiring.outbox import Outbox, build_outbox
from engine.wiring.recordings import build_recordings
from engine.wiring.storage import open_storage
from engine.wiring.switches import build_drivers, connect_switches
from engine.wiring.trunks import build_trunks

log = get_logger("engine.app")


class Engine(AsyncResource):
    """The running daemon. ``async with Engine(cfg) as engine: ...`` starts it."""

    def __init__(self, config: EngineConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = Metrics()
        self._stack = AsyncExitStack()
        self._tasks: asyncio.TaskGroup | None = None
        self.drivers: dict[str, PbxDriver] = {}
        self.calls: CallService | None = None
        self.trunks: TrunkService | None = None
        self.pg: PgStore | None = None
        self.redis: RedisStore | None = None
        self.outbox: Outbox | None = None
        self.api_port: int = 0
        self.app: web.Application | None = None
        self.ivr: IvrRuntime | None = None
        self.audiosocket_port = 0
        self._closing = False
        self.agi_port: int = 0
        self.cdr_lane: Lane | None = None
        self.event_lane: Lane | None = None
        self.acd: AcdService | None = None
        self.acd_lane: Lane | None = None
        self.campaigns: CampaignService | None = None
        self.campaign_lane: Lane | None = None
        self.recording_lane: Lane | None = None
        self.recordings: RecordingService | None = None
        self.audit_lane: Lane | None = None
        self.audit_log: AuditLog | None = None
        self.webhook_lane: Lane | None = None
        self.webhook_store: WebhookStore | None = None
        self.webhooks: Dispatcher | None = None
        self.metrics_loops: list[StorageGauges | LoopLag] = []
        self.reports: Refresher | None = None
        self.forwarder: Forwarder | None = None
        self.ownership: Ownership | None = None

    async def stop(self) -> None:
        await self._stack.aclose()

    def _is_closing(self) -> bool:
        return self._closing

    def _mark_closing(self) -> None:
        self._closing = True

    async def start(self) -> None:
        cfg, stack, metrics = self.config, self._stack, self.metrics
        data_dir = cfg.resolve(cfg.engine.data_dir)
        timeout = cfg.calls.storage_timeout_s
        storage = await open_storage(cfg, data_dir, stack)
        self.pg, self.redis = pg, redis = storage.pg, storage.redis
        ownership = build_ownership(cfg, redis.client, timeout) if cfg.cluster.enabled else None
        self.ownership = ownership
        outbox = build_outbox(cfg, pg, redis, data_dir, metrics, stack)
        self.outbox = outbox
        self.cdr_lane, self.event_lane, self.acd_lane = outbox.cdr, outbox.events, outbox.acd
        self.campaign_lane, self.recording_lane = outbox.campaigns, outbox.recordings
        self.audit_lane, self.audit_log = outbox.audit, outbox.audit_log
        self.webhook_lane, self.webhook_store = outbox.webhooks, outbox.webhook_store
        self.webhooks = outbox.dispatcher

        self.drivers = drivers = build_drivers(cfg, metrics)
        trunks = await build_trunks(cfg, redis, outbox.rounds, outbox.events, drivers, metrics)
        self.trunks = trunks
        built_calls = build_calls(cfg, redis, outbox, drivers, trunks, ownership, metrics)
        self.calls = calls = built_calls.service
        self.recordings = recordings = build_recordings(cfg, pg, data_dir, calls, outbox)
        built_acd = build_acd(cfg, redis, outbox, calls, drivers, recordings, ownership)
        self.acd = acd = built_acd.service
        campaigns = await build_campaigns(
            cfg,
            pg,
            redis,
            outbox,
            calls,
            acd,
            trunks,
            drivers,
            ownership,
            # The IVR starts after the campaigns: until then no flow list is known.
            ivr_flows=lambda: self.ivr.flows if self.ivr is not None else None,
        )
        self.campaigns = campaigns
        # Leases first: a lone engine takes them all at once (one turn); with several, the
        # switches this one owns decide which registry calls it adopts below.
        if ownership is not None:
            await take_leases(
                cfg, ownership, pg, calls, acd, outbox.cdrs, built_acd.taking_over, self._is_closing
            )
        await recover(calls, acd, AcdRepository(pg.pool, timeout_s=timeout).kpi_buckets)

        background = await start_background(
            stack,
            outbox=outbox,
            calls=built_calls,
            acd=built_acd,
            campaigns=campaigns,
            trunks=trunks,
            ownership=ownership,
            storage_timeout_s=timeout,
            mark_closing=self._mark_closing,
        )
        self._tasks = background.group
        self.reports = start_report_intervals(cfg, pg, background, stack)
        start_domain_loops(cfg, background, calls, recordings, trunks, drivers, self._is_closing)
        self.metrics_loops = start_live_metrics(
            metrics, acd, campaigns, trunks, outbox.webhook_store, timeout, background, stack
        )
        await connect_switches(drivers, calls, acd, recordings, background, stack)
        start_live_feed(cfg, background, outbox, acd, campaigns, trunks, self._is_closing)
        # Running campaigns resume once the switches are being connected (their
        # runners reconcile open attempts with the switches first).
        background.consume(campaigns.run(), "campaigns")

        ivr = await start_ivr(
            cfg,
            outbox,
            acd,
            calls,
            recordings,
            campaigns,
            drivers,
            background,
            stack,
            self._is_closing,
        )
        self.ivr, self.agi_port = ivr.runtime, ivr.agi_port
        self.audiosocket_port = ivr.audiosocket_port

        def built(forwarder: Forwarder, app: web.Application) -> None:
            self.forwarder, self.app = forwarder, app

        api = await serve_api(
            cfg,
            pg,
            redis,
            outbox,
            Domains(calls, trunks, acd, campaigns, recordings),
            ownership=ownership,
            metrics=metrics,
            health=self.health,
            reload=self.reload,
            data_dir=data_dir,
            background=background,
            stack=stack,
            closing=self._is_closing,
            built=built,
            ivr_flows=lambda: ivr.runtime.flows,
        )
        self.api_port = api.port
        log.info(
            "engine started",
            instance=cfg.engine.instance,
            api=f"{'https' if cfg.api.tls else 'http'}://{cfg.api.host}:{self.api_port}/v1",
            switches=sorted(self.drivers),
        )

    async def reload(self) -> dict[str, Any]:
        """SIGHUP and POST /v1/admin/reload: re-read IVR flows (a bad file keeps
        its previous version live) and re-validate engine.toml.

        Live calls are untouched. Changes to engine.toml are checked and
        reported, not applied: switches, storage and the API bind need a
        restart, and we would rather say so than half-apply them.
        """
        report: dict[str, Any] = {}
        if self.ivr is not None:
            errors = await self.ivr.reload()
            report["ivr"] = {
                "flows": sorted(self.ivr.flows),
                "errors": [str(e) for e in errors],
            }
            if warnings := unknown_flow_references(self.config, self.ivr.flows):
                report["ivr"]["warnings"] = warnings
        if self.config_path is not None:
            try:
                load_config(self.config_path)
            except ConfigError as err:
                # Each error names its file (or the environment variable), as check-config's do.
                report["config"] = {"valid": False, "errors": err.lines()}
            else:
                report["config"] = {
                    "valid": True,
                    "applied": False,
                    "note": "engine.toml is valid; restart the engine to apply changes to it",
                }
        log.info("reload", **report)
        return report

    async def drain(self, grace_s: float, stop: asyncio.Event | None = None) -> int:
        """Refuse new calls and wait (up to ``grace_s``, or until ``stop`` is
        set) for live calls to end. Returns how many were still live."""
        calls = self.calls
        if calls is None:
            return 0
        calls.drain()
        log.info("draining", live=len(calls.tracked()), grace_s=grace_s)
        if self.app is not None:
            # Event clients are told at once (1001, with a reason) so they can
            # move to another instance instead of watching this one go quiet.
            await self.app[EVENT_SOCKETS].close_all()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while calls.tracked() and loop.time() < deadline:
            if stop is not None and stop.is_set():
                break
            await asyncio.sleep(0.2)
        left = len(calls.tracked())
        if left:
            log.warning("grace period over; stopping with live calls", live=left)
        return left

    async def wait_until_up(self, timeout_s: float = 30.0) -> None:
        """Wait until every switch link is UP (tests and `make run` use it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while any(d.state is not LinkState.UP for d in self.drivers.values()):
            if loop.time() > deadline:
                states = {n: d.state.value for n, d in self.drivers.items()}
                raise TimeoutError(f"switch links not up after {timeout_s}s: {states}")
            await asyncio.sleep(0.05)

    async def health(self) -> dict[str, Any]:
        pg_ok = bool(self.pg and await _safe(self.pg.ping()))
        redis_ok = bool(self.redis and await _safe(self.redis.ping()))
        # The outbox's disk: False while it refuses journal writes (full, read-only).
        outbox_ok = not (self.outbox and self.outbox.unwritable())
        switches = {n: {"kind": d.kind, "state": d.state.value} for n, d in self.drivers.items()}
        ok = pg_ok and redis_ok and outbox_ok
        ok = ok and all(d.state is LinkState.UP for d in self.drivers.values())
        out: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "switches": switches,
            "storage": {"postgres": pg_ok, "redis": redis_ok, "outbox": outbox_ok},
        }
        if self.ownership is not None:
            # Several engines: the leases this one holds now and the engines it sees live.
            out["cluster"] = {
                "instance": self.ownership.me,
                "leases": self.ownership.held(),
                "live": sorted(self.ownership.live()),
            }
        return out


async def _safe(awaitable: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(awaitable, 2.0))
    except Exception:
        return False


def tune_gc() -> None:
    """Keep the cyclic garbage collector's pauses off the call path.

    Measured (docs/bench-cpu.md): full collections of the daemon's heap took
    30-85 ms each at 200 originates/s, and each one was the API's p99. Almost
    everything on that heap is built at startup (modules, config, pools) and
    lives until exit, so it is frozen out of collections; and the young
    generation is collected ten times less often, since the engine makes few
    cycles (reference counting frees its per-call objects).
    """
    gc.collect()
    gc.freeze()
    threshold0, threshold1, threshold2 = gc.get_threshold()
    gc.set_threshold(max(threshold0, 7000), threshold1, threshold2)


async def run_forever(config: EngineConfig, config_path: Path | None = None) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads IVR flows and re-checks the config.

    SIGTERM drains: new originates get 503 ``draining`` at once, live calls go
    on for up to ``engine.shutdown_grace_s``, then the engine stops. SIGINT
    (or a second SIGTERM) stops at once.
    """
    stop = asyncio.Event()
    drain = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_term() -> None:
        if drain.is_set():
            stop.set()
        drain.set()

    for sig, handler in ((signal.SIGINT, stop.set), (signal.SIGTERM, on_term)):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, handler)
    reloads: set[asyncio.Task[dict[str, Any]]] = set()
    notifier = Notifier()
    async with Engine(config, config_path) as engine:
        tune_gc()
        # systemd (Type=notify): ready once storage is up, migrations applied and the API
        # listens. Not waiting for a switch: links reconnect on their own with backoff, and
        # /v1/health/ready tells load balancers when one is up (docs/production.md).
        notifier.notify(READY="1", STATUS=f"serving the API on port {engine.api_port}")
        watchdog = _start_watchdog(notifier)

        def on_hup() -> None:
            task = asyncio.create_task(engine.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        stopped = asyncio.create_task(stop.wait())
        draining = asyncio.create_task(drain.wait())
        await asyncio.wait({stopped, draining}, return_when=asyncio.FIRST_COMPLETED)
        if drain.is_set() and not stop.is_set():
            notifier.notify(STOPPING="1", STATUS="draining: no new calls, live calls go on")
            await engine.drain(config.engine.shutdown_grace_s, stop)
        notifier.notify(STOPPING="1", STATUS="stopping")
        stopped.cancel()
        draining.cancel()
        log.info("engine stopping")
        if watchdog is not None:
            watchdog.cancel()


def _start_watchdog(notifier: Notifier) -> asyncio.Task[None] | None:
    """``WATCHDOG=1`` every half ``WatchdogSec`` while the event loop turns: a loop that
    hangs stops the pings, and systemd restarts the engine (SIGABRT, then SIGKILL)."""
    interval = notifier.watchdog_interval_s
    if interval is None:
        return None

    async def ping() -> None:
        while True:
            notifier.notify(WATCHDOG="1")
            await asyncio.sleep(interval)

    return asyncio.create_task(ping(), name="systemd-watchdog")
