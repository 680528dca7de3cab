"""Engine-side trunk failover time: from the failure event (a ``HungUp`` with
cause 34 / SIP 503 arriving at the calls service) to the next attempt's
``Originate`` action arriving at the switch.

The whole engine runs in this process (``Engine``: real PostgreSQL and Redis,
``ENGINE_PG_DSN``/``ENGINE_REDIS_URL`` if set, embedded ones otherwise) against
a fake AMI peer on loopback (tests/fakes/carrier_ami.py) that answers every
Originate with the bytes recorded from the real Asterisk 22: number 3XXX is
the recorded congestion transcript (Hangup Cause 34, TechCause 503), so each
call's attempt 1 on ``trunk-x`` fails over at once to ``trunk-y``, which gets
the same answer and ends the call (max_attempts = 2).

Two figures per call, both on this process's monotonic clock:
- ``service_to_originate``: the HungUp(34) entering ``CallService.handle`` ->
  the peer reading attempt 2's Originate (includes the AMI write and the
  loopback hop; this is the engine-side failover time);
- ``hangup_sent_to_originate``: the peer writing the recorded Hangup -> the
  peer reading the next Originate (adds the engine's AMI read and parse).

Calls are placed one at a time (closed loop), so the figures are latency,
not throughput. Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from engine.app import Engine
from engine.config import parse_config
from engine.pbx.asterisk.ami_codec import Action
from engine.pbx.base import HungUp, PbxEvent
from engine.telemetry.logging import setup_logging
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_ami import Segment

TOKEN = "bench-token-0123456789abcdef"
WARMUP = 30
CALLS = 300

CONFIG = """
[engine]
instance = "bench-failover"
data_dir = "{data}"
ivr_dir = "{ivr}"
[api]
bind = "127.0.0.1:0"
tokens = ["{token}"]
[fastagi]
bind = "127.0.0.1:0"
[storage]
postgres_dsn = "{pg}"
redis_url = "{redis}"
redis_prefix = "bench-failover:"
[logging]
level = "error"
[[switches]]
kind = "asterisk"
name = "asterisk-1"
host = "127.0.0.1"
port = {port}
username = "engine"
secret = "enginesecret"

# Breakers that never open: every attempt of this bench fails on purpose.
[[trunks]]
name = "trunk-x"
switch = "asterisk-1"
target = "congested-trunk"
max_channels = 1000
max_cps = 10000
cps_burst = 100
priority = 1
  [trunks.breaker]
  failure_threshold = 1000
  error_rate = 1.0
  degraded_error_rate = 1.0

[[trunks]]
name = "trunk-y"
switch = "asterisk-1"
target = "self-trunk"
max_channels = 1000
max_cps = 10000
cps_burst = 100
priority = 2
  [trunks.breaker]
  failure_threshold = 1000
  error_rate = 1.0
  degraded_error_rate = 1.0

[[trunk_groups]]
name = "bench"
members = ["trunk-x", "trunk-y"]
max_attempts = 2
"""


class StampingPeer(CarrierFakeAmi):
    """The recorded carrier, stamping when each Originate is read and when
    the bytes answering it (with the Hangup) were written."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.originate_read: dict[str, float] = {}  # ChannelId -> monotonic
        self.answered_at: dict[str, float] = {}  # ChannelId -> monotonic (reply written)

    def _scripted(self, action: Action) -> Segment | None:
        if action.name.lower() == "originate":
            cid = action.headers.get("ChannelId") or ""
            self.originate_read[cid] = time.monotonic()
        return super()._scripted(action)

    async def _handle(self, writer: asyncio.StreamWriter, action: Action) -> bool:
        ok = await super()._handle(writer, action)
        if action.name.lower() == "originate":
            self.answered_at[action.headers.get("ChannelId") or ""] = time.monotonic()
        return ok


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.array(values) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "max_ms": round(float(arr.max()), 3),
    }


async def _measure(root: Path, data: Path) -> dict[str, Any]:
    async with StampingPeer() as peer:
        text = CONFIG.format(
            data=data,
            ivr=root / "tests" / "fixtures" / "ivr",
            token=TOKEN,
            pg=os.environ.get("ENGINE_PG_DSN", ""),
            redis=os.environ.get("ENGINE_REDIS_URL", ""),
            port=peer.port,
        )
        async with Engine(parse_config(text, "bench-failover.toml")) as engine:
            await engine.wait_until_up(30)
            calls = engine.calls
            assert calls is not None
            arrived: dict[str, float] = {}  # leg id -> HungUp(34) entering the service
            original = calls.handle

            async def stamped(event: PbxEvent) -> None:
                if isinstance(event, HungUp) and event.cause == 34:
                    arrived.setdefault(event.call_id, time.monotonic())
                await original(event)

            calls.handle = stamped  # type: ignore[method-assign]
            base = f"http://127.0.0.1:{engine.api_port}/v1"
            headers = {"Authorization": f"Bearer {TOKEN}"}
            service_to_originate: list[float] = []
            wire_to_originate: list[float] = []
            async with aiohttp.ClientSession(headers=headers) as http:
                for i in range(WARMUP + CALLS):
                    body = {"to": "3001", "trunk_group": "bench", "timeout_s": 5}
                    async with http.post(base + "/calls", json=body) as r:
                        call = await r.json()
                        assert r.status == 201, call
                    call_id = call["call_id"]
                    final = await _wait_ended(http, base, call_id)
                    legs = [a["leg_id"] for a in final["attempts"]]
                    if i < WARMUP or len(legs) != 2:
                        continue
                    first, second = legs
                    service_to_originate.append(peer.originate_read[second] - arrived[first])
                    wire_to_originate.append(peer.originate_read[second] - peer.answered_at[first])
            return {
                "calls": len(service_to_originate),
                "service_to_originate": _stats(service_to_originate),
                "hangup_sent_to_originate": _stats(wire_to_originate),
                "target_p99_ms": 50.0,
            }


async def _wait_ended(http: aiohttp.ClientSession, base: str, call_id: str) -> dict[str, Any]:
    while True:
        async with http.get(f"{base}/calls/{call_id}") as r:
            data: dict[str, Any] = await r.json()
        if data["state"] == "ended":
            return data
        await asyncio.sleep(0.002)


def run() -> dict[str, Any]:
    setup_logging("error", "console")  # the per-call info lines would drown the figures
    root = Path(__file__).resolve().parent.parent
    data = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    data.chmod(0o711)  # the embedded PostgreSQL runs unprivileged and must enter it
    try:
        result = asyncio.run(_measure(root, data))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    s, w = result["service_to_originate"], result["hangup_sent_to_originate"]
    print(
        f"failover over {result['calls']} calls: HungUp(34) at the service -> next Originate "
        f"at the peer p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms "
        f"(peer wrote Hangup -> next Originate: p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms)"
    )
    return result


if __name__ == "__main__":
    run()
