"""Outbound campaigns (docs/campaigns.md) and the contacts import behind them."""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AsyncExitStack

from engine.acd.service import AcdService
from engine.calls.service import CallService
from engine.campaigns.adapters import CampaignLeases, DriverChannels
from engine.campaigns.contacts.service import ContactsService
from engine.campaigns.hopper import Hopper
from engine.campaigns.runner import RunnerDeps
from engine.campaigns.service import CampaignService
from engine.campaigns.store import CampaignStore
from engine.cluster.ownership import Ownership
from engine.config import EngineConfig
from engine.core import clock
from engine.pbx.base import Amd, DialplanTarget, PbxDriver
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.locks import Leases
from engine.telemetry.logging import get_logger
from engine.trunks.service import TrunkService
from engine.trunks.translate import translate
from engine.wiring.outbox import Outbox

log = get_logger("engine.app")


async def build_campaigns(
    cfg: EngineConfig,
    pg: PgStore,
    redis: RedisStore,
    outbox: Outbox,
    calls: CallService,
    acd: AcdService,
    trunks: TrunkService,
    drivers: dict[str, PbxDriver],
    ownership: Ownership | None,
    ivr_flows: Callable[[], Collection[str] | None] | None = None,
) -> CampaignService:
    """The campaign service, with the campaigns engine.toml configures created."""
    client, prefix = redis.client, cfg.storage.redis_prefix
    timeout = cfg.calls.storage_timeout_s
    campaign_lane = outbox.campaigns
    campaign_store = CampaignStore(pg.pool, timeout_s=timeout)

    async def campaigns_settle() -> bool:
        return await campaign_lane.wait_drained(max(10.0, 4 * timeout))

    campaigns = CampaignService(
        RunnerDeps(
            store=campaign_store,
            hopper=Hopper(pg.pool, timeout_s=timeout),
            calls=calls,
            acd=acd,
            switches=DriverChannels(drivers),
            leases=CampaignLeases(
                Leases(client, prefix, cfg.engine.instance),
                ttl_ms=round(cfg.cluster.lease_ttl_s * 1000),
                margin_ms=round(cfg.cluster.lease_ttl_s * 200),
                timeout_s=timeout,
                policy=ownership,
            ),
            records=campaign_lane,
            events=outbox.events,
            translate=lambda group, phone: translate(trunks.fleet.groups[group], phone),
            # Amd(): app_amd in [engine-amd] on Asterisk (the same context as before), the
            # unicast tap and the engine's detector on FreeSWITCH (docs/amd.md).
            amd_then=Amd,
            safe_harbour=lambda switch: _safe_harbour_target(drivers, switch),
            clock=clock.now,
            trunk_groups={g.name for g in cfg.trunk_groups},
            ivr_flows=ivr_flows,
            settle=campaigns_settle,
            blocked=lambda group: _dial_blocker(calls, trunks, group),
        ),
        # Another engine live: stand by for the campaigns it runs (their leases).
        standby=lambda: ownership is not None and len(ownership.live()) > 1,
    )
    try:
        await campaigns.seed(list(cfg.campaigns))
    except Exception as err:
        # Not given up on: the campaigns' task creates them once storage answers.
        log.error(
            "could not create the configured campaigns yet; retried once storage answers",
            error=str(err),
        )
        campaigns.seed_later(list(cfg.campaigns))
    return campaigns


def contacts_service(cfg: EngineConfig, pg: PgStore, stack: AsyncExitStack) -> ContactsService:
    # One parsing process (started on the first import): big uploads do not take the
    # event loop's core, and one core stays for PostgreSQL.
    service = ContactsService(pg.pool, timeout_s=cfg.calls.storage_timeout_s, workers=1)
    stack.callback(service.close)
    return service


def _dial_blocker(calls: CallService, trunks: TrunkService, group: str) -> str | None:
    """Why a campaign cannot dial through ``group`` now (None: it can). A switch whose link is
    not up (connecting, or still syncing after a restart) or that another engine commands
    could place nothing: the calls service would refuse the originate (cause 38, never
    placed), so the runner waits instead (docs/campaigns.md "Waiting for the switch")."""
    if calls.draining:
        return "the engine is shutting down"
    foreign = frozenset(n for n in calls.drivers if not calls.gate.owns_switch(n))
    return trunks.unusable(group, skip_switches=foreign)


def _safe_harbour_target(drivers: dict[str, PbxDriver], switch: str) -> DialplanTarget:
    """Where a campaign's safe-harbour message is played: [engine-safe-harbour] on Asterisk,
    the engine_safe_harbour extension of the `default` context on FreeSWITCH (docs/freeswitch.md
    has the dialplan include)."""
    driver = drivers.get(switch)
    if driver is not None and driver.kind == "freeswitch":
        return DialplanTarget("default", "engine_safe_harbour", 1)
    return DialplanTarget("engine-safe-harbour", "s", 1)
