"""ACD offer latency: from a caller entering a queue with an agent free to the
agent's Originate (the INVITE to the phone) arriving at the switch.

Two processes:
- the AMI peer of bench.api_latency (recorded Login and Originate replies from
  the real Asterisk 22, a plain Success for Setvar/Redirect), which stamps each
  Originate with ``time.monotonic()`` and its ChannelId when it reads it;
- this process: the real AsteriskDriver, the real CallService (through which
  the ACD places agent legs) and the real AcdService. Storage is not in the
  path by design (the service never waits on it): the events lane journals to
  a temp dir, the Redis mirrors are never flushed.

Per sample: one agent is made available, an answered caller enters the queue
(``AcdService.enter``, stamped before the call), the ACD holds it with music
(Setvar + Redirect) and rings the agent (Originate). CLOCK_MONOTONIC is
system-wide on Linux, so the two processes' stamps compare.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from engine.acd.history import AcdHistory
from engine.acd.model import QueueSpec
from engine.acd.service import AcdService, AcdSettings
from engine.agents.model import AgentConfig
from engine.calls.cdr import CdrWriter
from engine.calls.mirror import EndedCalls, RegistryMirror
from engine.calls.model import Call, CallState
from engine.calls.service import CallService
from engine.pbx.asterisk.driver import AsteriskDriver
from engine.pbx.base import HungUp, LinkState
from engine.store.outbox import Journal, Lane
from engine.store.pg.cdr import CdrRepository
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 2000
AGENTS = 50


class _Null:
    def put(self, kind: str, ident: str, value: Any) -> None:
        pass


async def _noop(records: Any) -> None:
    pass


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _measure(port: int, tmp: Path) -> tuple[dict[str, float], list[str]]:
    driver = AsteriskDriver("bench", "127.0.0.1", port, "engine", "enginesecret")
    await driver.start()
    deadline = time.monotonic() + 30
    # The driver has no "up" event to wait on outside its event stream; poll briefly.
    while driver.state is not LinkState.UP:
        if time.monotonic() > deadline:
            raise RuntimeError(f"AMI link not up: {driver.state}")
        await asyncio.sleep(0.01)
    metrics = Metrics()
    redis = aioredis.Redis()  # never connected: nothing on the measured path awaits Redis
    registry = CallRegistry(redis, "bench:")
    events = Lane(Journal(tmp, "events"), _noop, metrics)
    events.open()
    lane_task = asyncio.create_task(events.run())
    calls = CallService(
        drivers={"bench": driver},
        registry=registry,
        mirror=RegistryMirror(registry, EndedCalls(redis, "bench:"), metrics),
        events=events,
        idempotency=IdempotencyStore(redis, "bench:"),
        cdrs=CdrWriter(CdrRepository(None)),  # no call ends here
        metrics=metrics,
    )
    agents = [
        AgentConfig(f"a{i}", f"a{i}", endpoints={"bench": f"PJSIP/agent{i}"}, skills={"sales": 5})
        for i in range(AGENTS)
    ]
    history: list[dict[str, Any]] = []

    class _Sink:
        def put(self, payload: dict[str, Any]) -> None:
            history.append(payload)

    acd = AcdService(
        agents=agents,
        queues=[QueueSpec("sales", skills={"sales": 1}, ring_timeout_s=15)],
        settings=AcdSettings(),
        calls=calls,
        drivers={"bench": driver},
        events=events,
        history=AcdHistory(_Sink()),
        mirror=_Null(),
    )
    consume = asyncio.create_task(calls.consume(driver))
    for a in agents:
        acd.login(a.id)
        acd.ready(a.id)
    started: dict[str, float] = {}
    legs: list[str] = []
    for n in range(SAMPLES):
        caller = f"caller-{n}"
        # An answered caller, as CallService tracks a carrier call (the bench
        # peer places no real caller).
        calls._live.put(Call(caller, "bench", CallState.ANSWERED, "0100", {}, time.time()))
        t0 = time.monotonic()
        entry = await acd.enter(caller, queue="sales")
        await acd.settle()
        for offer in entry.offers.values():
            if offer.leg is not None:
                legs.append(offer.leg)
                started[offer.leg] = t0
        # No phones here: the caller hangs up, the offer is withdrawn, the agent freed.
        acd.handle(HungUp(switch="bench", call_id=caller, ts=time.time(), cause=16))
        await acd.settle()
    consume.cancel()
    calls.close()
    events.close()
    lane_task.cancel()
    await driver.stop()
    return started, legs


def run() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-acd-"))
    port_file, stamps_file = tmp / "port", tmp / "stamps.json"
    peer = subprocess.Popen(
        [sys.executable, "-m", "bench.api_latency", "--peer", str(port_file), str(stamps_file)],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("bench AMI peer did not start")
            time.sleep(0.05)
        started, legs = asyncio.run(_measure(int(port_file.read_text()), tmp))
    finally:
        peer.terminate()
        peer.wait(10)
    stamps = dict(json.loads(stamps_file.read_text()))
    ms = [(stamps[leg] - started[leg]) * 1000 for leg in legs if leg in stamps]
    return {
        "what": "caller enters a queue with an agent free -> agent Originate read by the switch",
        "samples": len(ms),
        "p50_ms": round(_pct(ms, 0.50), 3),
        "p99_ms": round(_pct(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "target_p99_ms": 20.0,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
