"""The simulator against Erlang C: one skill, Poisson arrivals, exponential handle times, no
abandonment, agents all day. At each load level the simulated SL and ASA must agree with
:mod:`engine.acd.sim.erlang` within 2 points (SL) and 5 % (ASA).

``python -m engine.acd.sim.erlang_check [--agents N] [--loads 0.5,0.6] [--calls C] [--seeds 11,12]
[--jobs J] [--json reports/acd-erlang-c.json]`` prints the table (default: the five levels of the
unit test, five seeds the test does not use, 200,000 measured calls per seed).

Run length: a pilot on seeds no check uses (2001-2008, 30,000 calls, 2 agents) measured a relative
standard deviation of the ASA of about 6 % per run at loads 0.5-0.7, which scales as
1/sqrt(calls): 200,000 calls give about 2.3 %, one million about 1 %.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.acd.sim import erlang
from engine.acd.sim.routers import DEFAULT_ROUTER, check_router_name, make_router
from engine.acd.sim.scenario import InboundScenario, parse_scenario
from engine.acd.sim.simulator import simulate

SL_TOLERANCE_POINTS = 2.0
ASA_TOLERANCE = 0.05
AHT_S = 180.0
THRESHOLD_S = 20.0
AGENTS = 2
LOADS = (0.5, 0.6, 0.65, 0.7, 0.75)  # occupancy rho = A / N
WARMUP_AHTS = 50  # the queue starts empty; drop the first 50 mean handle times


def scenario(agents: int, rho: float, calls: int, aht_s: float = AHT_S) -> InboundScenario:
    """An M/M/N scenario with about ``calls`` measured arrivals at occupancy ``rho``."""
    per_hour = rho * agents / aht_s * 3600.0
    warmup = WARMUP_AHTS * aht_s
    return parse_scenario(
        {
            "kind": "inbound",
            "name": f"erlang-c-n{agents}-rho{rho}",
            "duration_s": warmup + calls / (per_hour / 3600.0),
            "warmup_s": warmup,
            "service_level_s": THRESHOLD_S,
            "queues": {
                "q": {
                    "skills": {"s": 1},
                    "arrivals": {"poisson_per_hour": per_hour},
                    "handle_s": {"exponential": {"mean": aht_s}},
                }
            },
            "agents": [{"id": "a", "count": agents, "skills": {"s": 1}}],
        },
        f"<erlang-c N={agents} rho={rho}>",
    )


@dataclass(frozen=True)
class Level:
    agents: int
    rho: float
    calls: int
    runs: int
    sl_pct: float
    asa_s: float
    sl_sd: float | None
    """Standard deviation of SL % across seeds (None with one seed)."""
    asa_sd: float | None
    erlang_sl_pct: float
    erlang_asa_s: float

    @property
    def sl_diff(self) -> float:
        return self.sl_pct - self.erlang_sl_pct

    @property
    def asa_rel(self) -> float:
        return self.asa_s / self.erlang_asa_s - 1.0

    @property
    def agrees(self) -> bool:
        return abs(self.sl_diff) <= SL_TOLERANCE_POINTS and abs(self.asa_rel) <= ASA_TOLERANCE

    def as_dict(self) -> dict[str, Any]:
        return {
            "agents": self.agents,
            "rho": self.rho,
            "offered_erlangs": self.rho * self.agents,
            "calls_per_seed": self.calls,
            "seeds": self.runs,
            "sim_sl_pct": self.sl_pct,
            "erlang_sl_pct": self.erlang_sl_pct,
            "sl_diff_points": self.sl_diff,
            "sim_asa_s": self.asa_s,
            "erlang_asa_s": self.erlang_asa_s,
            "asa_diff_pct": 100.0 * self.asa_rel,
            "sl_sd_across_seeds": self.sl_sd,
            "asa_sd_across_seeds": self.asa_sd,
            "agrees": self.agrees,
        }


def _one(job: tuple[int, float, int, int, str]) -> tuple[float, float, int]:
    agents, rho, calls, seed, router = job
    sc = scenario(agents, rho, calls)
    result = simulate(sc, make_router(router, sc, seed), seed)
    k = result.total.kpis()
    if k["unserved"] or k["abandoned"]:
        raise RuntimeError(f"Erlang C run left calls unserved or abandoned: {k}")
    return float(k["sl_pct"]), float(k["asa_s"]), int(k["answered"])


def check(
    agents: int,
    loads: Sequence[float],
    calls: int,
    seeds: Sequence[int],
    *,
    router: str = DEFAULT_ROUTER,
    jobs: int = 1,
) -> list[Level]:
    """One :class:`Level` per load; with several seeds the figures are the mean over seeds (each
    seed the same length, so this is also the mean over calls, up to a few calls)."""
    work = [(agents, rho, calls, seed, router) for rho in loads for seed in seeds]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            out = list(pool.map(_one, work))
    else:
        out = [_one(w) for w in work]
    levels = []
    for i, rho in enumerate(loads):
        rows = out[i * len(seeds) : (i + 1) * len(seeds)]
        sls, asas = [r[0] for r in rows], [r[1] for r in rows]
        load = rho * agents
        levels.append(
            Level(
                agents=agents,
                rho=rho,
                calls=calls,
                runs=len(rows),
                sl_pct=statistics.fmean(sls),
                asa_s=statistics.fmean(asas),
                sl_sd=statistics.stdev(sls) if len(sls) > 1 else None,
                asa_sd=statistics.stdev(asas) if len(asas) > 1 else None,
                erlang_sl_pct=100.0 * erlang.service_level(agents, load, AHT_S, THRESHOLD_S),
                erlang_asa_s=erlang.asa(agents, load, AHT_S),
            )
        )
    return levels


def render(levels: Sequence[Level]) -> str:
    head = (
        f"{'N':>3} {'rho':>5} {'A':>6} {'calls':>9} {'SL sim':>7} {'SL erl':>7} {'diff':>6} "
        f"{'ASA sim':>8} {'ASA erl':>8} {'diff %':>7} {'95% CI ASA %':>12} {'ok':>3}"
    )
    lines = [head, "-" * len(head)]
    for lv in levels:
        ci = "-"
        if lv.asa_sd is not None:
            half = 1.96 * lv.asa_sd / math.sqrt(lv.runs) / lv.erlang_asa_s * 100.0
            ci = f"+/-{half:.2f}"
        lines.append(
            f"{lv.agents:>3} {lv.rho:>5.2f} {lv.rho * lv.agents:>6.2f} {lv.calls * lv.runs:>9} "
            f"{lv.sl_pct:>7.2f} {lv.erlang_sl_pct:>7.2f} {lv.sl_diff:>+6.2f} "
            f"{lv.asa_s:>8.2f} {lv.erlang_asa_s:>8.2f} {100 * lv.asa_rel:>+7.2f} {ci:>12} "
            f"{'yes' if lv.agrees else 'NO':>3}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.acd.sim.erlang_check", description=__doc__
    )
    parser.add_argument("--agents", type=int, default=AGENTS)
    parser.add_argument("--loads", default=",".join(map(str, LOADS)), help="occupancies rho")
    parser.add_argument("--calls", type=int, default=200_000, help="measured calls per seed")
    parser.add_argument("--seeds", default="11,12,13,14,15")
    parser.add_argument("--router", default=DEFAULT_ROUTER, help="a strategy of the ACD router")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--json", dest="json_out", default="")
    args = parser.parse_args(argv)
    try:
        loads = [float(x) for x in args.loads.split(",") if x.strip()]
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        check_router_name(args.router)
        for rho in loads:
            erlang.erlang_c(args.agents, rho * args.agents)
    except ValueError as err:
        print(f"erlang_check: {err}", file=sys.stderr)
        return 2
    levels = check(args.agents, loads, args.calls, seeds, router=args.router, jobs=args.jobs)
    print(
        f"Erlang C check: router {args.router}, AHT {AHT_S:.0f} s exponential, SL threshold "
        f"{THRESHOLD_S:.0f} s, seeds {', '.join(map(str, seeds))}; tolerance "
        f"{SL_TOLERANCE_POINTS:.0f} points SL, {100 * ASA_TOLERANCE:.0f} % ASA"
    )
    print(render(levels))
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": "python -m engine.acd.sim.erlang_check " + " ".join(argv or sys.argv[1:]),
            "router": args.router,
            "aht_s": AHT_S,
            "threshold_s": THRESHOLD_S,
            "seeds": seeds,
            "levels": [lv.as_dict() for lv in levels],
            "all_agree": all(lv.agrees for lv in levels),
        }
        out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0 if all(lv.agrees for lv in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
