"""AMI side under a burst: recorded answered calls pushed at once through a
real socket into ``AsteriskDriver``, until every normalized event is out.

The fake AMI peer (tests/fakes/fake_ami.py) writes ``CALLS`` copies of the
recorded answered call (``originate-answered.ami``, each with its own
Uniqueids) in one go, either every event Asterisk sends an unfiltered session
or only the ones ``EVENT_FILTERS`` lets through. Measured: this process's CPU
per call and calls per second through socket read, parse, translate and the
driver's event queue. It is the AMI half of the engine only; what the calls
service does with each event is measured by ``bench.cpu_per_call``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from engine.pbx.asterisk.driver import AsteriskDriver
from engine.pbx.asterisk.events import EVENT_FILTERS
from tests.fakes.fake_ami import FakeAmiServer

TRANSCRIPT = (
    Path(__file__).resolve().parent.parent
    / "tests/fixtures/asterisk-22/transcripts/originate-answered.ami"
)
CALLS = 2000
# The two channels of the recorded call (ours and the carrier's leg).
_UIDS = (b"1795318471.0", b"1795318471.1")


def _event_blocks(filtered: bool) -> list[bytes]:
    _, _, rest = TRANSCRIPT.read_bytes().partition(b"\r\n")
    blocks = [b + b"\r\n\r\n" for b in rest.split(b"\r\n\r\n") if b.startswith(b"Event: ")]
    if not filtered:
        return blocks
    names = {f.name for f in EVENT_FILTERS if not f.header}
    # Header filters (VarSet, UserEvent) match nothing in this recording.
    return [b for b in blocks if b[7 : b.index(b"\r\n")].decode() in names]


async def _measure(filtered: bool) -> dict[str, float]:
    blocks = _event_blocks(filtered)
    one = b"".join(blocks)
    calls = []
    for i in range(CALLS):
        data = one
        for leg, uid in enumerate(_UIDS):
            data = data.replace(uid, b"9%09d.%d" % (i, leg))
        calls.append(data)
    burst = b"".join(calls)
    async with FakeAmiServer() as fake:
        driver = AsteriskDriver(
            "burst", "127.0.0.1", fake.port, "engine", "enginesecret", ping_interval_s=600
        )
        await driver.start()
        try:
            await driver.wait_up(10)
            stream = driver.events()
            hungup = 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            push = asyncio.create_task(fake.push(burst))
            async for event in stream:
                if event.type == "HungUp":
                    hungup += 1
                    if hungup == 2 * CALLS:  # both legs of every call
                        break
            cpu1, wall1 = time.process_time(), time.perf_counter()
            await push
        finally:
            await driver.stop()
    return {
        "ami_events_per_call": float(len(blocks)),
        "cpu_ms_per_call": round((cpu1 - cpu0) * 1000 / CALLS, 3),
        "calls_per_s": round(CALLS / (wall1 - wall0), 1),
    }


def run() -> dict[str, Any]:
    u = asyncio.run(_measure(filtered=False))
    f = asyncio.run(_measure(filtered=True))
    print(
        f"AMI burst of {CALLS} answered calls: unfiltered {u['ami_events_per_call']:g} events/call "
        f"{u['cpu_ms_per_call']} ms CPU/call {u['calls_per_s']} calls/s; filtered "
        f"{f['ami_events_per_call']:g} events/call {f['cpu_ms_per_call']} ms CPU/call "
        f"{f['calls_per_s']} calls/s"
    )
    return {"calls": CALLS, "unfiltered": u, "filtered": f}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
