"""The wallboard in a real browser at 500 agents, 50 queues and 200 events/s: time per update.

The whole engine runs in this process (real PostgreSQL and Redis from ``ENGINE_TEST_PG_DSN`` /
``ENGINE_PG_DSN`` and ``ENGINE_TEST_REDIS_URL`` / ``ENGINE_REDIS_URL``, a fresh database dropped
afterwards; the switch is the fake AMI carrier), configured with 500 agents and 50 queues.
Debian's chromium (Playwright) opens ``/wallboard`` and signs in with a supervisor token.

The load is synthetic events put on the engine's event lane, the path every event takes
(journal -> Redis Stream -> the WebSocket fan-out -> the page): agents cycling through
available / ringing / on call / wrap-up / paused with their call and queue, callers entering,
being answered or abandoning, and each queue's ``QueueStats``, open-loop at 200 events/s.
The engine's own ACD is not driving them (it would need 500 phones): what is measured is the
page, not the ACD.

Figures (from ``window.wallboard.metrics``, measured by the page with ``performance.now()``):

- time per update: one animation frame's batch (apply the events to the model and write the
  rows they touched), p50 / p95 / p99 / max, and the events per batch;
- the per-second clock tick (times in state, longest waits) of 500 agents;
- event -> DOM: the engine's event timestamp to the page's DOM write, agent changes;
- events sent, events the page applied, sequence holes (must be 0).

    python -m bench.wallboard            # writes reports/wallboard.json
    python -m bench.wallboard --seconds 10 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

from engine.api.events_ws import EVENT_SOCKETS
from engine.app import Engine
from engine.store.pg.admin import create_database, drop_database
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import Client, engine_config, running_engine

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
AGENTS = 500
QUEUES = 50
RATE = 200.0
WARMUP_S = 3.0
MEASURE_S = 30.0


def board_config(agents: int, queues: int, extra: str = "") -> str:
    """``[[agents]]`` and ``[[queues]]`` for the rig: queue ``qNN`` needs skill ``sNN``; each
    agent has two skills, so each queue is served by about ``2 * agents / queues`` agents."""
    parts = ["[acd]", 'pause_reasons = ["break", "lunch", "training", "meeting"]']
    for i in range(agents):
        a, b = i % queues, (i * 7 + 3) % queues
        skills = ", ".join(f"s{q:02d} = {5 + (i + q) % 5}" for q in sorted({a, b}))
        parts += [
            "[[agents]]",
            f'id = "a{i:03d}"',
            f'name = "{NAMES[i % len(NAMES)]} {i:03d}"',
            f'endpoints = {{ asterisk-1 = "PJSIP/agent{i}" }}',
            f"skills = {{ {skills} }}",
        ]
    for q in range(queues):
        parts += [
            "[[queues]]",
            f'name = "{QUEUE_NAMES[q % len(QUEUE_NAMES)]}-{q:02d}"',
            f"skills = {{ s{q:02d} = 5 }}",
            f"service_level_s = {15 + 5 * (q % 4)}",
        ]
    return "\n".join(parts) + "\n" + extra


NAMES = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Gita", "Hugo", "Ines", "Jun", "Kofi", "Lea"]
QUEUE_NAMES = ["sales", "support", "billing", "retention", "tech", "vip"]


@dataclass
class Rig:
    engine: Engine
    client: Client
    token: str
    agents: list[str]
    queues: list[str]
    base: str


@asynccontextmanager
async def rig(
    agents: int = AGENTS, queues: int = QUEUES, extra: str = "", feed_s: float = 2.0
) -> AsyncIterator[Rig]:
    server = os.environ.get("ENGINE_TEST_PG_DSN") or os.environ.get("ENGINE_PG_DSN")
    redis_url = os.environ.get("ENGINE_TEST_REDIS_URL") or os.environ.get("ENGINE_REDIS_URL")
    if not server or not redis_url:
        raise SystemExit(
            "set ENGINE_TEST_PG_DSN and ENGINE_TEST_REDIS_URL (PostgreSQL server, Redis URL)"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-wallboard-"))
    name = f"bench_wb_{uuid.uuid4().hex[:10]}"
    dsn = await create_database(server, name)
    try:
        async with CarrierFakeAmi() as ami:
            cfg = engine_config(
                pg_dsn=dsn,
                redis_url=redis_url,
                prefix=f"benchwb:{uuid.uuid4().hex[:8]}:",
                data_dir=work / "engine",
                ami_port=ami.port,
                agi_bind_port=0,
                extra=board_config(agents, queues, extra),
            )
            cfg = cfg.model_copy(
                update={"api": cfg.api.model_copy(update={"live_feed_interval_s": feed_s})}
            )
            async with running_engine(cfg) as (engine, client):
                status, body, _ = await client.request(
                    "POST", "/tokens", json={"label": "wallboard bench", "role": "supervisor"}
                )
                assert status == 201, body
                assert engine.acd is not None
                yield Rig(
                    engine,
                    client,
                    body["token"],
                    engine.acd.agent_ids(),
                    sorted(engine.acd.queues),
                    f"http://127.0.0.1:{engine.api_port}",
                )
    finally:
        await drop_database(server, name)
        shutil.rmtree(work, ignore_errors=True)


@asynccontextmanager
async def signed_in_page(r: Rig, width: int = 1600, height: int = 1000) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser: Browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.goto(f"{r.base}/wallboard")
            await page.fill("#token", r.token)
            await page.click("#login-button")
            await page.wait_for_function(
                f"() => window.wallboard && window.wallboard.connected() && "
                f"document.querySelectorAll('.agent').length === {len(r.agents)}",
                timeout=60_000,
            )
            yield page
        finally:
            await browser.close()


# ------------------------------------------------------------------ synthetic load

# An agent's day: mostly calls (ringing -> on call -> wrap-up -> available), some pauses.
NEXT = {
    "logged_out": ["paused"],
    "paused": ["available", "available", "available", "paused", "logged_out"],
    "available": ["reserved"] * 8 + ["paused"],
    "reserved": ["on_call"] * 9 + ["available"],
    "on_call": ["wrap_up"],
    "wrap_up": ["available"] * 5 + ["paused"],
}


@dataclass
class Load:
    """A synthetic contact centre whose events are plausible in sequence: an agent's next state
    follows its current one, a caller is answered or abandons only after entering."""

    agents: list[str]
    queues: list[str]
    rng: random.Random = field(default_factory=lambda: random.Random(14))
    state: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    sent: int = 0

    def next_event(self, now: float) -> dict[str, Any]:
        self.sent += 1
        roll = self.rng.random()
        if roll < 0.6:
            return self._agent(now)
        if roll < 0.95:
            return self._caller(now)
        return self._queue_stats(now)

    def _agent(self, now: float) -> dict[str, Any]:
        agent = self.rng.choice(self.agents)
        before = self.state.get(agent, "logged_out")
        after = self.rng.choice(NEXT[before])
        self.state[agent] = after
        queue = self.rng.choice(self.queues) if after in ("reserved", "on_call") else None
        return {
            "type": "AgentStateChanged",
            "ts": now,
            "agent_id": agent,
            "state": after,
            "previous": before,
            "pause_reason": self.rng.choice(["break", "lunch", "training"])
            if after == "paused"
            else None,
            "call_id": str(uuid.uuid4()) if queue else None,
            "queue": queue,
            "wrap_up_until": now + 10 if after == "wrap_up" else None,
            "time_in_previous_s": 1.0,
        }

    def _caller(self, now: float) -> dict[str, Any]:
        queue = self.rng.choice(self.queues)
        line = self.waiting.setdefault(queue, [])
        if len(line) < 3 or self.rng.random() < 0.5:
            entry, call = uuid.uuid4().hex, str(uuid.uuid4())
            line.append((entry, call, now))
            return {
                "type": "QueueCallEntered",
                "ts": now,
                "call_id": call,
                "entry_id": entry,
                "queue": queue,
                "priority": 1,
                "tags": [],
                "intent": None,
                "requeued_from": None,
            }
        entry, call, entered = line.pop(0)
        s = self.stats.setdefault(queue, {"answered": 0, "abandoned": 0, "within": 0, "wait": 0.0})
        wait = now - entered
        if self.rng.random() < 0.9:
            s["answered"] += 1
            s["wait"] += wait
            s["within"] += wait <= 20
            return {
                "type": "QueueCallConnected",
                "ts": now,
                "call_id": call,
                "entry_id": entry,
                "queue": queue,
                "agent_id": self.rng.choice(self.agents),
                "agent_call_id": str(uuid.uuid4()),
                "wait_s": round(wait, 3),
            }
        s["abandoned"] += 1
        return {
            "type": "QueueCallAbandoned",
            "ts": now,
            "call_id": call,
            "entry_id": entry,
            "queue": queue,
            "while": "waiting",
            "wait_s": round(wait, 3),
            "offers": 0,
        }

    def _queue_stats(self, now: float) -> dict[str, Any]:
        queue = self.rng.choice(self.queues)
        s = self.stats.get(queue, {"answered": 0, "abandoned": 0, "within": 0, "wait": 0.0})
        counted = s["answered"] + s["abandoned"]
        line = self.waiting.get(queue, [])
        return {
            "type": "QueueStats",
            "ts": now,
            "queue": queue,
            "service_level_s": 20.0,
            "waiting": len(line),
            "longest_wait_s": round(now - line[0][2], 3) if line else 0.0,
            "oldest_waiting_at": line[0][2] if line else None,
            # Not read by the page (it counts agents by their own events).
            "available": 0,
            "staffed": 0,
            "answered": int(s["answered"]),
            "abandoned": int(s["abandoned"]),
            "service_level_pct": round(100 * s["within"] / counted, 3) if counted else None,
            "asa_s": round(s["wait"] / s["answered"], 3) if s["answered"] else None,
            "aht_s": 180.0 + self.rng.random() * 60 if s["answered"] else None,
            "abandon_pct": round(100 * s["abandoned"] / counted, 3) if counted else None,
            "occupancy_pct": None,
        }


async def drive(
    put: Callable[[dict[str, Any]], None], load: Load, rate: float, seconds: float
) -> int:
    """Open loop: events go out on schedule (every 20 ms, rate/50 of them), whatever the page
    does."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    step = 0.02
    per_step = rate * step
    owed = 0.0
    sent = 0
    n = 0
    while loop.time() - start < seconds:
        owed += per_step
        while owed >= 1:
            put(load.next_event(time.time()))
            owed -= 1
            sent += 1
        n += 1
        await asyncio.sleep(max(0.0, start + n * step - loop.time()))
    return sent


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def summarize(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": _pct(values, 0.5),
        "p95": _pct(values, 0.95),
        "p99": _pct(values, 0.99),
        "max": round(max(values), 2) if values else None,
    }


