"""Takeover time when the owner of a switch is SIGKILLed (issue 15).

Two engine processes (``python -m engine run``, the config of
tests/integration/test_drill_leases.py: ``[cluster] enabled``, ``lease_ttl_s = 2``) share
PostgreSQL and Redis on the fake FreeSWITCH (tests/fakes/fake_esl.py, in this process, which
outlives them as a real switch would). Each round: the switch's lease settles on its preferred
engine (a restarted engine gets it handed back after the policy's hysteresis), the owner places
CALLS answered calls, and is SIGKILLed. Measured from the signal, on this process's monotonic
clock:

- ``lease_s``: until Redis names the other engine as the holder of ``switch:freeswitch-1``;
- ``adopted_s``: until the new owner serves every call itself (``X-Engine-Served-By``) as
  answered, i.e. it took them from the registry and its channel list confirmed them.

Then the calls are hung up through the new owner and each must end with exactly one CDR
(``lost``: a call not ended or without a CDR; ``duplicated``: more than one CDR, or a number
the switch was asked to originate more than once). The killed engine is restarted, so two stay
live. Needs the machine's PostgreSQL and Redis: ``ENGINE_TEST_PG_DSN`` and
``ENGINE_TEST_REDIS_URL`` (or ``ENGINE_PG_DSN``/``ENGINE_REDIS_URL``). Prints figures and
writes reports/takeover.json; asserts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np
import redis.asyncio as aioredis

from engine.api.forward import SERVED_BY_HEADER
from engine.cluster.policy import preferred
from engine.store.redis.locks import Leases
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.integration.engine_process import EngineProcess
from tests.integration.test_drill_leases import ENGINES, LEASE, SWITCH, TTL_S, _config

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 10
CALLS = 3
DIALLED = re.compile(r"sofia/gateway/[^/ ]+/(\d+)")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def _until(check: Any, what: str, timeout_s: float, step_s: float = 0.02) -> float:
    """Poll ``check()`` until true; the monotonic time it first was."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(step_s)
    return time.monotonic()


def _summary(values: list[float]) -> dict[str, float]:
    a = np.array(values)
    return {
        "p50_s": round(float(np.percentile(a, 50)), 3),
        "max_s": round(float(a.max()), 3),
        "min_s": round(float(a.min()), 3),
    }


async def _round(
    n: int,
    http: aiohttp.ClientSession,
    procs: dict[str, EngineProcess],
    leases: Leases,
    pool: asyncpg.Pool,
    fs: FakeFreeSwitch,
) -> dict[str, Any]:
    owner_name = preferred(SWITCH, ENGINES)
    assert owner_name is not None
    survivor_name = next(e for e in ENGINES if e != owner_name)
    owner, survivor = procs[owner_name], procs[survivor_name]

    async def held_by(name: str) -> bool:
        h = await leases.holder(LEASE)
        return h is not None and h.owner == name

    # The restarted preferred engine gets the switch back after the hand-back hysteresis.
    await _until(lambda: held_by(owner_name), "the switch on its preferred engine", 60, 0.1)
    c_owner, c_survivor = owner.client(http), survivor.client(http)
    calls: list[str] = []
    for i in range(CALLS):
        body = {"to": f"69{n:01d}{i:02d}", "trunk": "carrier", "switch": SWITCH}
        status, call, _ = await c_owner.request("POST", "/calls", json=body)
        if status != 201:
            raise RuntimeError(f"originate refused: {status} {call}")
        calls.append(call["call_id"])
    for call_id in calls:
        await c_owner.wait_state(call_id, "answered")
    assert owner.proc is not None
    t0 = time.monotonic()
    owner.kill()
    t_lease = await _until(lambda: held_by(survivor_name), "the takeover", 4 * TTL_S + 10)

    async def adopted() -> bool:
        for call_id in calls:
            status, view, reply = await c_survivor.request("GET", f"/calls/{call_id}")
            served = reply.headers.get(SERVED_BY_HEADER, survivor_name)
            if status != 200 or view.get("state") != "answered" or served != survivor_name:
                return False
        return True

    t_adopt = await _until(adopted, "the calls adopted", 30)
    for call_id in calls:
        await c_survivor.request("DELETE", f"/calls/{call_id}")
    ended = 0
    for call_id in calls:
        with contextlib.suppress(AssertionError):  # counted as lost below
            await c_survivor.wait_state(call_id, "ended", timeout_s=15)
            ended += 1
    cdrs: dict[str, int] = {}
    for call_id in calls:

        async def written(call_id: str = call_id) -> bool:
            sql = "SELECT count(*) FROM cdr WHERE call_id = $1"
            cdrs[call_id] = int(await pool.fetchval(sql, call_id, timeout=10))
            return cdrs[call_id] >= 1

        with contextlib.suppress(TimeoutError):  # counted as lost below
            await _until(written, "a CDR", 20, 0.1)
    await owner.start()  # two live again for the next round
    return {
        "killed": owner_name,
        "lease_s": round(t_lease - t0, 3),
        "adopted_s": round(t_adopt - t0, 3),
        "calls": len(calls),
        "ended": ended,
        "lost": sum(1 for c in calls if cdrs.get(c, 0) == 0) + (len(calls) - ended),
        "duplicated_cdrs": sum(1 for c in calls if cdrs.get(c, 0) > 1),
        "load": _loadavg(),
    }


