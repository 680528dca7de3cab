"""The composition root: the one place that builds and wires every resource.

Each resource is an async context manager entered on an ``AsyncExitStack`` in
dependency order and torn down in reverse: storage, then drivers and their
event consumers, then the FastAGI and HTTP servers. Long-lived loops run under
one ``asyncio.TaskGroup`` so a crash in one is not silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.acd.history import AcdHistory, AcdRepository
from engine.acd.ivr_entry import IvrQueueEntry
from engine.acd.live_store import AcdLiveStore, LiveMirror
from engine.acd.scoring import LogisticScorer, load_logistic_scorer, logistic_from_json
from engine.acd.service import AcdService, AcdSettings
from engine.api.app import build_app
from engine.api.auth import Auth
from engine.api.events_ws import EVENT_SOCKETS
from engine.api.forward import Forwarder, advertised_address, peer_context
from engine.api.live_feed import LiveFeed, campaign_stats, queue_stats, trunk_stats
from engine.api.ownership import forwarded_routes
from engine.api.tls import server_context
from engine.auth.audit import AuditTrail
from engine.auth.audit import lane_sink as audit_sink
from engine.auth.hop import HopSeal
from engine.auth.tickets import Tickets
from engine.auth.tokens import TokenAuthority, TokenRepository
from engine.calls.cdr import CdrReader, CdrWriter
from engine.calls.ivr_control import IvrCallControl
from engine.calls.mirror import EndedCalls, RegistryMirror
from engine.calls.ownership import EverySwitch
from engine.calls.service import CallService
from engine.calls.settings import CallSettings
from engine.calls.sweep import Limits
from engine.campaigns.adapters import CampaignLeases, DriverChannels
from engine.campaigns.contacts.service import ContactsService
from engine.campaigns.history import AttemptRepository
from engine.campaigns.hopper import Hopper
from engine.campaigns.metrics import CampaignMetrics
from engine.campaigns.runner import RunnerDeps
from engine.campaigns.service import CampaignService
from engine.campaigns.store import CampaignStore
from engine.cluster.membership import Membership
from engine.cluster.ownership import Ownership, Timing
from engine.cluster.policy import placement
from engine.cluster.takeover import LeaseTakeover
from engine.config import EngineConfig, load_config
from engine.core import clock
from engine.core.config import AsteriskSwitch, FreeSwitchSwitch
from engine.core.errors import ConfigError
from engine.core.lifecycle import AsyncResource
from engine.core.systemd import Notifier
from engine.ivr.ports import SpeechInput
from engine.ivr.runtime import IvrRuntime
from engine.ivr.speech_input import AudioSocketTurns, PromptFiles, TapSpeechInput, UnicastTurns
from engine.ivr.webhook import HttpWebhookClient
from engine.pbx.asterisk.agi_server import FastAgiServer
from engine.pbx.asterisk.audiosocket import AudioSocketServer
from engine.pbx.base import Amd, CallSession, DialplanTarget, LinkState, LiveChannel, PbxDriver
from engine.pbx.event_queue import EventFanout
from engine.pbx.factory import build_driver
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from engine.pbx.freeswitch.outbound import FreeSwitchCallSession, OutboundServer
from engine.privacy import http as privacy_http
from engine.privacy.keys import pseudonym_key
from engine.privacy.service import DataSubjectService
from engine.privacy.store import SubjectStore
from engine.recordings.keys import key_ring
from engine.recordings.service import RecordingService
from engine.recordings.store import RecordingIndex
from engine.reports import http as reports_http
from engine.reports.refresher import Refresher
from engine.speech.cache import PromptCache
from engine.speech.espeak import EspeakNg
from engine.speech.listen import Pools
from engine.speech.settings import TtsSettings
from engine.store.errors import StoreError
from engine.store.outbox import Journal, Lane, LanePublisher, Record
from engine.store.pg.audit import AuditLog
from engine.store.pg.cdr import CdrRepository
from engine.store.pg.fences import Fences
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.engines import EngineDirectory
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.locks import Leases
from engine.store.redis.owners import LeaseOwners
from engine.store.redis.registry import CallRegistry
from engine.store.redis.rounds import RedisRounds
from engine.store.redis.sentinel import sentinel_settings
from engine.store.redis.seq_floor import SeqFloor
from engine.store.redis.stream import EventStream
from engine.store.redis.trunk_admin import TrunkAdmin
from engine.store.redis.trunk_counters import TrunkCounters
from engine.telemetry.health_metrics import engine_health
from engine.telemetry.live import LoopLag, Source, StorageGauges
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import LABEL_CAP, Metrics
from engine.trunks.service import TrunkService
from engine.trunks.translate import translate
from engine.webhooks import http as webhooks_http
from engine.webhooks.service import (
    Dispatcher,
    DispatchSettings,
    WebhookTaps,
    ingest_screen,
    ingest_sink,
)
from engine.webhooks.store import WebhookStore

log = get_logger("engine.app")

# At most one delivery round per lane per interval (engine.core.worker.pace):
# a lone record goes out at once; under load the round trips (and the fsyncs
# before them) are capped, and with them most of the engine's CPU per call
# (docs/bench-cpu.md). The event lane, the registry mirror and the trunk
# counters' releases share one Redis pipeline per round; that round, the
# event lane's and the mirror's all use ``[storage] write_round_s``.
CDR_ROUND_S = 0.5


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

    def _contacts_service(self) -> ContactsService:
        assert self.pg is not None
        # One parsing process (started on the first import): big uploads do not take the
        # event loop's core, and one core stays for PostgreSQL.
        service = ContactsService(
            self.pg.pool, timeout_s=self.config.calls.storage_timeout_s, workers=1
        )
        self._stack.callback(service.close)
        return service

    async def start(self) -> None:
        cfg = self.config
        data_dir = cfg.resolve(cfg.engine.data_dir)
        dsn = cfg.storage.postgres_dsn.get_secret_value() or None
        url = cfg.storage.redis_url.get_secret_value() or None
        prefix = cfg.storage.redis_prefix

        timeout = cfg.calls.storage_timeout_s
        self.pg = await self._stack.enter_async_context(
            PgStore(dsn, data_dir / "postgres", command_timeout_s=timeout)
        )
        # Every Redis command is bounded by the storage timeout, but the
        # socket timeout must outlast the event fan-out's 1 s XREAD BLOCK.
        self.redis = await self._stack.enter_async_context(
            RedisStore(
                url,
                data_dir / "redis",
                prefix=prefix,
                socket_timeout_s=max(timeout, 2.0),
                sentinel=sentinel_settings(cfg.storage),
            )
        )
        client = self.redis.client
        ownership = self._ownership(client, timeout) if cfg.cluster.enabled else None
        round_s = cfg.storage.write_round_s
        rounds = RedisRounds(client, interval_s=round_s, timeout_s=timeout)
        # The floor file keeps the event sequence going upward if Redis loses its data.
        stream = EventStream(
            client,
            prefix,
            maxlen=cfg.storage.event_stream_maxlen,
            floor=SeqFloor(data_dir / "event-seq.floor"),
            rounds=rounds,
            # A replicated master: an event is let go once a replica has it too. The WAIT
            # shares the round's timeout, so it gets at most half of it.
            wait_replicas=cfg.storage.wait_replicas,
            wait_timeout_ms=min(cfg.storage.redis_wait_timeout_ms, int(timeout * 500)),
        )
        self._stack.push_async_callback(stream.close)
        cdr_repo = CdrRepository(
            self.pg.pool, timeout_s=timeout, fence_namespace=cfg.storage.redis_prefix
        )
        cdrs = CdrWriter(cdr_repo)

        # The durable local outbox: what the engine accepted is journalled
        # here first and delivered by these lanes, whatever storage is doing.
        outbox_dir = data_dir / "outbox"

        # A whole batch per round trip, in one atomic script run: a failed
        # try leaves none of the batch on the stream, so the retry cannot
        # duplicate part of it (a publish is not idempotent).
        async def publish_events(records: Sequence[Record]) -> None:
            await stream.publish_encoded([r.json() for r in records])
            self.metrics.events_published.inc(len(records))

        cdr_lane = Lane(
            Journal(outbox_dir, "cdrs"),
            cdrs.sink,
            self.metrics,
            timeout_s=timeout,
            min_interval_s=CDR_ROUND_S,
        )
        event_lane = Lane(
            Journal(outbox_dir, "events"),
            publish_events,
            self.metrics,
            timeout_s=timeout,
            min_interval_s=round_s,
        )
        # The ACD's history (agent sessions, state changes, queue entries).
        acd_lane = Lane(
            Journal(outbox_dir, "acd"),
            AcdRepository(self.pg.pool, timeout_s=timeout).write,
            self.metrics,
            timeout_s=timeout,
            min_interval_s=CDR_ROUND_S,
        )
        # Campaign attempts' outcomes and contact updates (docs/campaigns.md).
        campaign_lane = Lane(
            Journal(outbox_dir, "campaigns"),
            AttemptRepository(self.pg.pool, timeout_s=timeout).write,
            self.metrics,
            timeout_s=timeout,
            min_interval_s=CDR_ROUND_S,
        )
        # The recordings index (docs/recordings.md): a recording that ends while PostgreSQL
        # is away is indexed when it is back. The sink is the service's (set below).
        recordings_box: list[RecordingService] = []

        async def index_recordings(records: Sequence[Record]) -> None:
            await recordings_box[0].sink(records)

        recording_lane = Lane(
            Journal(outbox_dir, "recordings"),
            index_recordings,
            self.metrics,
            timeout_s=timeout,
            min_interval_s=CDR_ROUND_S,
        )
        self.cdr_lane, self.event_lane, self.acd_lane = cdr_lane, event_lane, acd_lane
        self.campaign_lane = campaign_lane
        self.recording_lane = recording_lane
        # The audit trail (docs/security.md): one row per mutating API request, journalled
        # before the answer goes out, chained into audit_log by this lane.
        self.audit_log = AuditLog(self.pg.pool, timeout_s=timeout)
        audit_lane = Lane(
            Journal(outbox_dir, "audit"),
            audit_sink(self.audit_log),
            self.metrics,
            timeout_s=timeout,
            min_interval_s=CDR_ROUND_S,
        )
        self.audit_lane = audit_lane
        # Webhooks (docs/security.md): taps on the events and CDR lanes pick the events a
        # webhook carries into their own lane, which stores them and their deliveries in
        # PostgreSQL; the dispatcher sends them.
        wh = cfg.webhooks
        self.webhook_store = WebhookStore(self.pg.pool, timeout_s=timeout)
        dispatcher = Dispatcher(
            self.webhook_store,
            DispatchSettings(
                timeout_s=wh.timeout_s,
                concurrency=wh.concurrency,
                backoff_base_s=wh.backoff_base_s,
                backoff_max_s=wh.backoff_max_s,
                poll_interval_s=wh.poll_interval_s,
                storage_timeout_s=timeout,
            ),
        )
        self.webhooks = dispatcher
        webhook_lane = Lane(
            Journal(outbox_dir, "webhooks"),
            ingest_sink(self.webhook_store, dispatcher.wake),
            self.metrics,
            timeout_s=timeout,
            min_interval_s=round_s,
            # Most batches go to no subscription: asked first, they skip the fsync too;
            # with no subscription at all, one question per CDR round, not per call.
            screen=ingest_screen(self.webhook_store, quiet_s=CDR_ROUND_S),
        )
        taps = WebhookTaps(webhook_lane)
        event_lane.tap(taps.on_event)
        cdr_lane.tap(taps.on_cdr)
        self.webhook_lane = webhook_lane
        lanes = (
            event_lane,
            cdr_lane,
            acd_lane,
            campaign_lane,
            recording_lane,
            audit_lane,
            webhook_lane,
        )
        for lane in lanes:
            lane.open()
            self._stack.callback(lane.journal.close)
        cdrs.attach(cdr_lane)
        moved = cdrs.import_legacy_spool(data_dir / "cdr-spool.jsonl")
        if moved:
            log.info("pre-outbox spooled CDRs moved into the outbox", count=moved)

        self.drivers = {sw.name: build_driver(sw) for sw in cfg.switches}
        shed = self.metrics.pbx_events_shed
        for driver in self.drivers.values():
            fanout = getattr(driver, "fanout", None)
            if isinstance(fanout, EventFanout):
                # Non-essential events shed under backpressure are counted.
                fanout.on_shed = lambda e: shed.labels(e.switch, e.type).inc()
        trunks = TrunkService(
            [t.to_spec() for t in cfg.trunks],
            [g.to_spec() for g in cfg.trunk_groups],
            metrics=self.metrics,
            # Trunk and IVR events go through the outbox like call events.
            publish=LanePublisher(event_lane).publish,
            drivers=self.drivers,
            shared=TrunkCounters(client, prefix, rounds=rounds),
            # Drained trunks, the same for every engine (docs/trunks.md "Several engines").
            admin=TrunkAdmin(client, prefix, timeout_s=timeout),
        )
        self.trunks = trunks
        await trunks.sync_admin()  # before any call is placed (Redis away: all enabled)
        registry = CallRegistry(client, prefix, rounds=rounds)
        mirror = RegistryMirror(
            registry,
            EndedCalls(client, prefix),
            self.metrics,
            ttl_s=cfg.calls.registry_ttl_s,
            refresh_s=cfg.calls.registry_refresh_s,
            timeout_s=timeout,
            round_s=round_s,
            # New calls and state changes, kept until a round carried them to
            # Redis: a crash before that round loses no call (docs/durability.md).
            journal=Journal(outbox_dir, "registry"),
        )
        calls = CallService(
            drivers=self.drivers,
            registry=registry,
            mirror=mirror,
            events=event_lane,
            idempotency=IdempotencyStore(client, prefix, ttl_s=cfg.api.idempotency_ttl_s),
            cdrs=cdrs,
            metrics=self.metrics,
            trunks=trunks,
            # Only the owner of lease switch:<name> commands that switch (engine/cluster).
            gate=ownership or EverySwitch(),
            settings=CallSettings(
                storage_timeout_s=timeout,
                unknown_outcome_window_s=cfg.calls.unknown_outcome_window_s,
                sweep_interval_s=cfg.calls.sweep_interval_s,
                limits=Limits(
                    max_setup_s=cfg.calls.max_setup_s,
                    max_ring_s=cfg.calls.max_ring_s,
                    max_call_s=cfg.calls.max_call_s,
                ),
            ),
        )
        self.calls = calls
        rec_cfg = cfg.recordings
        recordings = RecordingService(
            rec_cfg,
            keys=key_ring(
                rec_cfg, base=Path(cfg.base_dir), data_dir=data_dir, instance=cfg.engine.instance
            ),
            calls=calls,
            records=recording_lane,
            events=event_lane,
            index=RecordingIndex(self.pg.pool, timeout_s=timeout),
            store_dir=cfg.resolve(rec_cfg.store_dir),
        )
        recordings_box.append(recordings)
        self.recordings = recordings
        acd_mirror = LiveMirror(
            AcdLiveStore(client, prefix, timeout_s=timeout, **_queue_fence(ownership))
        )
        # Queue leases taken over and not yet rebuilt: not served until they are.
        taking_over: set[str] = set()
        acd = AcdService(
            agents=[a.to_config() for a in cfg.agents],
            queues=[q.to_spec() for q in cfg.queues],
            settings=AcdSettings(
                pause_reasons=tuple(cfg.acd.pause_reasons),
                priorities=dict(cfg.acd.priorities),
                default_priority=cfg.acd.default_priority,
                intents=dict(cfg.acd.intents),
                seed=cfg.acd.seed,
                storage_timeout_s=timeout,
                supervisor_endpoints={k: tuple(v) for k, v in cfg.acd.supervisor_endpoints.items()},
            ),
            calls=calls,
            drivers=self.drivers,
            # The recording service sees the ACD's events on their way (queue, agent,
            # and policy "always" when a caller is connected to an agent).
            events=_Tap(event_lane, recordings.observe),
            history=AcdHistory(acd_lane),
            mirror=acd_mirror,
            store=AcdLiveStore(client, prefix, timeout_s=timeout),
            scorer=_scorer(cfg),
            owns_queue=_serves(ownership, taking_over),
        )
        self.acd = acd
        campaign_store = CampaignStore(self.pg.pool, timeout_s=timeout)

        async def campaigns_settle() -> bool:
            return await campaign_lane.wait_drained(max(10.0, 4 * timeout))

        campaigns = CampaignService(
            RunnerDeps(
                store=campaign_store,
                hopper=Hopper(self.pg.pool, timeout_s=timeout),
                calls=calls,
                acd=acd,
                switches=DriverChannels(self.drivers),
                leases=CampaignLeases(
                    Leases(client, prefix, cfg.engine.instance),
                    ttl_ms=round(cfg.cluster.lease_ttl_s * 1000),
                    margin_ms=round(cfg.cluster.lease_ttl_s * 200),
                    timeout_s=timeout,
                    policy=ownership,
                ),
                records=campaign_lane,
                events=event_lane,
                translate=lambda group, phone: translate(trunks.fleet.groups[group], phone),
                # Amd(): app_amd in [engine-amd] on Asterisk (the same context as before), the
                # unicast tap and the engine's detector on FreeSWITCH (docs/amd.md).
                amd_then=Amd,
                safe_harbour=lambda switch: _safe_harbour_target(self.drivers, switch),
                clock=clock.now,
                trunk_groups={g.name for g in cfg.trunk_groups},
                settle=campaigns_settle,
            ),
            # Another engine live: stand by for the campaigns it runs (their leases).
            standby=lambda: ownership is not None and len(ownership.live()) > 1,
        )
        self.campaigns = campaigns
        try:
            await campaigns.seed(list(cfg.campaigns))
        except Exception as err:
            log.error("could not create the configured campaigns", error=str(err))
        # Leases first: a lone engine takes them all at once (one turn); with several, the
        # switches this one owns decide which registry calls it adopts below.
        if ownership is not None:
            fences = Fences(self.pg.pool, namespace=cfg.storage.redis_prefix, timeout_s=timeout)
            await ownership.turn()
            for name, token in ownership.held().items():
                if name.startswith("switch:"):
                    await self._show_fence(ownership, fences, name, token)
            self._follow_leases(ownership, calls, acd, fences, taking_over)
            # CDRs carry their switch lease's token; PostgreSQL refuses a stale one.
            cdrs.fence(
                lambda switch: ownership.last_token(f"switch:{switch}"),
                lambda lease, token: ownership.stale(lease, token, "PostgreSQL refused a CDR"),
            )
        # Agents and waiting callers as they were; their legs are confirmed
        # (or ended) on each switch's first resync.
        await acd.restore()
        # Calls that were live when the engine last stopped (or crashed):
        # tracked again before the drivers connect, so their first resync
        # decides whether each is still up (adopted) or gone (interrupted).
        try:
            await calls.adopt()
        except Exception as err:
            log.error("could not load the live-call registry; nothing adopted", error=str(err))

        tasks = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._tasks = tasks
        consumers: list[asyncio.Task[None]] = []
        # The outbox lanes and the registry mirror are not cancelled with the
        # consumers: they must keep running to deliver what is pending.
        flushers: list[asyncio.Task[None]] = []

        async def cancel_consumers() -> None:
            # Runs after every driver stopped (LIFO): nothing is left to consume.
            self._closing = True
            dispatcher.close()
            calls.close()
            campaigns.close()
            acd.close()
            trunks.close()
            for task in consumers:
                task.cancel()
            # Deliver what is still pending while storage answers; what is
            # not delivered stays in the journal for the next start.
            await mirror.wait_flushed(2 * timeout)
            mirror.close()
            await acd_mirror.wait_flushed(2 * timeout)
            acd_mirror.close()
            for lane in lanes:
                await lane.wait_drained(2 * timeout)
                lane.close()
            # close() ends them (a delivery in flight is bounded by its timeout).
            _done, stuck = await asyncio.wait(flushers, timeout=2 * timeout)
            for task in stuck:
                task.cancel()

        # Leases are handed back last: after the drivers stopped and the lanes drained (LIFO).
        if ownership is not None:
            self._stack.push_async_callback(ownership.close)
        self._stack.push_async_callback(cancel_consumers)
        for lane in lanes:
            flushers.append(tasks.create_task(lane.run(), name=f"outbox-{lane.name}"))
        flushers.append(tasks.create_task(mirror.run(calls.tracked), name="registry-mirror"))
        flushers.append(tasks.create_task(acd_mirror.run(), name="acd-mirror"))
        consumers.append(tasks.create_task(acd.run(), name="acd-timers"))
        if ownership is not None:
            consumers.append(tasks.create_task(ownership.run(), name="leases"))
        consumers.append(tasks.create_task(dispatcher.run(), name="webhooks"))
        # KPI intervals of the buckets the lanes' latest rows changed (docs/reports.md).
        refresher = Refresher(
            self.pg.pool,
            cfg.reports.settings({q.name: q.service_level_s for q in cfg.queues}),
            interval_s=cfg.reports.refresh_s,
            timeout_s=max(timeout, 10.0),
        )
        self.reports = refresher
        if cfg.reports.enabled:
            self._stack.callback(refresher.stop)
            consumers.append(tasks.create_task(refresher.run(), name="report-intervals"))
        consumers.append(tasks.create_task(calls.sweep(), name="sweeper"))
        consumers.append(
            tasks.create_task(recordings.sweep(lambda: self._closing), name="recording-retention")
        )
        # Recordings of calls this engine tracked before a restart: taken back, or finished
        # when their call ended meanwhile (docs/recordings.md "Durability").
        consumers.append(
            tasks.create_task(recordings.recover(lambda: self._closing), name="recording-recovery")
        )
        # Timed trunk transitions (breaker half-open), TrunkStateChanged events
        # and the reachability poll.
        consumers.append(
            tasks.create_task(
                trunks.run(self.drivers, cfg.trunk_health.poll_interval_s), name="trunks"
            )
        )
        # Per-queue/campaign/trunk metrics read at scrape time; storage-backed ones and the
        # loop lag by background loops (docs/metrics.md).
        for loop in self._live_metrics(acd, campaigns, trunks, timeout):
            consumers.append(tasks.create_task(loop.run(), name=f"metrics-{type(loop).__name__}"))
        for driver in self.drivers.values():
            consumers.append(
                tasks.create_task(calls.consume(driver), name=f"consume-{driver.name}")
            )
            # The ACD follows the same switch events through its own
            # subscription (docs/acd.md "Who owns which leg").
            consumers.append(
                tasks.create_task(acd.consume(driver), name=f"acd-consume-{driver.name}")
            )
            consumers.append(
                tasks.create_task(recordings.consume(driver), name=f"rec-consume-{driver.name}")
            )
            await driver.start()
            self._stack.push_async_callback(driver.stop)

        if cfg.api.live_feed_interval_s > 0:
            # Summary events for live views (the wallboard): queue KPIs, campaign pacing,
            # trunk load, each published when it changes (engine/api/live_feed.py).
            feed = LiveFeed(
                event_lane.put,
                [queue_stats(acd), campaign_stats(campaigns), trunk_stats(trunks)],
                interval_s=cfg.api.live_feed_interval_s,
            )
            # It learns which queues changed from the events themselves.
            event_lane.tap(feed.observe)
            consumers.append(tasks.create_task(feed.run(lambda: self._closing), name="live-feed"))
        # Running campaigns resume once the switches are being connected (their
        # runners reconcile open attempts with the switches first).
        consumers.append(tasks.create_task(campaigns.run(), name="campaigns"))

        webhooks = HttpWebhookClient()
        self._stack.push_async_callback(webhooks.close)
        speech = await self._speech_input(cfg)
        ivr = IvrRuntime(
            cfg.resolve(cfg.engine.ivr_dir),
            LanePublisher(event_lane),
            tts=_prompt_cache(cfg),
            # `queue` steps hand calls to the ACD (engine/acd/ivr_entry.py).
            queues=IvrQueueEntry(acd, calls),
            # `transfer` and `split` (engine/calls/ivr_control.py).
            calls=IvrCallControl(calls),
            webhooks=webhooks,
            speech=speech,
        )
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

        # Several engines: commands for objects another engine owns go there
        # (engine/api/forward.py); this engine's API address is published for the others.
        directory = EngineDirectory(client, prefix, cfg.engine.instance, timeout_s=timeout)
        # Seals hops with the engines' shared key (read below and with every heartbeat), so
        # an owner does not count a forwarded request against its rate limit a second time.
        hops = HopSeal(lambda: directory.peer_key)
        local = frozenset(
            [f"switch:{sw.name}" for sw in cfg.switches] + [f"queue:{q.name}" for q in cfg.queues]
        )
        forwarder = Forwarder(
            forwarded_routes(calls, trunks=trunks, campaigns=campaigns, acd=acd),
            LeaseOwners(
                Leases(client, prefix, cfg.engine.instance),
                cfg.engine.instance,
                # What this engine holds is known from memory: no Redis read. With [cluster]
                # the lease keeper says; without it, this engine controls every switch and
                # queue it is configured with (nobody leases them), so a request for one of
                # them never waits on Redis (a black-holed Redis must not stall originates).
                held=self.ownership.owns if self.ownership is not None else local.__contains__,
            ),
            directory,
            timeout_s=cfg.api.forward_timeout_s,
            ssl_context=peer_context(cfg.resolve(cfg.api.tls_cert)) if cfg.api.tls else None,
            count=lambda result: self.metrics.api_forwarded.labels(result).inc(),
            seal=hops,
        )
        self.forwarder = forwarder
        self._stack.push_async_callback(forwarder.close)
        app = build_app(
            forwarder=forwarder,
            engines=directory.instances,
            calls=calls,
            cdrs=CdrReader(cdr_repo, cdrs),
            stream=stream,
            metrics_registry=self.metrics,
            health_check=self.health,
            tokens=[t.get_secret_value() for t in cfg.api.tokens],
            trunks=trunks,
            reload=self.reload,
            acd=acd,
            campaigns=campaigns,
            contacts=self._contacts_service(),
            recordings=recordings,
            auth=Auth(
                TokenAuthority(
                    [t.get_secret_value() for t in cfg.api.tokens],
                    TokenRepository(self.pg.pool, timeout_s=timeout),
                    ttl_s=cfg.api.token_cache_ttl_s,
                    default_rate=(cfg.api.rate_per_s, cfg.api.rate_burst),
                    bootstrap_rate_per_s=cfg.api.bootstrap_rate_per_s,
                ),
                Tickets(client, prefix, ttl_s=cfg.api.ticket_ttl_s),
                hops=hops,
            ),
            audit=AuditTrail(audit_lane),
            audit_log=self.audit_log,
            extra_routes=[
                self._webhook_routes,
                self._privacy_routes(data_dir),
                self._report_routes,
            ],
        )
        self.app = app
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        ssl_context = (
            server_context(
                cfg.resolve(cfg.api.tls_cert), cfg.resolve(cfg.api.tls_key), cfg.api.tls_min_version
            )
            if cfg.api.tls
            else None
        )
        site = web.TCPSite(runner, cfg.api.host, cfg.api.port, ssl_context=ssl_context)
        await site.start()
        # aiohttp has no public accessor for the bound port (needed for port 0).
        sockets = getattr(site._server, "sockets", None) or []
        self.api_port = int(sockets[0].getsockname()[1]) if sockets else cfg.api.port
        address = advertised_address(cfg.api, self.api_port)
        try:
            await directory.publish(address)
            await directory.load_peer_key()
        except StoreError as err:
            log.warning("API address not published yet; the heartbeat retries", error=str(err))
        consumers.append(
            tasks.create_task(directory.run(address, lambda: self._closing), name="engine-address")
        )
        # At a clean stop peers stop forwarding here at once (not a TTL later).
        self._stack.push_async_callback(directory.withdraw)
        log.info(
            "engine started",
            instance=cfg.engine.instance,
            api=f"{'https' if cfg.api.tls else 'http'}://{cfg.api.host}:{self.api_port}/v1",
            switches=sorted(self.drivers),
        )

    def _ownership(self, client: Any, timeout: float) -> Ownership:
        """Membership and the switch and queue leases (docs/architecture.md "Several engines").
        Campaign leases are taken by their runners, under the same policy."""
        cfg = self.config
        ttl = cfg.cluster.lease_ttl_s
        timing = Timing(
            ttl_s=ttl,
            margin_s=ttl / 5,
            timeout_s=min(timeout, ttl / 4),
            handback_after_s=2 * ttl,
            grace_s=ttl,
        )
        me, prefix = cfg.engine.instance, cfg.storage.redis_prefix
        ownership = Ownership(
            Leases(client, prefix, me),
            Membership(client, prefix, me, ttl_ms=timing.ttl_ms, timeout_s=timing.timeout_s),
            [f"switch:{sw.name}" for sw in cfg.switches] + [f"queue:{q.name}" for q in cfg.queues],
            timing=timing,
            placement=placement(cfg.cluster.placement, [sw.name for sw in cfg.switches]),
        )
        self.ownership = ownership
        return ownership

    @staticmethod
    async def _show_fence(ownership: Ownership, fences: Fences, name: str, token: int) -> bool:
        """Raise the lease's fence in PostgreSQL to our token before acting for it; a larger
        one there means another engine took it meanwhile: step down. PostgreSQL away: go on
        (the lease says we own it; our writes are judged when they are delivered)."""
        try:
            shown = await fences.take(name, token)
        except Exception as err:
            log.warning("cannot show the lease's fencing token", lease=name, error=str(err))
            return True
        if not shown:
            try:
                floor = await fences.current(name)
            except Exception as err:
                log.warning("cannot read the lease's fence", lease=name, error=str(err))
                floor = None
            if floor is None:
                ownership.stale(name, token, "a larger token is in PostgreSQL's fences")
            else:
                await ownership.refence(name, token, floor)
        return shown

    def _follow_leases(
        self,
        ownership: Ownership,
        calls: CallService,
        acd: AcdService,
        fences: Fences,
        taking_over: set[str],
    ) -> None:
        """After the first turn, leases taken over run the restart recovery, one takeover at a
        time (engine/cluster/takeover.py): each switch's fence is raised and its registry
        calls adopted (its channel list decides), then, if queues came too, the ACD is rebuilt
        from Redis and confirmed against the owned switches' channels. A switch lost is left
        at once."""

        async def show_fence(name: str, token: int) -> bool:
            return await self._show_fence(ownership, fences, name, token)

        takeover = LeaseTakeover(
            show_fence=show_fence,
            take_switch=calls.take_switch,
            drop_switch=calls.drop_switch,
            take_queues=acd.take_over,
            confirm_queues=acd.confirm,
            owned_channels=lambda: _owned_channels(calls),
            pending=taking_over,
        )

        def acquired(name: str, token: int) -> None:
            if not self._closing:
                takeover.acquired(name, token)

        ownership.on_acquired.append(acquired)
        ownership.on_lost.append(takeover.lost)
        timeout = ownership.timing.timeout_s

        async def flushed(name: str) -> None:
            # A switch handed back: its calls' last changes (an end above all) reach the
            # registry before the next owner adopts from it (engine/calls/service.py).
            if name.startswith("switch:"):
                await calls.flushed(timeout)

        ownership.before_release.append(flushed)

    def _live_metrics(
        self,
        acd: AcdService,
        campaigns: CampaignService,
        trunks: TrunkService,
        timeout: float,
    ) -> list[StorageGauges | LoopLag]:
        """Register the live metric sources; returns the loops to run (closed at stop)."""
        live, cap = self.metrics.live, LABEL_CAP
        live.add(acd.metrics_source(cap))
        live.add(trunks.metrics_source(cap))
        cm = CampaignMetrics(campaigns, cap, storage_timeout_s=2 * timeout)
        campaign_storage = cm.storage
        live.add(Source("campaigns", cm.families, cm.prepare, cm.budget))
        store = self.webhook_store
        assert store is not None

        async def read_webhooks() -> dict[str, dict[tuple[str, ...], float]]:
            pending, oldest = await store.backlog()
            return {"pending": {(): float(pending)}, "oldest": {(): oldest}}

        webhook_storage = StorageGauges("webhooks", read_webhooks, timeout_s=2 * timeout)
        lag = LoopLag()
        loops: list[StorageGauges | LoopLag] = [campaign_storage, webhook_storage, lag]
        self.metrics_loops = loops
        live.add(Source("engine", lambda: engine_health(webhook_storage, campaign_storage, lag)))
        for loop in loops:
            self._stack.callback(loop.close)
        return loops

    async def _speech_input(self, cfg: EngineConfig) -> SpeechInput | None:
        """Live speech for IVR steps (docs/speech.md): the AudioSocket server (Asterisk),
        the unicast tap (FreeSWITCH, through the driver) and one warm ASR pool per plugin.
        None keeps the runtime's keys-only input."""
        if not cfg.speech.enabled:
            return None
        pools = Pools(size=cfg.speech.workers)
        self._stack.push_async_callback(pools.stop)
        openers: list[Any] = []
        if any(isinstance(sw, AsteriskSwitch) for sw in cfg.switches):
            server = AudioSocketServer(cfg.speech.host, cfg.speech.port)
            await self._stack.enter_async_context(server)
            self.audiosocket_port = server.port
            openers.append(
                AudioSocketTurns(
                    server, _prompt_files(cfg), advertise_host=cfg.speech.advertise_host
                )
            )
        fs = [d for d in self.drivers.values() if isinstance(d, FreeSwitchDriver)]
        if fs:
            openers.append(UnicastTurns(lambda session: _freeswitch_of(fs, session)))
        return TapSpeechInput(pools, openers, default_plugin=cfg.speech.default_plugin)

    def _report_routes(self, app: web.Application) -> None:
        assert self.pg is not None
        app[reports_http.REPORTS] = reports_http.ReportsDeps(
            self.pg.pool, timeout_s=max(self.config.calls.storage_timeout_s, 10.0)
        )
        reports_http.add_routes(app)

    def _webhook_routes(self, app: web.Application) -> None:
        assert self.webhook_store is not None and self.webhooks is not None
        app[webhooks_http.WEBHOOKS] = self.webhook_store
        app[webhooks_http.DISPATCHER] = self.webhooks
        webhooks_http.add_routes(app)

    def _privacy_routes(self, data_dir: Path) -> Callable[[web.Application], None]:
        """Data-subject export and erase (docs/privacy.md). The pseudonym key is loaded (or
        generated) here, at start: a bad key source stops the engine, naming it."""
        assert self.pg is not None
        cfg = self.config
        service = DataSubjectService(
            # One person's rows in one transaction: more than a single statement's timeout.
            SubjectStore(self.pg.pool, timeout_s=max(30.0, cfg.calls.storage_timeout_s)),
            pseudonym_key(
                cfg.privacy,
                base=Path(cfg.base_dir),
                data_dir=data_dir,
                instance=cfg.engine.instance,
            ),
            recordings=self.recordings,
            default_region=cfg.privacy.default_region,
        )

        def add(app: web.Application) -> None:
            privacy_http.add_routes(app, service)

        return add

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
        switches = {n: {"kind": d.kind, "state": d.state.value} for n, d in self.drivers.items()}
        ok = pg_ok and redis_ok and all(d.state is LinkState.UP for d in self.drivers.values())
        out: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "switches": switches,
            "storage": {"postgres": pg_ok, "redis": redis_ok},
        }
        if self.ownership is not None:
            # Several engines: the leases this one holds now and the engines it sees live.
            out["cluster"] = {
                "instance": self.ownership.me,
                "leases": self.ownership.held(),
                "live": sorted(self.ownership.live()),
            }
        return out


