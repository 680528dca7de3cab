"""A trunk drained through one engine is drained on every engine, and stays drained on one
that starts later (a takeover, a restart): the admin state is shared in Redis
(engine/store/redis/trunk_admin.py, ``TrunkService.set_admin`` and ``sync_admin``)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.store.errors import StoreUnavailable
from engine.store.redis.client import RedisStore
from engine.store.redis.trunk_admin import TrunkAdmin
from engine.telemetry.metrics import Metrics
from engine.trunks.errors import TrunksUnavailable
from engine.trunks.model import TrunkSpec
from engine.trunks.service import TrunkService


def engine(admin: Any) -> TrunkService:
    trunks = [
        TrunkSpec(name=n, switch="sw-1", target=n, max_channels=5, max_cps=100.0)
        for n in ("carrier-1", "carrier-2")
    ]
    return TrunkService(trunks, [], metrics=Metrics(), admin=admin)


def admin_states(svc: TrunkService) -> dict[str, str]:
    return {v["name"]: v["admin"] for v in svc.views()}


async def test_a_drain_through_one_engine_holds_on_every_engine(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    a = engine(TrunkAdmin(redis_store.client, redis_prefix))
    b = engine(TrunkAdmin(redis_store.client, redis_prefix))
    assert (await a.set_admin("carrier-1", drained=True))["admin"] == "drained"
    # B places no call on it once it has read the shared state (its loop does every second).
    await b.sync_admin()
    assert admin_states(b) == {"carrier-1": "drained", "carrier-2": "enabled"}
    with pytest.raises(TrunksUnavailable):
        await b.admit("c1", b.group_for(trunk="carrier-1"))
    # An engine that starts later (takes the switch over, or restarts) starts drained.
    late = engine(TrunkAdmin(redis_store.client, redis_prefix))
    await late.sync_admin()
    assert admin_states(late)["carrier-1"] == "drained"
    # Enabled through another engine: everyone follows.
    await b.set_admin("carrier-1", drained=False)
    for svc in (a, late):
        await svc.sync_admin()
        assert admin_states(svc)["carrier-1"] == "enabled"
    # Another deployment (prefix) on the same Redis is not touched.
    other = engine(TrunkAdmin(redis_store.client, f"x{redis_prefix}"))
    await a.set_admin("carrier-2", drained=True)
    await other.sync_admin()
    assert admin_states(other)["carrier-2"] == "enabled"
    await redis_store.client.delete(f"x{redis_prefix}trunks:drained")


class Away:
    async def set_drained(self, trunk: str, drained: bool) -> None:
        raise StoreUnavailable("redis unavailable while draining a trunk")

    async def drained(self) -> set[str]:
        raise StoreUnavailable("redis unavailable while reading the drained trunks")


async def test_storage_away_changes_nothing_anywhere() -> None:
    """A drain that could not be shared is not applied here either (one answer for the
    whole deployment: 503 storage-unavailable), and a failed read keeps the states."""
    svc = engine(Away())
    svc.drain("carrier-2")  # as it stood before Redis went away
    with pytest.raises(StoreUnavailable):
        await svc.set_admin("carrier-1", drained=True)
    await svc.sync_admin()
    assert admin_states(svc) == {"carrier-1": "enabled", "carrier-2": "drained"}