async def _measure(work: Path, pg_dsn: str, redis_url: str) -> dict[str, Any]:
    prefix = f"bench-takeover:{uuid.uuid4().hex[:8]}:"
    client = aioredis.from_url(redis_url, decode_responses=True)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    procs: dict[str, EngineProcess] = {}
    rounds: list[dict[str, Any]] = []
    try:
        async with CarrierFakeAmi() as ami, FakeFreeSwitch() as fs, aiohttp.ClientSession() as http:
            for name in ENGINES:
                procs[name] = _config(work, name, pg_dsn, redis_url, prefix, ami.port, fs)
            await asyncio.gather(*(p.start() for p in procs.values()))
            leases = Leases(client, prefix, "bench-observer")
            for n in range(ROUNDS):
                r = await _round(n, http, procs, leases, pool, fs)
                print(f"round {n + 1}: {r}")
                rounds.append(r)
            numbers = Counter(
                m.group(1) for c in fs.received if "originate" in c and (m := DIALLED.search(c))
            )
    finally:
        for p in procs.values():
            p.stop()
        await pool.close()
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return {
        "what": (
            f"{ROUNDS} SIGKILLs of the switch's owner, {CALLS} answered calls up each time, "
            f"lease_ttl_s {TTL_S}; from the signal to Redis naming the new holder (lease) "
            "and to the new owner serving every call as answered (adopted)"
        ),
        "cores": os.cpu_count(),
        "lease": _summary([r["lease_s"] for r in rounds]),
        "adopted": _summary([r["adopted_s"] for r in rounds]),
        "lost": sum(r["lost"] for r in rounds),
        "duplicated": sum(r["duplicated_cdrs"] for r in rounds)
        + sum(1 for k in numbers.values() if k > 1),
        "rounds": rounds,
    }


def run() -> dict[str, Any]:
    pg_dsn = os.environ.get("ENGINE_TEST_PG_DSN", "") or os.environ.get("ENGINE_PG_DSN", "")
    redis_url = os.environ.get("ENGINE_TEST_REDIS_URL", "") or os.environ.get(
        "ENGINE_REDIS_URL", ""
    )
    if not pg_dsn or not redis_url:
        result: dict[str, Any] = {"skipped": "needs ENGINE_TEST_PG_DSN and ENGINE_TEST_REDIS_URL"}
        print(f"takeover: {result['skipped']}")
        return result
    # Each engine's config names its storage; ENGINE_PG_DSN would override it.
    os.environ.pop("ENGINE_PG_DSN", None)
    os.environ.pop("ENGINE_REDIS_URL", None)
    work = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    work.chmod(0o711)
    try:
        result = asyncio.run(_measure(work, pg_dsn, redis_url))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = _loadavg()
    out = ROOT / "reports" / "takeover.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    lease, adopted = result["lease"], result["adopted"]
    print(
        f"takeover over {ROUNDS} SIGKILLs (TTL {TTL_S} s): Redis names the new holder "
        f"p50 {lease['p50_s']} s, max {lease['max_s']} s; calls adopted p50 "
        f"{adopted['p50_s']} s, max {adopted['max_s']} s; lost {result['lost']}, "
        f"duplicated {result['duplicated']} (load {result['load_after']})"
    )
    return result


if __name__ == "__main__":
    run()
