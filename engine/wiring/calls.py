"""Call control: the live-call registry, its mirror in Redis, the calls service, and the
restart recovery (agents, waiting callers and live calls as they were)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.acd.restore import FinishedReader
from engine.acd.service import AcdService
from engine.calls.mirror import EndedCalls, RegistryMirror
from engine.calls.ownership import EverySwitch
from engine.calls.service import CallService
from engine.calls.settings import CallSettings
from engine.calls.sweep import Limits
from engine.cluster.ownership import Ownership
from engine.config import EngineConfig
from engine.pbx.base import PbxDriver
from engine.store.outbox import Journal
from engine.store.redis.client import RedisStore
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService
from engine.wiring.outbox import Outbox

log = get_logger("engine.app")

#: The ACD's read of its live state at start: tried this many times, this far apart.
RESTORE_TRIES = 3
RESTORE_RETRY_S = 1.0


@dataclass(frozen=True)
class Calls:
    service: CallService
    mirror: RegistryMirror


def build_calls(
    cfg: EngineConfig,
    redis: RedisStore,
    outbox: Outbox,
    drivers: dict[str, PbxDriver],
    trunks: TrunkService,
    ownership: Ownership | None,
    metrics: Metrics,
) -> Calls:
    client, prefix = redis.client, cfg.storage.redis_prefix
    timeout = cfg.calls.storage_timeout_s
    registry = CallRegistry(client, prefix, rounds=outbox.rounds)
    mirror = RegistryMirror(
        registry,
        EndedCalls(client, prefix),
        metrics,
        ttl_s=cfg.calls.registry_ttl_s,
        refresh_s=cfg.calls.registry_refresh_s,
        timeout_s=timeout,
        round_s=cfg.storage.write_round_s,
        # New calls and state changes, kept until a round carried them to
        # Redis: a crash before that round loses no call (docs/durability.md).
        journal=(registry_journal := Journal(outbox.directory, "registry")),
    )
    outbox.other_journals.append(registry_journal)
    calls = CallService(
        drivers=drivers,
        registry=registry,
        mirror=mirror,
        events=outbox.events,
        idempotency=IdempotencyStore(client, prefix, ttl_s=cfg.api.idempotency_ttl_s),
        cdrs=outbox.cdrs,
        metrics=metrics,
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
    # New calls get 503 storage-unavailable while the outbox's disk refuses writes.
    calls.outbox_unwritable = outbox.unwritable
    return Calls(calls, mirror)


async def recover(calls: CallService, acd: AcdService, finished: FinishedReader) -> None:
    """After the leases' first turn and before the drivers connect."""
    # Agents and waiting callers as they were; their legs are confirmed
    # (or ended) on each switch's first resync. A Redis timeout on this read (a starved
    # host) is tried again: nothing waits on it yet (no switch connected, no API), and
    # given up on, agents start logged out and the callers waiting at the restart are
    # never offered. Bounded: a Redis gone for good must not hold the start.
    await acd.restore(tries=RESTORE_TRIES, retry_s=RESTORE_RETRY_S)
    # The queues' KPI windows (per-minute sums of finished entries): the live KPIs go on from them.
    await acd.restore_finished(finished)
    # Calls that were live when the engine last stopped (or crashed):
    # tracked again before the drivers connect, so their first resync
    # decides whether each is still up (adopted) or gone (interrupted).
    try:
        await calls.adopt()
    except Exception as err:
        # Not given up on: ``CallService.adopt_unread`` (a background task) adopts them
        # once Redis answers, and the switch's channel list decides then.
        log.error(
            "could not load the live-call registry; its calls are adopted once redis answers",
            error=str(err),
        )
