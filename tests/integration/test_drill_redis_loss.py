"""Fault drill 3 on the real Asterisk sandbox: Redis restarted with its data lost, mid-traffic.

The engine runs against a redis-server this test owns (no persistence: a restart loses
every key), the session's PostgreSQL and the real Asterisk sandbox. Traffic: short calls
before the loss, long calls (7XXX: answered, ~12 s of audio) that span it, short calls in
flight when it happens, and short calls after it. Checked:

- calls go on: every call ends normally (answered ones with cause 16, busy ones 17) and
  has exactly one CDR;
- the registry is rebuilt: the live calls are in the Redis registry again (the registry
  mirror re-writes them every ``[calls] registry_refresh_s``, 1 s here), and leave it,
  and ``GET /v1/calls``, once they ended;
- the event sequence continues upward, and a WebSocket client that resumes from before
  the loss gets a ``gap`` notice naming the first sequence it can still have.

The event half alone, with the fake carrier, is tests/integration/test_stream_redis_loss.py.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine.api.keys import STREAM
from engine.store.pg.pool import PgStore
from engine.store.redis.registry import CallRegistry
from tests.drill_report import report_drill
from tests.harness import Client, engine_config, event_log, running_engine, wait_for
from tests.integration import sandbox
from tests.private_redis import PrivateRedis

pytestmark = pytest.mark.asterisk

REFRESH_S = 1


@asynccontextmanager
async def _closing(client: aioredis.Redis) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    directory = Path(tempfile.mkdtemp(prefix="drill3-redis-"))
    server = PrivateRedis(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


async def _listed(client: Client) -> set[str] | None:
    """Call ids ``GET /v1/calls`` lists, or None while it cannot answer."""
    status, body, _ = await client.request("GET", "/calls")
    if status != 200:
        return None
    return {c["call_id"] for c in body["calls"]}


async def _ended(client: Client, number: str) -> dict[str, Any]:
    call = await client.originate(number, timeout_s=10)
    return await client.wait_state(call["call_id"], "ended", timeout_s=60)


async def _registered(registry: CallRegistry) -> set[str] | None:
    """Call ids in the Redis registry, or None while Redis does not answer."""
    try:
        return {row["call_id"] for row in await registry.all()}
    except (RedisError, OSError):
        return None


def _seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if "seq" in m]


async def test_redis_restarted_with_its_data_lost_mid_traffic(
    private_redis: PrivateRedis, pg_dsn: str, pg_store: PgStore, tmp_path: Path
) -> None:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    loop = asyncio.get_running_loop()
    prefix = f"drill3:{uuid.uuid4().hex[:8]}:"
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=private_redis.url,
        prefix=prefix,
        data_dir=tmp_path / "engine",
        agi_bind_port=0,
        extra=f"[calls]\nregistry_refresh_s = {REFRESH_S}\n",
    )
    redis_client = aioredis.from_url(private_redis.url, socket_timeout=2, decode_responses=True)
    registry = CallRegistry(redis_client, prefix)
    async with (
        running_engine(cfg) as (engine, client),
        event_log(client) as live,
        _closing(redis_client),
    ):
        assert engine.app is not None
        stream = engine.app[STREAM]

        # Before: short calls end; long calls are up and listed.
        before = list(await asyncio.gather(_ended(client, "1001"), _ended(client, "2002")))
        long_calls = [await client.originate(f"700{i}", timeout_s=10) for i in range(4)]
        long_ids = {c["call_id"] for c in long_calls}
        for call in long_calls:
            await client.wait_state(call["call_id"], "answered", timeout_s=30)
        await wait_for_listed(client, long_ids, what="the long calls listed before the loss")
        last_before = await stream.last_seq()
        await wait_for(lambda: last_before in _seqs(live), what="the connected client to catch up")
        seen_before = _seqs(live)

        # The loss, with short calls in flight.
        in_flight = [await client.originate(n, timeout_s=10) for n in ("1003", "2004", "1005")]
        for call in in_flight:  # on the switch already: the loss is mid-call for them
            await _wait_placed(client, call["call_id"])
        last_pre_loss = await stream.last_seq()
        private_redis.restart()  # no persistence: every key is gone
        lost_at = loop.time()

        # The registry is rebuilt by the mirror's refresh. Read it in Redis itself:
        # GET /v1/calls answers this engine's own calls from memory, so it would list
        # them whether or not the registry came back.
        rebuilt_after: float | None = None
        deadline = lost_at + 10 * REFRESH_S + 10
        while rebuilt_after is None:
            in_redis = await _registered(registry)
            if in_redis is not None and in_redis >= long_ids:
                rebuilt_after = loop.time() - lost_at
                break
            assert loop.time() < deadline, f"the registry holds {in_redis}, not {long_ids}"
            await asyncio.sleep(0.05)

        # Calls go on: those in flight end, new ones are placed and end.
        during = [await client.wait_state(c["call_id"], "ended", timeout_s=60) for c in in_flight]
        after = list(await asyncio.gather(_ended(client, "1006"), _ended(client, "2007")))
        finals = [*before, *during, *after]
        for call in long_calls:
            finals.append(await client.wait_state(call["call_id"], "ended", timeout_s=60))

        for final in finals:
            busy = final["to"].startswith("2")
            assert (final["cause"], final["answered_at"] is None) == (
                (17, True) if busy else (16, False)
            ), final
            assert final["interrupted"] is False

        # Ended calls leave the rebuilt registry, in Redis and in the API.
        await wait_for_listed(client, set(), what="an empty call list once every call ended")
        ended = {f["call_id"] for f in finals}
        loop_deadline = loop.time() + 10 * REFRESH_S + 10
        while (in_redis := await _registered(registry)) is None or in_redis & ended:
            assert loop.time() < loop_deadline, f"ended calls still registered: {in_redis}"
            await asyncio.sleep(0.05)

        # The sequence went on upward; the connected client saw every call end.
        ids = {f["call_id"] for f in finals}
        await wait_for(
            lambda: (
                ids
                <= {
                    m["event"]["call_id"]
                    for m in live
                    if m.get("event", {}).get("type") == "CallStateChanged"
                    and m["event"]["state"] == "ended"
                }
            ),
            what="every call's ended event on the WebSocket",
        )
        assert _seqs(live) == sorted(set(_seqs(live))), "the sequence went back or repeated"
        # The connected client was told of the jump, right before the first event after it.
        gaps = [(i, m["gap"]) for i, m in enumerate(live) if "gap" in m]
        assert gaps, "no gap notice on the connected client"
        index, gap = gaps[0]
        assert live[index + 1]["seq"] == gap["oldest"] > last_pre_loss
        assert gap["since"] == live[index - 1]["seq"]

        # A client resuming from before the loss is told the first seq it can have.
        oldest = await stream.oldest_seq()
        assert oldest is not None and oldest > last_before
        since = seen_before[len(seen_before) // 2]
        async with event_log(client, since=since) as resumed:
            await wait_for(lambda: len(resumed) >= 2, what="the resumed client's first messages")
        assert resumed[0] == {"gap": {"since": since, "oldest": oldest, "reason": "not-retained"}}
        assert resumed[1]["seq"] == oldest

    # Exactly one CDR per call, in PostgreSQL.
    rows = await pg_store.pool.fetch(
        "SELECT call_id, attempt, cause FROM cdr WHERE call_id = ANY($1::text[])",
        sorted(ids),
        timeout=5,
    )
    by_call: dict[str, list[int]] = {}
    for row in rows:
        by_call.setdefault(row["call_id"], []).append(row["attempt"])
    assert by_call == {cid: [1] for cid in ids}
    report_drill(
        "3-redis-loss",
        "3: Redis restarted with its data lost, mid-traffic",
        {
            "calls_placed": len(ids),
            "calls_live_across_the_loss": len(long_ids) + len(during),
            "cdrs_written": len(rows),
            "cdrs_lost": len(ids) - len(by_call),
            "seconds_to_rebuild_registry": round(rebuilt_after, 2),
            "registry_refresh_s": REFRESH_S,
            "last_seq_before_loss": gap["since"],
            "first_seq_after_loss": gap["oldest"],
        },
    )


async def wait_for_listed(client: Client, ids: set[str], *, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (listed := await _listed(client)) != ids:
        assert loop.time() < deadline, f"timed out waiting for {what}: listed {listed}"
        await asyncio.sleep(0.05)


async def _wait_placed(client: Client, call_id: str) -> None:
    """Until the switch has the call (the engine has seen its channel)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        status, body, _ = await client.request("GET", f"/calls/{call_id}")
        assert status == 200, body
        if body["channel"]:
            return
        assert loop.time() < deadline, f"call {call_id} never reached the switch: {body}"
        await asyncio.sleep(0.05)