async def measure(rate: float, seconds: float) -> dict[str, Any]:
    async with rig() as r, signed_in_page(r) as page:
        lane = r.engine.event_lane
        assert lane is not None
        load = Load(r.agents, r.queues)
        await drive(lane.put, load, rate, WARMUP_S)
        before = await page.evaluate("window.wallboard.resetMetrics()")
        started = time.monotonic()
        sent = await drive(lane.put, load, rate, seconds)
        elapsed = time.monotonic() - started
        assert await lane.wait_drained(30)
        assert r.engine.app is not None
        head = await r.engine.app[EVENT_SOCKETS].stream.last_seq()
        await page.wait_for_function(
            f"() => window.wallboard.metrics.lastSeq >= {head}", timeout=60_000
        )
        m = await page.evaluate("window.wallboard.metrics")
        sizes = m["batchSizes"]
        return {
            "agents": len(r.agents),
            "queues": len(r.queues),
            "rate_target_per_s": rate,
            "events_sent": sent,
            "rate_sent_per_s": round(sent / elapsed, 1),
            "seconds": round(elapsed, 1),
            "events_applied_by_page": m["events"],
            "stream_events_in_window": head - before,
            "sequence_holes": m["missing"],
            "gaps": m["gaps"],
            "update_ms": summarize(m["updateMs"]),
            "events_per_update": summarize([float(x) for x in sizes]),
            "updates_over_16ms": sum(1 for x in m["updateMs"] if x > 16.7),
            "ms_per_event": round(sum(m["updateMs"]) / max(1, sum(sizes)), 4),
            "clock_tick_ms": summarize(m["tickMs"]),
            "event_to_dom_ms": summarize(m["latencyMs"]),
            # Whole frames over 50 ms (script + style + layout + paint), Chromium's LoAF API.
            "long_frames_ms": m["longFrames"],
        }


def run(rate: float = RATE, seconds: float = MEASURE_S) -> dict[str, Any]:
    result = asyncio.run(measure(rate, seconds))
    out = ROOT / "reports" / "wallboard.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--seconds", type=float, default=MEASURE_S)
    args = parser.parse_args()
    print(json.dumps(run(args.rate, args.seconds), indent=2))
