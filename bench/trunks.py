"""Trunk decision costs, pure part only (no switch, no I/O).

``python -m bench.trunks`` prints the figures as JSON; ``run()`` returns them.

- ``pick_us``: one :func:`engine.trunks.selection.select` over a 200-trunk group
  in a realistic state (a third of the members full, one in ten down, five
  priority tiers), per policy, p50/p99 in microseconds.
- ``start_us``: :func:`engine.trunks.planner.start`, i.e. the pick plus taking a
  channel and a CPS token (the Fleet copy-on-write included).
- ``failover_us``: from a failure outcome (503) to the next ``Dial`` decision,
  :func:`engine.trunks.planner.on_attempt_result`, for the issue's 3-trunk group
  and for the 200-trunk group. This is the engine-side share of the failover
  time the issue targets (p99 < 50 ms end to end); writing the originate to the
  switch is measured by the driver benchmarks, not here.

Figures only; nothing is asserted.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable

from engine.trunks import planner
from engine.trunks.causes import default_policy
from engine.trunks.fleet import Fleet
from engine.trunks.model import GroupSpec, Selection, TrunkSpec
from engine.trunks.selection import select

NOW = 1000.0
CONGESTED = planner.AttemptOutcome(1, cause=34, sip_code=503, cause_text="Circuit congestion")


def _fleet(n: int, selection: Selection) -> Fleet:
    trunks = [
        TrunkSpec(f"t{i:03d}", "ast1", f"t{i:03d}", 4, 50, cps_burst=50, priority=i % 5)
        for i in range(n)
    ]
    group = GroupSpec("g", tuple(t.name for t in trunks), default_policy(), selection)
    fleet = Fleet.build(trunks, [group])
    for i in range(n):
        name = f"t{i:03d}"
        if i % 3 == 0:
            fleet = fleet.set_in_use(name, 4)  # full
        elif i % 10 == 1:
            fleet = fleet.report(name, "unreachable", NOW - 1)  # down
        else:
            fleet = fleet.set_in_use(name, i % 4)
    return fleet


def _small_fleet() -> Fleet:
    trunks = [
        TrunkSpec(name, "ast1", name, 30, 10, cps_burst=10, priority=p)
        for p, name in enumerate(("congested", "good", "spare"))
    ]
    group = GroupSpec("g", tuple(t.name for t in trunks), default_policy())
    return Fleet.build(trunks, [group])


def _percentiles(fn: Callable[[], object], samples: int) -> dict[str, float]:
    for _ in range(min(200, samples)):  # warm-up
        fn()
    times: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(samples):
        t0 = clock()
        fn()
        times.append((clock() - t0) / 1000.0)
    times.sort()
    return {
        "p50": round(times[len(times) // 2], 2),
        "p99": round(times[int(len(times) * 0.99)], 2),
        "mean": round(statistics.fmean(times), 2),
        "samples": samples,
    }


def run(samples: int = 5000) -> dict[str, object]:
    rng = random.Random(42)
    out: dict[str, object] = {"group_size": 200}
    pick: dict[str, object] = {}
    start: dict[str, object] = {}
    for sel in Selection:
        fleet = _fleet(200, sel)

        # Defs, not lambdas: mypy cannot type a lambda's defaulted parameter. The default
        # binds this iteration's fleet.
        def pick_once(f: Fleet = fleet) -> object:
            return select(f, "g", (), NOW, rng)

        def start_once(f: Fleet = fleet) -> object:
            return planner.start("c", "g", f, NOW, rng)

        pick[sel.value] = _percentiles(pick_once, samples)
        start[sel.value] = _percentiles(start_once, samples)
    out["pick_us"] = pick
    out["start_us"] = start

    failover: dict[str, object] = {}
    for label, fleet in (
        ("3_trunks", _small_fleet()),
        ("200_trunks", _fleet(200, Selection.PRIORITY)),
    ):
        first = planner.start("c", "g", fleet, NOW, rng)
        assert isinstance(first.decision, planner.Dial)  # setup check, not a speed assertion

        def failover_once(s: planner.Step = first) -> object:
            return planner.on_attempt_result(s.plan, CONGESTED, s.fleet, NOW + 0.1, rng)

        failover[label] = _percentiles(failover_once, samples)
    out["failover_us"] = failover
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
