"""Webhook delivery latency at 100 events/s, and the receiver-outage drill.

The engine runs as its own process (``python -m engine run``, default ``[webhooks]``
settings) against the fake carrier (the recorded Asterisk 22 transcripts; every call is a
busy callee, so each call makes one CDR and one ``call.ended`` webhook), with PostgreSQL and
Redis from ``ENGINE_PG_DSN`` / ``ENGINE_REDIS_URL`` (a fresh database, dropped afterwards)
or the engine's embedded servers. This process places calls open-loop at 100/s through the
API and runs the receiver, which verifies every signature with the snippet of
docs/security.md.

Latency of one event: the receiver's arrival time minus the call's ``ended_at`` in its CDR
(the moment the event came to be), both on this machine's wall clock.

0. pipeline: the webhook path alone, in this process (taps -> ``webhooks`` lane -> PostgreSQL
   -> dispatcher -> receiver), 100 synthetic CDRs/s for 30 s; latency from the tap;
1. steady: 5 s warm-up, then 30 s measured at 100 events/s;
2. drill: load goes on at 100/s; the receiver is down (connections refused) for 60 s, comes
   back, load goes on 20 s more, then stops; figures: events accepted during the outage, time
   from the receiver's return until the backlog was delivered, lost and duplicated events.

    python -m bench.webhooks        # writes reports/webhooks.json
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from engine.store.outbox import Journal, Lane
from engine.store.pg.admin import create_database, drop_database
from engine.store.pg.pool import PgStore
from engine.telemetry.metrics import Metrics
from engine.webhooks import signing
from engine.webhooks.service import Dispatcher, DispatchSettings, WebhookTaps, ingest_sink
from engine.webhooks.store import WebhookStore
from scripts.fuzz_api import FuzzCarrier
from tests.harness import TOKEN, engine_config_text
from tests.integration.engine_process import EngineProcess, free_port
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
RATE = 100.0
WARMUP_S = 5.0
MEASURE_S = 30.0
DOWN_S = 60.0
AFTER_S = 20.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Load:
    """Open-loop originates: one every 1/RATE s on schedule, whatever earlier ones did."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self._http = http
        self._base = base
        self.placed: dict[str, float] = {}  # call id -> when placed (wall)
        self.refused = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self) -> None:
        body = {"to": "2000", "trunk": "self-trunk", "timeout_s": 6}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with self._http.post(f"{self._base}/calls", json=body, headers=headers) as r:
                data = await r.json()
                if r.status == 201:
                    self.placed[data["call_id"]] = time.time()
                else:
                    self.refused += 1
        except aiohttp.ClientError:
            self.refused += 1

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while (due := start + n / RATE) < start + seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            task = asyncio.create_task(self._one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            n += 1
        if self._tasks:
            await asyncio.wait(self._tasks)


def _latencies(receiver: Receiver, calls: set[str]) -> list[float]:
    first: dict[str, float] = {}
    for r in receiver.received:
        cdr = r.data["cdr"]
        if cdr["call_id"] in calls and r.event_id not in first:
            ended = datetime.fromisoformat(cdr["ended_at"]).timestamp()
            first[r.event_id] = (r.at - ended) * 1000
    return list(first.values())


async def _until(predicate: Any, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def _measure(work: Path, pg_dsn: str, redis_url: str) -> dict[str, Any]:
    receiver = Receiver()
    await receiver.start()
    async with FuzzCarrier() as ami, aiohttp.ClientSession() as http:
        port = free_port()
        config = work / "engine.toml"
        config.write_text(
            engine_config_text(
                pg_dsn=pg_dsn,
                redis_url=redis_url,
                prefix=f"benchwh:{uuid.uuid4().hex[:8]}:",
                data_dir=work / "engine",
                ami_port=ami.port,
                agi_bind_port=free_port(),
                api_port=port,
            ).replace('level = "warning"', 'level = "error"')
        )
        proc = EngineProcess(config, port, work / "engine.log")
        await proc.start()
        try:
            base = f"http://127.0.0.1:{port}/v1"
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(
                f"{base}/webhooks",
                json={"url": receiver.url, "event_types": ["call.ended"]},
                headers=headers,
            ) as r:
                sub = await r.json()
                assert r.status == 201, sub
            receiver.secret = sub["secret"]

            # 1. steady
            warm = Load(http, base)
            await warm.run(WARMUP_S)
            steady = Load(http, base)
            await steady.run(MEASURE_S)
            calls = set(steady.placed)
            await _until(lambda: calls <= _received_calls(receiver), 60)
            steady_ms = _latencies(receiver, calls)
            stages = await _stages(pg_dsn, calls) if pg_dsn else {}

            # 2. drill
            drill = Load(http, base)
            loader = asyncio.create_task(drill.run(DOWN_S + AFTER_S))
            await receiver.stop()
            down_at = time.time()
            await asyncio.sleep(DOWN_S)
            during = {c for c, t in drill.placed.items() if t >= down_at}
            await receiver.start()
            up_at = time.time()
            await loader
            everything = set(drill.placed)
            caught_up = await _until(lambda: everything <= _received_calls(receiver), 900)
            arrivals = [r.at for r in receiver.received if r.data["cdr"]["call_id"] in during]
            drained_s = max(arrivals) - up_at if arrivals else float("nan")
            drill_ms = _latencies(receiver, everything)
            lost = len(everything - _received_calls(receiver))
        finally:
            proc.stop()
            await receiver.stop()
    ids = [r.event_id for r in receiver.received]
    return {
        "what": "call ends (CDR ended_at) -> signed call.ended webhook at the receiver",
        "rate_per_s": RATE,
        "steady": {
            "events": len(steady_ms),
            "p50_ms": round(_pct(steady_ms, 0.50), 1),
            "p99_ms": round(_pct(steady_ms, 0.99), 1),
            "max_ms": round(max(steady_ms), 1) if steady_ms else None,
            "refused_originates": steady.refused,
            "stages_p50_p99_ms": stages,
        },
        "outage_drill": {
            "receiver_down_s": DOWN_S,
            "events_total": len(everything),
            "events_during_outage": len(during),
            "all_delivered": caught_up,
            "lost": lost,
            "duplicates": len(ids) - len(set(ids)),
            "backlog_drained_s_after_receiver_back": round(drained_s, 1),
            "p50_ms": round(_pct(drill_ms, 0.50), 1),
            "p99_ms": round(_pct(drill_ms, 0.99), 1),
            "max_ms": round(max(drill_ms), 1) if drill_ms else None,
        },
        "bad_signatures": receiver.bad_signatures,
        "settings": "default [webhooks]: timeout 10 s, backoff 1 s doubling to 600 s, jitter",
    }


async def _stages(dsn: str, calls: set[str]) -> dict[str, list[float]]:
    """Where the time goes, from the outbox tables: accepted (tap) -> stored in PostgreSQL
    (ingest lane) -> delivery acknowledged (claim, POST, update)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM ev.stored_at - ev.occurred_at) * 1000 AS ingest, "
            "extract(epoch FROM d.delivered_at - ev.stored_at) * 1000 AS send "
            "FROM webhook_events ev JOIN webhook_deliveries d USING (event_id) "
            "WHERE ev.payload->'cdr'->>'call_id' = ANY($1::text[])",
            list(calls),
        )
    finally:
        await conn.close()
    out = {}
    for stage in ("ingest", "send"):
        values = [float(r[stage]) for r in rows if r[stage] is not None]
        out[stage] = [round(_pct(values, 0.5), 1), round(_pct(values, 0.99), 1)]
    return out


def _received_calls(receiver: Receiver) -> set[str]:
    return {r.data["cdr"]["call_id"] for r in receiver.received}


async def _pipeline(work: Path, pg_dsn: str) -> dict[str, Any]:
    """The webhook path without the call engine: what the webhook code itself costs."""
    metrics = Metrics()
    receiver = Receiver()
    await receiver.start()
    async with PgStore(pg_dsn, work / "unused-pg") as pg:
        store = WebhookStore(pg.pool)
        sub = await store.create(
            url=receiver.url,
            event_types=["call.ended"],
            secret=signing.new_secret(),
            description="bench",
            max_attempts=12,
            created_by="bench",
        )
        receiver.secret = await pg.pool.fetchval(
            "SELECT secret FROM webhook_subscriptions WHERE subscription_id = $1",
            sub.subscription_id,
        )
        dispatcher = Dispatcher(store, DispatchSettings())
        lane = Lane(
            Journal(work / "outbox", "webhooks"),
            ingest_sink(store, dispatcher.wake),
            metrics,
            min_interval_s=0.05,  # the engine's pace for this lane (EVENT_ROUND_S)
        )
        lane.open()
        taps = WebhookTaps(lane)
        tasks = [asyncio.create_task(lane.run()), asyncio.create_task(dispatcher.run())]
        loop = asyncio.get_running_loop()
        put_at: dict[str, float] = {}
        start = loop.time()
        n = 0
        while (due := start + n / RATE) < start + MEASURE_S:
            await asyncio.sleep(max(0.0, due - loop.time()))
            call_id = f"bench-{n}"
            put_at[call_id] = time.time()
            taps.on_cdr({"cdr": {"call_id": call_id, "attempt": 1}})
            n += 1
        await _until(lambda: set(put_at) <= _received_calls(receiver), 120)
        dispatcher.close()
        lane.close()
        await asyncio.wait(tasks, timeout=10)
        lane.journal.close()
    await receiver.stop()
    ms = [
        (r.at - put_at[r.data["cdr"]["call_id"]]) * 1000
        for r in receiver.received
        if r.data["cdr"]["call_id"] in put_at
    ]
    return {
        "events": len(ms),
        "p50_ms": round(_pct(ms, 0.50), 1),
        "p99_ms": round(_pct(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
    }


async def _main(work: Path) -> dict[str, Any]:
    # Taken out of the environment: the engine process would inherit them, and
    # ENGINE_PG_DSN overrides its config (engine/config.py), so it would use the server's
    # maintenance database instead of the fresh one made here.
    server = os.environ.pop("ENGINE_PG_DSN", "")
    redis_url = os.environ.pop("ENGINE_REDIS_URL", "")
    name = f"bench_wh_{uuid.uuid4().hex[:10]}"
    try:
        if server:
            dsn = await create_database(server, name)
            try:
                async with PgStore(dsn, work / "unused-pg"):
                    pass  # migrations
                pipeline = await _pipeline(work, dsn)
            finally:
                await drop_database(server, name)
            dsn = await create_database(server, name)
            try:
                result = await _measure(work, dsn, redis_url)
            finally:
                await drop_database(server, name)
            return {"pipeline_only": pipeline, **result}
        return await _measure(work, "", redis_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    work.chmod(0o711)  # the embedded PostgreSQL runs as another user
    result = asyncio.run(_main(work))
    out = ROOT / "reports" / "webhooks.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
