"""The composition root: the one place that builds and wires every resource.

Each resource is an async context manager entered on an ``AsyncExitStack`` in
dependency order and torn down in reverse: storage, then drivers and their
event consumers, then the FastAGI and HTTP servers. Long-lived loops run under
one ``asyncio.TaskGroup`` so a crash in one is not silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.api.app import build_app
from engine.calls.cdr import CdrWriter
from engine.calls.service import CallService
from engine.calls.store import EndedCalls
from engine.core.config import AsteriskSwitch, EngineConfig, FreeSwitchSwitch, load_config
from engine.core.errors import ConfigError
from engine.core.lifecycle import AsyncResource
from engine.ivr.runtime import IvrRuntime
from engine.pbx.asterisk.agi_server import FastAgiServer
from engine.pbx.base import LinkState, PbxDriver
from engine.pbx.factory import build_driver
from engine.pbx.freeswitch.outbound import OutboundServer
from engine.speech.cache import PromptCache
from engine.speech.espeak import EspeakNg
from engine.store.pg.cdr import CdrRepository
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.store.redis.stream import EventStream
from engine.store.redis.trunk_counters import TrunkCounters
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService, stream_publish

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
        self.api_port: int = 0
        self.app: web.Application | None = None
        self.ivr: IvrRuntime | None = None
        self._closing = False
        self.agi_port: int = 0

    async def stop(self) -> None:
        await self._stack.aclose()

    async def start(self) -> None:
        cfg = self.config
        data_dir = cfg.resolve(cfg.engine.data_dir)
        dsn = cfg.storage.postgres_dsn.get_secret_value() or None
        url = cfg.storage.redis_url.get_secret_value() or None
        prefix = cfg.storage.redis_prefix

        self.pg = await self._stack.enter_async_context(PgStore(dsn, data_dir / "postgres"))
        self.redis = await self._stack.enter_async_context(
            RedisStore(url, data_dir / "redis", prefix=prefix)
        )
        client = self.redis.client
        stream = EventStream(client, prefix, maxlen=cfg.storage.event_stream_maxlen)
        cdr_repo = CdrRepository(self.pg.pool)
        cdrs = CdrWriter(cdr_repo, data_dir / "cdr-spool.jsonl", self.metrics)
        replayed = await cdrs.replay_spool()
        if replayed:
            log.info("spooled CDRs written", count=replayed)

        self.drivers = {sw.name: build_driver(sw) for sw in cfg.switches}
        trunks = TrunkService(
            [t.to_spec() for t in cfg.trunks],
            [g.to_spec() for g in cfg.trunk_groups],
            metrics=self.metrics,
            publish=stream_publish(stream, self.metrics),
            drivers=self.drivers,
            shared=TrunkCounters(client, prefix),
        )
        self.trunks = trunks
        calls = CallService(
            drivers=self.drivers,
            registry=CallRegistry(client, prefix),
            stream=stream,
            idempotency=IdempotencyStore(client, prefix, ttl_s=cfg.api.idempotency_ttl_s),
            cdrs=cdrs,
            metrics=self.metrics,
            ended_store=EndedCalls(client, prefix),
            trunks=trunks,
        )
        self.calls = calls

        tasks = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._tasks = tasks
        consumers: list[asyncio.Task[None]] = []

        async def cancel_consumers() -> None:
            # Runs after every driver stopped (LIFO): nothing is left to consume.
            self._closing = True
            calls.close()
            trunks.close()
            for task in consumers:
                task.cancel()

        self._stack.push_async_callback(cancel_consumers)
        # Timed trunk transitions (breaker half-open), TrunkStateChanged events
        # and the reachability poll.
        consumers.append(
            tasks.create_task(
                trunks.run(self.drivers, cfg.trunk_health.poll_interval_s), name="trunks"
            )
        )
        for driver in self.drivers.values():
            consumers.append(
                tasks.create_task(calls.consume(driver), name=f"consume-{driver.name}")
            )
            await driver.start()
            self._stack.push_async_callback(driver.stop)

        ivr = IvrRuntime(cfg.resolve(cfg.engine.ivr_dir), stream, tts=_prompt_cache(cfg))
        await ivr.reload()
        self.ivr = ivr
        if cfg.engine.ivr_watch_interval_s > 0:
            watcher = tasks.create_task(
                ivr.watch(cfg.engine.ivr_watch_interval_s, lambda: self._closing),
                name="ivr-watch",
            )
            consumers.append(watcher)
        # One IVR runtime, two doors: FastAGI for Asterisk, the outbound
        # socket for FreeSWITCH. Both hand the flow a CallSession.
        if any(isinstance(sw, AsteriskSwitch) for sw in cfg.switches):
            agi = FastAgiServer(cfg.fastagi.host, cfg.fastagi.port, ivr.handle)
            await self._stack.enter_async_context(agi)
            self.agi_port = agi.port
        # Several FreeSWITCH boxes may share one outbound-socket listener.
        binds = {sw.outbound_bind for sw in cfg.switches if isinstance(sw, FreeSwitchSwitch)}
        for bind in sorted(binds):
            host, _, port = bind.rpartition(":")
            await self._stack.enter_async_context(OutboundServer(ivr.handle, host, int(port)))

        app = build_app(
            calls=calls,
            cdrs=cdr_repo,
            stream=stream,
            metrics_registry=self.metrics,
            health_check=self.health,
            tokens=[t.get_secret_value() for t in cfg.api.tokens],
            trunks=trunks,
            reload=self.reload,
        )
        self.app = app
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, cfg.api.host, cfg.api.port)
        await site.start()
        # aiohttp has no public accessor for the bound port (needed for port 0).
        sockets = getattr(site._server, "sockets", None) or []
        self.api_port = int(sockets[0].getsockname()[1]) if sockets else cfg.api.port
        log.info(
            "engine started",
            instance=cfg.engine.instance,
            api=f"http://{cfg.api.host}:{self.api_port}/v1",
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
        if self.config_path is not None:
            try:
                load_config(self.config_path)
            except ConfigError as err:
                report["config"] = {"valid": False, "errors": err.problems}
            else:
                report["config"] = {
                    "valid": True,
                    "applied": False,
                    "note": "engine.toml is valid; restart the engine to apply changes to it",
                }
        log.info("reload", **report)
        return report

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
        switches = {n: {"kind": d.kind, "state": d.state.value} for n, d in self.drivers.items()}
        ok = pg_ok and redis_ok and all(d.state is LinkState.UP for d in self.drivers.values())
        return {
            "status": "ok" if ok else "degraded",
            "switches": switches,
            "storage": {"postgres": pg_ok, "redis": redis_ok},
        }


def _prompt_cache(cfg: EngineConfig) -> PromptCache | None:
    """The [tts] table, or None to let the IVR runtime use ENGINE_TTS_* / defaults."""
    if not cfg.tts.dir:
        return None
    directory = cfg.resolve(cfg.tts.dir)
    synth = EspeakNg(cfg.tts.espeak_binary, timeout_s=cfg.tts.timeout_s)
    return PromptCache(synth, directory, cfg.tts.prefix or str(directory))


async def _safe(awaitable: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(awaitable, 2.0))
    except Exception:
        return False


async def run_forever(config: EngineConfig, config_path: Path | None = None) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads IVR flows and re-checks the config."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[dict[str, Any]]] = set()
    async with Engine(config, config_path) as engine:

        def on_hup() -> None:
            task = asyncio.create_task(engine.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        await stop.wait()
        log.info("engine stopping")
