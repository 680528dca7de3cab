"""CPU of answered calls in process, through the engine's real app: ``Engine``
(real PostgreSQL and Redis, the bench's middlewares, admission through a trunk,
journals, lanes, registry) and its Asterisk driver talking to the fake carrier AMI
(tests/fakes/carrier_ami.py, which answers each Originate with the recorded answered
call), driven by an aiohttp client placing ``POST /v1/calls`` (docs/bench-cpu.md,
ninth round).

The fake AMI runs on its own event loop in a thread, and its thread's CPU is taken
out of the figure; it sends only the events the engine's ``EVENT_FILTERS`` let
through, as Asterisk does. The client's requests run on the engine's loop and are
counted, so compare the figure only with itself (before/after a change, same machine,
same settings). ``python -m bench.originate_cpu`` prints the CPU per call (us) of
five repeats of 300 calls (10 in flight) after a warm-up, and their median;
``--rate 8 --calls 80`` places them open loop at 8/s instead.
``--profile out.prof`` runs the last repeat under cProfile.

Storage: ``ENGINE_TEST_PG_DSN``/``ENGINE_TEST_REDIS_URL`` (as the tests), local
defaults otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import uvloop

from engine.app import tune_gc
from engine.pbx.asterisk.events import EVENT_FILTERS
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_ami import Segment
from tests.harness import engine_config, running_engine

CALLS = 300
REPEATS = 5
IN_FLIGHT = 10
PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"


def _passes(block: bytes) -> bool:
    """What an Asterisk session with the engine's include filters would send."""
    if not block.startswith(b"Event: "):
        return True
    lines = block.decode().split("\r\n")
    name = lines[0][7:]
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return any(
        f.name == name and (not f.header or headers.get(f.header) == f.value) for f in EVENT_FILTERS
    )


class FilteredCarrier(CarrierFakeAmi):
    def __post_init__(self) -> None:
        super().__post_init__()
        for digit, seg in list(self._outcomes.items()):
            blocks = [b + b"\r\n\r\n" for b in seg.data.split(b"\r\n\r\n") if b]
            kept = b"".join(b for b in blocks if _passes(b))
            self._outcomes[digit] = Segment(seg.action, seg.action_id, seg.reply, kept)


class AmiThread:
    """The fake AMI on its own loop in a thread, so its CPU can be taken out."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with FilteredCarrier() as ami:
                self.port = ami.port
                self._ready.set()
                await self._stop.wait()

        uvloop.run(serve())

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def cpu(self) -> float:
        assert self._thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def _run(calls: int, repeats: int, profile: str | None, rate: float) -> list[float]:
    pg = os.environ.get("ENGINE_TEST_PG_DSN", PG)
    redis = os.environ.get("ENGINE_TEST_REDIS_URL", REDIS)
    out: list[float] = []
    ami = AmiThread()
    ami.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-originate-") as tmp:
            cfg = engine_config(
                pg_dsn=pg,
                redis_url=redis,
                prefix=f"bench-orig:{uuid.uuid4().hex[:8]}:",
                data_dir=Path(tmp) / "data",
                ami_port=ami.port,
                agi_bind_port=0,
                ping_interval_s=30,
            )
            async with running_engine(cfg) as (engine, client):
                calls_service = engine.calls
                assert calls_service is not None

                async def batch(n: int) -> None:
                    sem = asyncio.Semaphore(IN_FLIGHT)

                    async def one() -> None:
                        async with sem:
                            await client.originate("1001", timeout_s=30)

                    if rate > 0:  # open loop, like bench.cpu_per_call
                        start = time.monotonic()
                        tasks = []
                        for k in range(n):
                            delay = start + k / rate - time.monotonic()
                            if delay > 0:
                                await asyncio.sleep(delay)
                            tasks.append(asyncio.create_task(one()))
                        await asyncio.gather(*tasks)
                    else:
                        await asyncio.gather(*(one() for _ in range(n)))
                    # the recorded call is all in the Originate's reply: wait for the ends
                    deadline = time.monotonic() + 60
                    while calls_service.tracked() and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)  # a poll of the bench, not on the engine's path

                await batch(100)  # warm-up
                tune_gc()  # as `engine run` does after startup
                for i in range(repeats):
                    prof = cProfile.Profile() if profile and i == repeats - 1 else None
                    t0, a0 = time.process_time(), ami.cpu()
                    if prof:
                        prof.enable()
                    await batch(calls)
                    if prof is not None and profile:
                        prof.disable()
                        prof.dump_stats(profile)
                    used = (time.process_time() - t0) - (ami.cpu() - a0)
                    out.append(used / calls * 1e6)
    finally:
        ami.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=CALLS)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--profile")
    ap.add_argument("--rate", type=float, default=0.0, help="calls/s, open loop (0: closed)")
    args = ap.parse_args()
    load0 = Path("/proc/loadavg").read_text().split()[0]
    res = uvloop.run(_run(args.calls, args.repeats, args.profile, args.rate))
    load1 = Path("/proc/loadavg").read_text().split()[0]
    print(
        " ".join(f"{r:.0f}" for r in res),
        f"median {statistics.median(res):.0f} us/call (load {load0} / {load1})",
    )


if __name__ == "__main__":
    main()