async def _owned_channels(calls: CallService) -> dict[str, list[LiveChannel]]:
    """The channel lists of the switches this engine owns and whose link is up."""
    out: dict[str, list[LiveChannel]] = {}
    for name, driver in calls.drivers.items():
        if calls.gate.owns_switch(name) and driver.state is LinkState.UP:
            out[name] = await asyncio.wait_for(driver.live_calls(), 5.0)
    return out


def _serves(ownership: Ownership | None, taking_over: set[str]) -> Callable[[str], bool]:
    """Whether this engine takes callers into a queue: a lone engine, every queue; with
    ``[cluster]``, the queues whose lease it holds, once a takeover has rebuilt them
    (``taking_over``: the queue leases taken and not yet recovered, engine/cluster/takeover.py).
    """
    if ownership is None:
        return lambda _queue: True
    return lambda queue: ownership.owns_queue(queue) and f"queue:{queue}" not in taking_over


def _queue_fence(ownership: Ownership | None) -> dict[str, Any]:
    """Several engines: the ACD's reservations are written only while this engine holds the
    queue's lease with its token (checked in Redis by the writing script); a refusal steps
    it down from the queue. A lone engine: plain writes."""
    if ownership is None:
        return {}

    def holder_of(queue: str) -> str | None:
        token = ownership.token(f"queue:{queue}")
        return None if token is None else f"{ownership.me} {token}"

    def on_stale(queue: str) -> None:
        name = f"queue:{queue}"
        ownership.stale(name, ownership.last_token(name) or 0, "Redis refused a reservation")

    return {"holder_of": holder_of, "on_stale": on_stale}


