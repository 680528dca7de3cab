"""Several engines (docs/architecture.md "Several engines"): membership, the switch and
queue leases, their fences in PostgreSQL, and the recovery run for a lease taken over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from engine.acd.service import AcdService
from engine.calls.cdr import CdrWriter
from engine.calls.service import CallService
from engine.cluster.membership import Membership
from engine.cluster.ownership import Ownership, Timing
from engine.cluster.policy import placement
from engine.cluster.takeover import LeaseTakeover
from engine.config import EngineConfig
from engine.pbx.base import LinkState, LiveChannel
from engine.store.pg.fences import Fences
from engine.store.pg.pool import PgStore
from engine.store.redis.locks import Leases
from engine.telemetry.logging import get_logger

log = get_logger("engine.app")


def build_ownership(cfg: EngineConfig, client: Any, timeout: float) -> Ownership:
    """Membership and the switch and queue leases (docs/architecture.md "Several engines").
    Campaign leases are taken by their runners, under the same policy."""
    ttl = cfg.cluster.lease_ttl_s
    timing = Timing(
        ttl_s=ttl,
        margin_s=ttl / 5,
        timeout_s=min(timeout, ttl / 4),
        handback_after_s=2 * ttl,
        grace_s=ttl,
    )
    me, prefix = cfg.engine.instance, cfg.storage.redis_prefix
    return Ownership(
        Leases(client, prefix, me),
        Membership(client, prefix, me, ttl_ms=timing.ttl_ms, timeout_s=timing.timeout_s),
        [f"switch:{sw.name}" for sw in cfg.switches] + [f"queue:{q.name}" for q in cfg.queues],
        timing=timing,
        placement=placement(cfg.cluster.placement, [sw.name for sw in cfg.switches]),
    )


async def take_leases(
    cfg: EngineConfig,
    ownership: Ownership,
    pg: PgStore,
    calls: CallService,
    acd: AcdService,
    cdrs: CdrWriter,
    taking_over: set[str],
    closing: Callable[[], bool],
) -> None:
    """The first turn of the lease loop, before any call is adopted: a lone engine takes
    them all at once (one turn); with several, the switches this one owns decide which
    registry calls it adopts."""
    timeout = cfg.calls.storage_timeout_s
    fences = Fences(pg.pool, namespace=cfg.storage.redis_prefix, timeout_s=timeout)
    await ownership.turn()
    for name, token in ownership.held().items():
        if name.startswith("switch:"):
            await show_fence(ownership, fences, name, token)
    follow_leases(ownership, calls, acd, fences, taking_over, closing)
    # CDRs carry their switch lease's token; PostgreSQL refuses a stale one.
    cdrs.fence(
        lambda switch: ownership.last_token(f"switch:{switch}"),
        lambda lease, token: ownership.stale(lease, token, "PostgreSQL refused a CDR"),
    )


async def show_fence(ownership: Ownership, fences: Fences, name: str, token: int) -> bool:
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


def follow_leases(
    ownership: Ownership,
    calls: CallService,
    acd: AcdService,
    fences: Fences,
    taking_over: set[str],
    closing: Callable[[], bool],
) -> None:
    """After the first turn, leases taken over run the restart recovery, one takeover at a
    time (engine/cluster/takeover.py): each switch's fence is raised and its registry
    calls adopted (its channel list decides), then, if queues came too, the ACD is rebuilt
    from Redis and confirmed against the owned switches' channels. A switch lost is left
    at once."""

    async def fence(name: str, token: int) -> bool:
        return await show_fence(ownership, fences, name, token)

    takeover = LeaseTakeover(
        show_fence=fence,
        take_switch=calls.take_switch,
        drop_switch=calls.drop_switch,
        take_queues=acd.take_over,
        confirm_queues=acd.confirm,
        owned_channels=lambda: _owned_channels(calls),
        pending=taking_over,
    )

    def acquired(name: str, token: int) -> None:
        if not closing():
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


async def _owned_channels(calls: CallService) -> dict[str, list[LiveChannel]]:
    """The channel lists of the switches this engine owns and whose link is up."""
    out: dict[str, list[LiveChannel]] = {}
    for name, driver in calls.drivers.items():
        if calls.gate.owns_switch(name) and driver.state is LinkState.UP:
            out[name] = await asyncio.wait_for(driver.live_calls(), 5.0)
    return out
