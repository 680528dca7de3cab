"""CPU of the trunk service per call, in process: one take, one answered verdict and one
release per call (what an answered group call costs the fleet), on two trunks with no
shared limits, so only the service's own Python is measured (docs/bench-cpu.md, sixth round).

``python -m bench.trunk_service_cpu`` prints process-CPU microseconds per call for five
repeats of 4,000 calls after a warm-up, and their minimum.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import structlog

from engine.telemetry.metrics import Metrics
from engine.trunks.causes import default_policy
from engine.trunks.model import GroupSpec, TrunkSpec
from engine.trunks.planner import AttemptOutcome, Dial
from engine.trunks.service import TrunkService

CALLS = 4000
REPEATS = 5


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def run() -> list[float]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    clock = Clock()
    trunks = [
        TrunkSpec(
            name=name,
            switch="asterisk-1",
            target=name,
            max_channels=1_000_000,
            max_cps=1e9,
            cps_burst=1_000_000,
            priority=i,
        )
        for i, name in enumerate(("a", "b"))
    ]
    group = GroupSpec("g", ("a", "b"), default_policy(), queue_timeout_s=3.0)
    svc = TrunkService(trunks, [group], metrics=Metrics(), now=clock, rng=random.Random(1))

    async def one(call_id: str) -> None:
        clock.t += 0.125  # 8 calls/s
        step = await svc.begin(call_id, "g")
        if not isinstance(step.decision, Dial):
            raise RuntimeError(f"expected a Dial, got {step.decision!r}")
        await svc.result(step.plan, AttemptOutcome(1, answered=True, pdd_s=1.0))
        svc.release(step.decision.trunk, call_id)

    for i in range(2000):
        await one(f"warm-{i}")
    per_call: list[float] = []
    for r in range(REPEATS):
        start = time.process_time()
        for i in range(CALLS):
            await one(f"r{r}-{i}")
        per_call.append((time.process_time() - start) / CALLS * 1e6)
    return per_call


def main() -> None:
    per_call = asyncio.run(run())
    runs = " ".join(f"{us:.1f}" for us in per_call)
    print(f"trunk service us/call (take + verdict + release): {runs}; min {min(per_call):.1f}")


if __name__ == "__main__":
    main()