def _safe_harbour_target(drivers: dict[str, PbxDriver], switch: str) -> DialplanTarget:
    """Where a campaign's safe-harbour message is played: [engine-safe-harbour] on Asterisk,
    the engine_safe_harbour extension of the `default` context on FreeSWITCH (docs/freeswitch.md
    has the dialplan include)."""
    driver = drivers.get(switch)
    if driver is not None and driver.kind == "freeswitch":
        return DialplanTarget("default", "engine_safe_harbour", 1)
    return DialplanTarget("engine-safe-harbour", "s", 1)


def _scorer(cfg: EngineConfig) -> LogisticScorer | None:
    """``[acd] scorer_weights``: inline JSON, or the path of a JSON file; empty = cosine."""
    weights = cfg.acd.scorer_weights.strip()
    if not weights:
        return None
    if weights.startswith("{"):
        return logistic_from_json(weights, "engine.toml: acd.scorer_weights")
    return load_logistic_scorer(cfg.resolve(weights))


def _freeswitch_of(
    drivers: list[FreeSwitchDriver], session: CallSession
) -> FreeSwitchDriver | None:
    """The FreeSWITCH driver a session's leg belongs to: outbound-socket sessions only (an
    AGI session is Asterisk's); with several FreeSWITCH boxes, the one whose switch name
    the leg's ``FreeSWITCH-Switchname`` gives."""
    if not isinstance(session, FreeSwitchCallSession):
        return None
    if len(drivers) == 1:
        return drivers[0]
    host = session.variables.get("FreeSWITCH-Switchname", "")
    return next((d for d in drivers if d.name == host), None)


def _prompt_files(cfg: EngineConfig) -> PromptFiles:
    """The engine's own TTS prompts as files, for playing them over the media tap."""
    if cfg.tts.dir:
        directory = cfg.resolve(cfg.tts.dir)
        return PromptFiles(directory, cfg.tts.prefix or str(directory))
    settings = TtsSettings.from_env()
    return PromptFiles(settings.directory, settings.prefix)


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


class _Tap:
    """An outbox lane whose records are also shown to ``observer`` (synchronously)."""

    def __init__(self, lane: Lane, observer: Callable[[Mapping[str, Any]], None]) -> None:
        self._lane = lane
        self._observer = observer

    def put(self, payload: dict[str, Any]) -> None:
        self._lane.put(payload)
        try:
            self._observer(payload)
        except Exception as err:  # an observer's bug never loses the event
            log.error("event observer failed", error=repr(err))
