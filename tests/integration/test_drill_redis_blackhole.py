"""Redis black-holed: every Redis call is bounded, and call control does not wait on it.

Redis is a private redis-server behind ``tests/storage_proxy.py``; PostgreSQL is the
session's; the switch is the fake carrier AMI (this is about storage, not the switch).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api.keys import STREAM
from engine.store.errors import StoreUnavailable
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.idempotency import IdempotencyStore
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config, event_log, running_engine, stored_cdrs, wait_for
from tests.private_redis import PrivateRedis
from tests.storage_proxy import StorageProxy, Upstream


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    directory = Path(tempfile.mkdtemp(prefix="redis-blackhole-"))
    server = PrivateRedis(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


async def test_a_black_holed_redis_fails_a_command_within_the_socket_timeout(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """A command with no timeout of its own (IdempotencyStore.claim) is bounded by
    the client's socket timeout, which is the storage timeout's 5 s by default
    (it was 30 s: one Idempotency-Key request held for half a minute)."""
    async with StorageProxy(Upstream(path=str(private_redis.socket))) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        async with RedisStore(url, tmp_path, prefix="bh:") as store:
            idem = IdempotencyStore(store.client, "bh:")
            assert await idem.claim("before", "v") is None
            await proxy.set_mode("blackhole")
            # 20 s: well above the 5 s default, well below the old 30 s.
            with pytest.raises(StoreUnavailable, match="Timeout reading"):
                await asyncio.wait_for(idem.claim("during", "v"), 20)
            assert proxy.accepted == 1, "a timed-out command is not retried on a new connection"
            await proxy.set_mode("pass")
            assert await idem.claim("after", "v") is None  # the client recovers by itself


async def test_a_restarted_redis_costs_no_failed_command(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Redis restarted: the pooled connection is dead. The next command reconnects
    and succeeds (one retry on a connection error) instead of failing once per
    pooled connection."""
    async with RedisStore(private_redis.url, tmp_path, prefix="rs:") as store:
        idem = IdempotencyStore(store.client, "rs:")
        assert await idem.claim("before", "v") is None
        private_redis.restart()
        assert await idem.claim("after", "v") is None


async def test_a_black_holed_redis_does_not_stall_call_control(
    private_redis: PrivateRedis, pg_dsn: str, pg_store: PgStore, tmp_path: Path
) -> None:
    async with (
        CarrierFakeAmi() as ami,
        StorageProxy(Upstream(path=str(private_redis.socket))) as proxy,
    ):
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            prefix=f"bh:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path / "engine",
            ami_port=ami.port,
            agi_bind_port=0,
            extra="[calls]\nregistry_refresh_s = 1\nstorage_timeout_s = 1\n",
        )
        async with running_engine(cfg) as (engine, client), event_log(client) as log:
            await proxy.set_mode("blackhole")
            call = await client.originate("2001")  # busy: a handful of events, then ended
            call_id = call["call_id"]
            final = await client.wait_state(call_id, "ended")
            assert proxy.mode == "blackhole"
            assert (final["cause"], final["sip_code"]) == (17, 486)
            # The CDR does not depend on Redis at all.
            rows = await stored_cdrs(pg_store.pool, call_id)
            assert [r.cause for r in rows] == [17]
            assert engine.event_lane is not None and engine.event_lane.journal.depth > 0

            await proxy.set_mode("pass")

            # The events accepted meanwhile are published, in order, once each.
            def states() -> list[str]:
                return [
                    m["event"]["state"]
                    for m in log
                    if m.get("event", {}).get("call_id") == call_id
                    and m["event"]["type"] == "CallStateChanged"
                ]

            await wait_for(
                lambda: "ended" in states(), what="the call's events after Redis is back"
            )
            assert states()[0] == "created" and states().count("ended") == 1
            seqs = [m["seq"] for m in log if "seq" in m]
            assert seqs == sorted(set(seqs))
            # And the registry mirror caught up: the ended call is kept in Redis.
            assert engine.redis is not None
            redis = engine.redis.client
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not await redis.exists(f"{cfg.storage.redis_prefix}ended:{call_id}"):
                assert loop.time() < deadline, "the registry mirror never wrote the ended call"
                await asyncio.sleep(0.05)
            status, body, _ = await client.request("GET", "/calls")
            assert (status, body) == (200, {"calls": []})


async def test_an_event_batch_cut_short_by_redis_is_not_published_twice(
    private_redis: PrivateRedis, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis fails in the middle of a batch of events: the events before the
    failure were published and must not be published again (with new seqs)."""
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=private_redis.url,
            prefix=f"cut:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path / "engine",
            ami_port=ami.port,
            agi_bind_port=0,
        )
        async with running_engine(cfg) as (engine, _client):
            assert engine.app is not None and engine.event_lane is not None
            stream = engine.app[STREAM]
            lane = engine.event_lane
            assert await lane.wait_drained(10)
            start = await stream.last_seq()
            real = stream.publish
            published = 0

            async def flaky(event: Any) -> int:
                nonlocal published
                published += 1
                if published == 3:
                    raise StoreUnavailable("redis unavailable while publishing an event: reset")
                return await real(event)

            monkeypatch.setattr(stream, "publish", flaky)
            for n in range(6):
                lane.put({"type": "DrillProbe", "n": n})  # one batch: the lane has not run
            assert await lane.wait_drained(10)
            entries = await stream.read_after(start, count=100)
    probes = [e["n"] for _seq, e in entries if e.get("type") == "DrillProbe"]
    assert probes == [0, 1, 2, 3, 4, 5]
