"""API originate latency: from the HTTP request leaving the client to the AMI
Originate action arriving at the switch, at a steady 200 requests/s.

Three processes, so no two parts share an event loop:
- the engine itself (``python -m engine run``) with real PostgreSQL and Redis
  (``ENGINE_PG_DSN``/``ENGINE_REDIS_URL`` if set, embedded ones otherwise);
- an AMI peer (``python -m bench.api_latency --peer PORTFILE``) that answers
  Login and Originate with the bytes recorded from the real Asterisk 22 and
  stamps each Originate with ``time.monotonic()`` when it is read;
- this process, an open-loop load generator (requests are sent on schedule
  whether or not earlier ones finished) that stamps each request before sending.

CLOCK_MONOTONIC is system-wide on Linux, so stamps from two processes compare.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT = ROOT / "tests/fixtures/asterisk-22/transcripts/originate-answered.ami"
TOKEN = "bench-token-0123456789abcdef"
RATE = 200
WARMUP_S = 2.0
MEASURE_S = 10.0


# ----------------------------------------------------------------------------- AMI peer


def _recorded_replies() -> tuple[bytes, bytes, bytes]:
    """Banner, Login reply and Originate reply, cut from the real transcript."""
    raw = TRANSCRIPT.read_bytes()
    banner, _, rest = raw.partition(b"\r\n")
    blocks = [b + b"\r\n\r\n" for b in rest.split(b"\r\n\r\n") if b]
    login = next(b for b in blocks if b.startswith(b"Response: Success") and b"login-1" in b)
    orig = next(b for b in blocks if b.startswith(b"Response: Success") and b"orig-1" in b)
    return banner + b"\r\n", login, orig


def _quiet_gc() -> None:
    """No garbage-collector pause in the harness (load generator, AMI peer):
    one would delay a stamp and be counted as the engine's latency. Both
    processes are short-lived and free their objects by reference counting."""
    gc.collect()
    gc.freeze()
    gc.disable()


async def _peer(port_file: Path, stamps_file: Path) -> None:
    _quiet_gc()
    banner, login, orig = _recorded_replies()
    stamps: list[tuple[str, float]] = []
    action_id = re.compile(rb"ActionID: ([^\r]*)")
    channel_id = re.compile(rb"ChannelId: ([^\r]*)")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        buf = b""
        while data := await reader.read(65536):
            now = time.monotonic()
            buf += data
            while b"\r\n\r\n" in buf:
                block, _, buf = buf.partition(b"\r\n\r\n")
                aid_m = action_id.search(block)
                aid = aid_m.group(1) if aid_m else b""
                if block.startswith(b"Action: Login"):
                    writer.write(login.replace(b"login-1", aid))
                elif block.startswith(b"Action: Originate"):
                    cid = channel_id.search(block)
                    stamps.append((cid.group(1).decode() if cid else "", now))
                    writer.write(orig.replace(b"orig-1", aid))
                elif block.startswith(b"Action: CoreShowChannels"):
                    writer.write(
                        b"Response: Success\r\nActionID: %s\r\nEventList: start\r\n"
                        b"Message: Channels will follow\r\n\r\nEvent: CoreShowChannelsComplete\r\n"
                        b"ActionID: %s\r\nEventList: Complete\r\nListItems: 0\r\n\r\n" % (aid, aid)
                    )
                else:  # Ping and anything else: a plain success
                    writer.write(b"Response: Success\r\nActionID: %s\r\nPing: Pong\r\n\r\n" % aid)
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    # Tiny one-off writes at start and stop of a bench helper; blocking is harmless here.
    port_file.write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    stamps_file.write_text(json.dumps(stamps))  # noqa: ASYNC240


# ----------------------------------------------------------------------------- driver


def _config(ami_port: int, api_port: int, data_dir: Path) -> str:
    return f"""
[engine]
instance = "bench"
data_dir = "{data_dir}"
ivr_dir = "{ROOT / "tests" / "fixtures" / "ivr"}"
[api]
bind = "127.0.0.1:{api_port}"
tokens = ["{TOKEN}"]
[fastagi]
bind = "127.0.0.1:0"
[storage]
redis_prefix = "bench:{os.getpid()}:"
[logging]
level = "error"
[[switches]]
kind = "asterisk"
name = "bench"
port = {ami_port}
username = "engine"
secret = "enginesecret"
ping_interval_s = 30
# Every "trunk" call goes through TrunkService and its limits (generous here).
[[trunks]]
name = "self-trunk"
switch = "bench"
target = "self-trunk"
max_channels = 5000
max_cps = 10000
cps_burst = 1000
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_up(http: aiohttp.ClientSession, base: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{base}/health") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError("engine did not become healthy")


async def _load(base: str) -> dict[str, float]:
    _quiet_gc()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sent: dict[str, float] = {}
    errors = 0
    body = {"to": "1001", "trunk": "self-trunk"}
    conn = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(headers=headers, connector=conn) as http:
        await _wait_up(http, base)

        async def one(record: bool) -> None:
            nonlocal errors
            t0 = time.monotonic()
            async with http.post(f"{base}/calls", json=body) as r:
                data = await r.json()
            if r.status != 201:
                errors += 1
            elif record:
                sent[data["call_id"]] = t0

        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic()
        total = int((WARMUP_S + MEASURE_S) * RATE)
        for i in range(total):
            due = start + i / RATE
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(record=i >= WARMUP_S * RATE)))
        await asyncio.gather(*tasks)
    return {"errors": float(errors), **{k: v for k, v in sent.items()}}


def run() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    tmp.chmod(0o711)
    port_file, stamps_file = tmp / "port", tmp / "stamps.json"
    peer = subprocess.Popen(
        [sys.executable, "-m", "bench.api_latency", "--peer", str(port_file), str(stamps_file)],
        cwd=ROOT,
    )
    engine = None
    try:
        for _ in range(100):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.05)
        api_port = _free_port()
        cfg = tmp / "engine.toml"
        cfg.write_text(_config(int(port_file.read_text()), api_port, tmp / "data"))
        engine = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "--config", str(cfg)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        result = asyncio.run(_load(f"http://127.0.0.1:{api_port}/v1"))
    finally:
        if engine is not None:
            engine.send_signal(signal.SIGTERM)
            engine.wait(60)
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)
    errors = int(result.pop("errors"))
    received: dict[str, float] = dict(json.loads(stamps_file.read_text()))
    lat = sorted((received[cid] - t0) * 1000 for cid, t0 in result.items() if cid in received)
    if not lat:
        raise RuntimeError("no originate reached the AMI peer")

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 3)

    return {
        "api_originate_rate_rps": RATE,
        "api_originate_samples": len(lat),
        "api_originate_errors": errors,
        "api_originate_p50_ms": pct(50),
        "api_originate_p99_ms": pct(99),
        "api_originate_max_ms": round(lat[-1], 3),
    }


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--peer":
        asyncio.run(_peer(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        print(json.dumps(run(), indent=2))
