"""Storage failures answer 503 ``storage-unavailable`` with Retry-After, never 500.

The app is built with real stores that cannot work: a Redis client pointed at
a port nobody listens on, an asyncpg pool that is closed, and a Redis pool
whose only connection is taken (pool exhaustion, as in the 1,000-originate
burst of issue 8).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from aiohttp import web

from engine.api.app import build_app
from engine.api.errors import storage_failure
from engine.calls.cdr import CdrReader, CdrWriter
from engine.calls.mirror import EndedCalls, RegistryMirror
from engine.calls.service import CallService
from engine.store.errors import StoreError, StoreUnavailable
from engine.store.outbox import Journal, Lane, Record
from engine.store.pg.cdr import CdrRepository
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.store.redis.stream import EventStream
from engine.telemetry.metrics import Metrics
from tests.api.openapi_check import check, response_headers
from tests.harness import TOKEN


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting is refused


@asynccontextmanager
async def serve(client: aioredis.Redis, pool: asyncpg.Pool, tmp: Path) -> AsyncIterator[str]:
    prefix = f"dead:{uuid.uuid4().hex[:8]}:"
    metrics = Metrics()
    repo = CdrRepository(pool)
    writer = CdrWriter(repo)
    registry = CallRegistry(client, prefix)
    stream = EventStream(client, prefix)

    async def publish(records: Sequence[Record]) -> None:
        for record in records:
            await stream.publish(record.payload)

    calls = CallService(
        drivers={},
        registry=registry,
        mirror=RegistryMirror(registry, EndedCalls(client, prefix), metrics, timeout_s=1),
        events=Lane(Journal(tmp / "outbox", "events"), publish, metrics, timeout_s=1),
        idempotency=IdempotencyStore(client, prefix, ttl_s=60),
        cdrs=writer,
        metrics=metrics,
    )

    async def health() -> dict[str, object]:
        return {"switches": {}, "storage": {"postgres": False, "redis": False}}

    app = build_app(
        calls=calls,
        cdrs=CdrReader(repo, writer),
        stream=stream,
        metrics_registry=metrics,
        health_check=health,
        tokens=[TOKEN],
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.fixture
async def closed_pool(pg_dsn: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(pg_dsn, min_size=0, max_size=1)
    await pool.close()
    return pool


@pytest.fixture
async def dead_storage(closed_pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[str]:
    client = aioredis.Redis(port=dead_port(), socket_connect_timeout=1, socket_timeout=1)
    try:
        async with serve(client, closed_pool, tmp_path) as base:
            yield base
    finally:
        await client.aclose()


@pytest.fixture
async def exhausted_redis(
    redis_url: str, closed_pool: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[str]:
    pool = aioredis.ConnectionPool.from_url(redis_url, max_connections=1)
    client = aioredis.Redis(connection_pool=pool)
    # redis.asyncio.ConnectionPool.get_connection has no annotations (redis 8.1).
    held = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        async with serve(client, closed_pool, tmp_path) as base:
            yield base
    finally:
        await pool.release(held)
        await client.aclose()


async def get(base: str, path: str) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}) as r,
    ):
        return r.status, await r.json(), r


CALL = str(uuid.uuid4())
STORAGE_ROUTES = [
    ("/calls", "/v1/calls"),
    (f"/calls/{CALL}", "/v1/calls/{call_id}"),
    ("/cdrs?limit=5", "/v1/cdrs"),
    (f"/cdrs?call_id={CALL}", "/v1/cdrs"),
]


@pytest.mark.parametrize(("path", "spec"), STORAGE_ROUTES)
async def test_storage_outage_is_503_with_retry_after(
    dead_storage: str, path: str, spec: str
) -> None:
    status, body, resp = await get(dead_storage, path)
    assert (status, body["error_id"]) == (503, "storage-unavailable"), body
    assert int(resp.headers["Retry-After"]) >= 1
    check(spec, "get", 503, body)
    assert "Retry-After" in response_headers(spec, "get", 503)
    # The client learns where to look in the log, not the DSN or the trace.
    assert set(body["details"]) == {"ref"}


@pytest.mark.parametrize(("path", "spec"), STORAGE_ROUTES[:2])
async def test_redis_pool_exhaustion_is_503(exhausted_redis: str, path: str, spec: str) -> None:
    status, body, resp = await get(exhausted_redis, path)
    assert (status, body["error_id"]) == (503, "storage-unavailable"), body
    assert int(resp.headers["Retry-After"]) >= 1


async def test_readiness_is_503_and_liveness_200_without_storage(dead_storage: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(dead_storage + "/health/ready") as r:
            body = await r.json()
            assert (r.status, body["status"]) == (503, "not-ready")
            check("/v1/health/ready", "get", 503, body)
        async with http.get(dead_storage + "/health/live") as r:
            assert (r.status, await r.json()) == (200, {"status": "alive"})


@pytest.mark.parametrize(
    "err",
    [
        redis.exceptions.ConnectionError("Too many connections"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.InterfaceError("pool is closed"),
        TimeoutError(),
        ConnectionRefusedError(111, "refused"),
    ],
)
def test_raw_driver_errors_count_as_storage_unavailable(err: BaseException) -> None:
    # A store call that forgot to translate must still not become a 500.
    assert isinstance(storage_failure(err), StoreUnavailable)


def test_other_errors_are_not_storage_failures() -> None:
    assert storage_failure(ValueError("bug")) is None
    assert storage_failure(KeyError("x")) is None
    translated = storage_failure(asyncpg.exceptions.UndefinedTableError("no table"))
    assert isinstance(translated, StoreError)
    assert not isinstance(translated, StoreUnavailable)
