"""SIP trunk groups (docs/trunks.md): health, limits and the shared counters."""

from __future__ import annotations

from engine.config import EngineConfig
from engine.pbx.base import PbxDriver
from engine.store.outbox import Lane, LanePublisher
from engine.store.redis.client import RedisStore
from engine.store.redis.rounds import RedisRounds
from engine.store.redis.trunk_admin import TrunkAdmin
from engine.store.redis.trunk_counters import TrunkCounters
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService


async def build_trunks(
    cfg: EngineConfig,
    redis: RedisStore,
    rounds: RedisRounds,
    events: Lane,
    drivers: dict[str, PbxDriver],
    metrics: Metrics,
) -> TrunkService:
    client, prefix = redis.client, cfg.storage.redis_prefix
    trunks = TrunkService(
        [t.to_spec() for t in cfg.trunks],
        [g.to_spec() for g in cfg.trunk_groups],
        metrics=metrics,
        # Trunk and IVR events go through the outbox like call events.
        publish=LanePublisher(events).publish,
        drivers=drivers,
        shared=TrunkCounters(client, prefix, rounds=rounds),
        # Drained trunks, the same for every engine (docs/trunks.md "Several engines").
        admin=TrunkAdmin(client, prefix, timeout_s=cfg.calls.storage_timeout_s),
    )
    await trunks.sync_admin()  # before any call is placed (Redis away: all enabled)
    return trunks
