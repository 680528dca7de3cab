"""What one Prometheus scrape of ``/v1/metrics`` costs the event loop at call-centre size.

``python -m bench.metrics_scrape`` prints the figures as JSON and writes
reports/metrics_scrape.json; ``run()`` returns them (``make bench`` puts them in
reports/bench.json).

The ACD state is built directly (no switch, no storage): 50 queues, 500 agents, every
queue's KPI window full (20,000 finished entries each over the 24 h window, so every minute
bucket is held: the worst case for the windowed KPIs) and 200 callers waiting; plus 50
trunks. Measured, over repeated scrapes:

- ``queue_step_ms``: the longest synchronous step of the queues' prepare (one queue's
  figures): how long the loop is held at a time;
- ``prepare_ms``: the whole prepare (the sum of those steps, with yields between);
- ``render_ms``: ``generate_latest`` after prepare (one synchronous step);
- ``series``: samples in the exposition.

Figures only; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from engine.acd import metrics as acd_metrics
from engine.acd.entries import Entry, Phase
from engine.acd.model import QueueSpec
from engine.acd.state import AcdSettings, AcdState, AgentRecord
from engine.agents.model import AgentConfig, AgentState, AgentStatus
from engine.telemetry.live import Source
from engine.telemetry.metrics import Metrics
from engine.trunks.fleet import Fleet
from engine.trunks.metrics import TrunkMetrics
from engine.trunks.model import TrunkSpec

QUEUES = 50
AGENTS = 500
WAITING = 200
TRUNKS = 50
SCRAPES = 20
FINISHED = 20_000  # per queue, over the whole 24 h window: every minute bucket is held
NOW = 100_000.0


def _state() -> AcdState:
    queues = [QueueSpec(f"q{i:02d}", skills={f"s{i % 10}": 3}) for i in range(QUEUES)]
    s = AcdState(settings=AcdSettings(), queues=queues, kinds={"sw": "asterisk"}, now=lambda: NOW)
    states = list(AgentState)
    for i in range(AGENTS):
        cfg = AgentConfig(id=f"a{i}", name=f"a{i}", skills={f"s{i % 10}": 5, f"s{(i + 3) % 10}": 4})
        st = AgentStatus(agent_id=cfg.id, state=states[i % len(states)], since=NOW - 30)
        s.agents[cfg.id] = AgentRecord(cfg, st)
    n = 0
    for q in queues:
        for k in range(FINISHED):
            n += 1
            start = NOW - 86_000 + k * 4.3
            e = Entry(f"e{n}", f"c{n}", f"l{n}", "sw", q.name, 1, start)
            e.phase = Phase.ENDED
            if k % 10:
                e.outcome, e.answered_at = "answered", start + (k % 40)
                e.talk_s, e.wrap_up_s = 120.0, 10.0
            else:
                e.outcome = "abandoned"
            e.ended_at = start + 200
            s.entry_ended(e)
    for k in range(WAITING):
        n += 1
        e = Entry(f"e{n}", f"c{n}", f"l{n}", "sw", f"q{k % QUEUES:02d}", 1, NOW - k)
        s.entries[e.entry_id] = e
    return s


async def _measure() -> dict[str, Any]:
    state = _state()
    m = Metrics()
    qm = acd_metrics.QueueMetrics(state, 100)
    m.live.add(Source("queues", qm.families, qm.prepare, qm.budget))
    specs = [TrunkSpec(f"t{i}", "sw", f"t{i}", max_channels=30, max_cps=5) for i in range(TRUNKS)]
    fleet = Fleet.build(specs, [])
    tm = TrunkMetrics(lambda: fleet, lambda: 0.0, 100)
    m.live.add(Source("trunks", tm.families, budget=tm.budget))
    steps: list[float] = []
    real = acd_metrics.queue_figures

    def timed(st: AcdState, name: str, now: float) -> Any:
        t0 = time.perf_counter()
        out = real(st, name, now)
        steps.append(time.perf_counter() - t0)
        return out

    acd_metrics.queue_figures = timed  # type: ignore[assignment]
    prepare, render = [], []
    body = b""
    try:
        for _ in range(SCRAPES):
            t0 = time.perf_counter()
            await m.live.prepare()
            t1 = time.perf_counter()
            body = generate_latest(m.registry)
            t2 = time.perf_counter()
            prepare.append(t1 - t0)
            render.append(t2 - t1)
    finally:
        acd_metrics.queue_figures = real
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))

    def ms(xs: list[float]) -> dict[str, float]:
        xs = sorted(xs)
        return {
            "p50": round(1000 * statistics.median(xs), 3),
            "max": round(1000 * xs[-1], 3),
        }

    return {
        "queues": QUEUES,
        "agents": AGENTS,
        "finished_per_queue": FINISHED,
        "waiting": WAITING,
        "trunks": TRUNKS,
        "scrapes": SCRAPES,
        "queue_step_ms": ms(steps),
        "prepare_ms": ms(prepare),
        "render_ms": ms(render),
        "series": series,
        "bytes": len(body),
    }


def run() -> dict[str, Any]:
    return asyncio.run(_measure())


def main() -> None:
    out = run()
    print(json.dumps(out, indent=2))
    path = Path(__file__).resolve().parent.parent / "reports" / "metrics_scrape.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
