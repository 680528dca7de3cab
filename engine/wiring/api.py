"""The HTTP API (engine/api/): forwarding between engines, the app and its listener, and
this engine's address published for the others. Built last: it serves what is built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.acd.service import AcdService
from engine.api.app import build_app
from engine.api.auth import Auth
from engine.api.forward import Forwarder, advertised_address, peer_context
from engine.api.ownership import forwarded_routes
from engine.api.tls import server_context
from engine.auth.audit import AuditTrail
from engine.auth.hop import HopSeal
from engine.auth.tickets import Tickets
from engine.auth.tokens import TokenAuthority, TokenRepository
from engine.calls.cdr import CdrReader
from engine.calls.service import CallService
from engine.campaigns.service import CampaignService
from engine.cluster.ownership import Ownership
from engine.config import EngineConfig
from engine.recordings.service import RecordingService
from engine.store.errors import StoreError
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.engines import EngineDirectory
from engine.store.redis.locks import Leases
from engine.store.redis.owners import LeaseOwners
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService
from engine.wiring.background import Background
from engine.wiring.campaigns import contacts_service
from engine.wiring.listen import named_bind
from engine.wiring.outbox import Outbox
from engine.wiring.routes import privacy_routes, report_routes, webhook_routes

log = get_logger("engine.app")


@dataclass(frozen=True)
class Api:
    app: web.Application
    forwarder: Forwarder
    port: int


@dataclass(frozen=True)
class Domains:
    """What the API serves."""

    calls: CallService
    trunks: TrunkService
    acd: AcdService
    campaigns: CampaignService
    recordings: RecordingService


async def serve_api(
    cfg: EngineConfig,
    pg: PgStore,
    redis: RedisStore,
    outbox: Outbox,
    domains: Domains,
    *,
    ownership: Ownership | None,
    metrics: Metrics,
    health: Callable[[], Awaitable[dict[str, Any]]],
    reload: Callable[[], Awaitable[dict[str, Any]]],
    data_dir: Path,
    background: Background,
    stack: AsyncExitStack,
    closing: Callable[[], bool],
    built: Callable[[Forwarder, web.Application], None],
    ivr_flows: Callable[[], Collection[str] | None] | None = None,
) -> Api:
    """``built`` is told the forwarder and the app as soon as they exist, before the
    listener starts. ``ivr_flows``: the IVR flow names loaded now (a call sent to another is
    refused, 400 ``unknown-flow``)."""
    client, prefix = redis.client, cfg.storage.redis_prefix
    timeout = cfg.calls.storage_timeout_s
    calls, trunks, acd, campaigns = domains.calls, domains.trunks, domains.acd, domains.campaigns
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
            held=ownership.owns if ownership is not None else local.__contains__,
        ),
        directory,
        timeout_s=cfg.api.forward_timeout_s,
        ssl_context=peer_context(cfg.resolve(cfg.api.tls_cert)) if cfg.api.tls else None,
        count=lambda result: metrics.api_forwarded.labels(result).inc(),
        seal=hops,
    )
    stack.push_async_callback(forwarder.close)
    app = build_app(
        forwarder=forwarder,
        engines=directory.instances,
        ivr_flows=ivr_flows,
        calls=calls,
        outbox_unwritable=outbox.unwritable,
        outbox_dir=outbox.directory,
        cdrs=CdrReader(outbox.cdr_repo, outbox.cdrs),
        stream=outbox.stream,
        metrics_registry=metrics,
        health_check=health,
        tokens=[t.get_secret_value() for t in cfg.api.tokens],
        trunks=trunks,
        reload=reload,
        acd=acd,
        campaigns=campaigns,
        contacts=contacts_service(cfg, pg, stack),
        recordings=domains.recordings,
        auth=Auth(
            TokenAuthority(
                [t.get_secret_value() for t in cfg.api.tokens],
                TokenRepository(pg.pool, timeout_s=timeout),
                ttl_s=cfg.api.token_cache_ttl_s,
                default_rate=(cfg.api.rate_per_s, cfg.api.rate_burst),
                bootstrap_rate_per_s=cfg.api.bootstrap_rate_per_s,
            ),
            Tickets(client, prefix, ttl_s=cfg.api.ticket_ttl_s),
            hops=hops,
        ),
        audit=AuditTrail(outbox.audit),
        audit_log=outbox.audit_log,
        extra_routes=[
            webhook_routes(outbox.webhook_store, outbox.dispatcher),
            privacy_routes(cfg, pg, data_dir, domains.recordings),
            report_routes(cfg, pg),
        ],
    )
    built(forwarder, app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    ssl_context = (
        server_context(
            cfg.resolve(cfg.api.tls_cert), cfg.resolve(cfg.api.tls_key), cfg.api.tls_min_version
        )
        if cfg.api.tls
        else None
    )
    site = web.TCPSite(runner, cfg.api.host, cfg.api.port, ssl_context=ssl_context)
    with named_bind("[api] bind", cfg.api.bind):
        await site.start()
    # aiohttp has no public accessor for the bound port (needed for port 0).
    sockets = getattr(site._server, "sockets", None) or []
    port = int(sockets[0].getsockname()[1]) if sockets else cfg.api.port
    address = advertised_address(cfg.api, port)
    try:
        await directory.publish(address)
        await directory.load_peer_key()
    except StoreError as err:
        log.warning("API address not published yet; the heartbeat retries", error=str(err))
    background.consume(directory.run(address, closing), "engine-address")
    # At a clean stop peers stop forwarding here at once (not a TTL later).
    stack.push_async_callback(directory.withdraw)
    return Api(app, forwarder, port)
