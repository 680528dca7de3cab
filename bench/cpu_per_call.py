"""Engine CPU per call against Asterisk's own CPU per call, under one load, in one run.

The engine runs as its own process (``python -m engine run --config <generated>``)
against the real Asterisk 22 sandbox (``scripts/asterisk-sandbox``), with real
PostgreSQL and Redis (``ENGINE_PG_DSN``/``ENGINE_REDIS_URL`` if set, embedded
ones otherwise). This process places ``CALLS`` calls to the sandbox's answering
carrier (1XXX: rings 1 s, answers, plays a 1.4 s prompt, hangs up 2 s later)
through the HTTP API, open loop at ``RATE`` calls/s, and waits until the engine
has ended every one of them.

CPU is read from ``/proc/<pid>/stat`` (utime + stime, every thread of the
process; children such as an embedded PostgreSQL are not included) for the
engine process and for the sandbox's ``asterisk -f`` process, right before the
first call and right after the last one ended, so both sides are measured
over the same window and the same load. Both figures include what each process
does anyway in that window (pings, qualify, the trunk poll); the idle rates,
read over ``IDLE_S`` before the load, are reported next to them.

Each call is two channels in the sandbox (our outbound leg and the carrier's
inbound leg), so "Asterisk ms/call" is the cost of both ends of a real call.

The sandbox is shared: run it under ``flock /tmp/asterisk-sandbox.lock`` like
the tests, e.g. ``flock /tmp/asterisk-sandbox.lock .venv/bin/python -m bench
cpu_per_call``. Other AMI clients connected to the sandbox make Asterisk work
for them too; their number is reported (``other_ami_sessions``).

``python -m bench.cpu_per_call --profile out.prof`` runs the engine under
cProfile (figures then include the profiler's overhead) and prints its top
functions by own time.

``--write-round-s S`` writes ``[storage] write_round_s = S`` into the engine's
config (unset: the engine's default), to measure what the round interval costs.
``--latency stream`` also reads the engine's event stream from Redis on a
connection of this process (no work for the engine) and reports how long events
took from their ``ts`` (the engine's wall clock when it translated the AMI event,
or made the state change) to arriving there; ``--latency ws`` reads them from a
``/v1/events`` WebSocket instead (the engine's fan-out and socket sends are then
part of its CPU figure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import pstats
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"
CALLS = 200
RATE = 8.0
IDLE_S = 3.0
AMI_PORT = 5038
#: From the engine up to every call ended; generous for a loaded 2-core box.
END_TIMEOUT_S = 180.0
SANDBOX_DIR = Path(
    os.environ.get("ASTERISK_SANDBOX_DIR", "/var/cache/telephony-engine/asterisk-22")
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Where ``--latency`` reads events: nowhere, the Redis stream, or a WebSocket.
LATENCY_SOURCES = ("none", "stream", "ws")
#: After the last call ended, events still on their way are read until none came
#: for this long (at least; three write rounds if those are longer), at most 15 s.
LATENCY_QUIET_S = 1.0

_ENDED = re.compile(r"^engine_calls_ended_total\{[^}]*\} ([0-9.e+]+)$", re.M)
_LINK_UP = re.compile(r'^engine_switch_link_up\{switch="asterisk-1"\} ([0-9.]+)$', re.M)


# ----------------------------------------------------------------------------- /proc


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of ``pid`` (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may contain spaces.
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]), int(fields[12])


def asterisk_pid() -> int:
    """The sandbox's Asterisk, checked the way scripts/asterisk-sandbox does."""
    pid_file = SANDBOX_DIR / "asterisk.pid"
    try:
        pid = int(pid_file.read_text().strip())
        root = os.readlink(f"/proc/{pid}/root")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError) as err:
        raise RuntimeError(
            f"no running Asterisk sandbox ({pid_file}: {err}); run scripts/asterisk-sandbox start"
        ) from err
    if Path(root) != (SANDBOX_DIR / "root").resolve() or b"asterisk" not in cmdline:
        raise RuntimeError(f"{pid_file} names pid {pid}, which is not the sandbox's Asterisk")
    return pid


def ami_sessions() -> int:
    """Established TCP connections to the AMI port (server side), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local_port = int(parts[1].rsplit(":", 1)[1], 16)
            if local_port == AMI_PORT and parts[3] == "01":  # 01 = ESTABLISHED
                count += 1
    return count


# ----------------------------------------------------------------------------- engine


def _config(api_port: int, data_dir: Path, write_round_s: float | None = None) -> str:
    round_line = "" if write_round_s is None else f"write_round_s = {write_round_s!r}\n"
    return f"""
[engine]
instance = "bench-cpu"
data_dir = "{data_dir}"
ivr_dir = "{ROOT / "tests" / "fixtures" / "ivr"}"
ivr_watch_interval_s = 2.0
[api]
bind = "127.0.0.1:{api_port}"
tokens = ["{TOKEN}"]
[fastagi]
bind = "127.0.0.1:0"
[storage]
redis_prefix = "{_prefix()}"
{round_line}[logging]
level = "info"
format = "json"
[[switches]]
kind = "asterisk"
name = "asterisk-1"
host = "127.0.0.1"
port = {AMI_PORT}
username = "engine"
secret = "enginesecret"
[[trunks]]
name = "self-trunk"
switch = "asterisk-1"
target = "self-trunk"
max_channels = 200
max_cps = 50
"""


def _prefix() -> str:
    return f"bench-cpu:{os.getpid()}:"


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# ----------------------------------------------------------------------------- event latency


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in (0, 1]) of values sorted ascending."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class EventLatency:
    """How long each event took from its ``ts`` (engine wall clock, seconds: when the
    driver translated the switch's event, or when the state change was made) to a
    reader's wall clock on arrival. Events stamped before ``since`` (startup, link
    events) are not counted."""

    def __init__(self, since: float) -> None:
        self.since = since
        self.by_type: dict[str, list[float]] = {}
        self.last_arrival = time.monotonic()

    def add(self, event: Mapping[str, Any], arrived: float) -> None:
        self.last_arrival = time.monotonic()
        ts = event.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, int | float) or ts < self.since:
            return
        self.by_type.setdefault(str(event.get("type", "?")), []).append(arrived - ts)

    @staticmethod
    def _figures(values: list[float]) -> dict[str, Any]:
        ordered = sorted(values)
        return {
            "events": len(ordered),
            "p50_ms": round(percentile(ordered, 0.50) * 1000, 1),
            "p95_ms": round(percentile(ordered, 0.95) * 1000, 1),
            "p99_ms": round(percentile(ordered, 0.99) * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1),
        }

    def summary(self) -> dict[str, Any]:
        every = [v for values in self.by_type.values() for v in values]
        if not every:
            return {"events": 0}
        out = self._figures(every)
        out["by_type"] = {t: self._figures(v) for t, v in sorted(self.by_type.items())}
        return out


async def _read_stream(url: str, key: str, latency: EventLatency) -> None:
    """Every entry of the engine's event stream (until cancelled), on our own connection."""
    client = aioredis.from_url(url, decode_responses=True)
    last = "0-0"
    try:
        while True:
            reply: Any = await client.xread({key: last}, block=1000, count=1000)
            arrived = time.time()
            # RESP2: [[key, entries]]; RESP3: {key: entries}
            pairs = reply.items() if isinstance(reply, dict) else (reply or [])
            for _key, entries in pairs:
                for entry_id, fields in entries:
                    last = entry_id
                    latency.add(json.loads(fields["data"]), arrived)
    finally:
        await client.aclose()


async def _read_ws(ws: aiohttp.ClientWebSocketResponse, latency: EventLatency) -> None:
    """Every event message of a ``/v1/events`` socket (until cancelled or closed)."""
    async for msg in ws:
        arrived = time.time()
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        data = json.loads(msg.data)
        if isinstance(data, dict) and isinstance(data.get("event"), dict):
            latency.add(data["event"], arrived)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Sample:
    engine_user: int
    engine_sys: int
    asterisk_user: int
    asterisk_sys: int
    at: float

    @property
    def engine(self) -> int:
        return self.engine_user + self.engine_sys

    @property
    def asterisk(self) -> int:
        return self.asterisk_user + self.asterisk_sys


def _sample(engine_pid: int, ast_pid: int) -> _Sample:
    return _Sample(*cpu_ticks(engine_pid), *cpu_ticks(ast_pid), time.monotonic())


def _ms(ticks: int) -> float:
    return ticks * 1000.0 / CLK_TCK


async def _metrics(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics") as r:
        return await r.text() if r.status == 200 else ""


async def _wait_ready(
    http: aiohttp.ClientSession, base: str, engine: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if engine.poll() is not None:
            raise RuntimeError(f"engine exited with {engine.returncode} during startup")
        try:
            m = _LINK_UP.search(await _metrics(http, base))
            if m and float(m.group(1)) == 1.0:
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError("engine did not come up with its AMI link UP within 180 s")


def _ended_total(text: str) -> float:
    return sum(float(v) for v in _ENDED.findall(text))


async def _load(
    base: str,
    engine: subprocess.Popen[bytes],
    ast_pid: int,
    calls: int,
    rate: float,
    latency_source: str = "none",
    write_round_s: float | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        await _wait_ready(http, base, engine)
        latency = EventLatency(since=float("inf"))
        reader: asyncio.Task[None] | None = None
        ws: aiohttp.ClientWebSocketResponse | None = None
        if latency_source == "stream":
            url = os.environ.get("ENGINE_REDIS_URL", "")
            if not url:
                raise RuntimeError("--latency stream needs ENGINE_REDIS_URL (the engine's Redis)")
            reader = asyncio.create_task(_read_stream(url, f"{_prefix()}{{events}}", latency))
        elif latency_source == "ws":
            ws = await http.ws_connect(base.replace("http://", "ws://", 1) + "/events")
            reader = asyncio.create_task(_read_ws(ws, latency))
        # Let the startup work (migrations, first trunk poll, resync) settle.
        await asyncio.sleep(2.0)
        idle0 = _sample(engine.pid, ast_pid)
        await asyncio.sleep(IDLE_S)
        idle1 = _sample(engine.pid, ast_pid)
        ended_before = _ended_total(await _metrics(http, base))

        errors: list[str] = []
        placed = 0

        async def one(i: int) -> None:
            nonlocal placed
            body = {"to": f"1{i % 1000:03d}", "trunk": "self-trunk", "then": {"kind": "park"}}
            async with http.post(f"{base}/calls", json=body) as r:
                text = await r.text()
            if r.status == 201:
                placed += 1
            else:
                errors.append(f"{r.status} {text[:200]}")

        latency.since = time.time()
        start = _sample(engine.pid, ast_pid)
        tasks: list[asyncio.Task[None]] = []
        for i in range(calls):
            delay = start.at + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        placed_at = time.monotonic()

        # Completion is read from the engine's own counter: one small request a
        # second (not one per call), so the polling adds little to the figure.
        polls = 0
        deadline = time.monotonic() + END_TIMEOUT_S
        ended = 0.0
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            polls += 1
            ended = _ended_total(await _metrics(http, base)) - ended_before
            if ended >= placed:
                break
        end = _sample(engine.pid, ast_pid)
        if ended < placed:
            raise RuntimeError(f"only {ended:g} of {placed} calls ended within {END_TIMEOUT_S} s")
        if reader is not None:
            # The last calls' final events may still be on their way (the CPU window is
            # closed already): read until none came for a while.
            quiet = max(LATENCY_QUIET_S, 3 * (write_round_s or 0.1))
            give_up = time.monotonic() + 15.0
            while time.monotonic() < give_up and not reader.done():
                if time.monotonic() - latency.last_arrival >= quiet:
                    break
                await asyncio.sleep(0.1)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if ws is not None:
                await ws.close()

    idle_s = idle1.at - idle0.at
    window = end.at - start.at
    engine_ms = _ms(end.engine - start.engine) / placed
    ast_ms = _ms(end.asterisk - start.asterisk) / placed
    return {
        "calls": calls,
        "rate_per_s": rate,
        "calls_placed": placed,
        "errors": len(errors),
        "first_errors": errors[:3],
        "window_s": round(window, 1),
        "placing_s": round(placed_at - start.at, 1),
        "metric_polls": polls,
        "engine_ms_per_call": round(engine_ms, 2),
        "asterisk_ms_per_call": round(ast_ms, 2),
        "ratio": round(engine_ms / ast_ms, 3) if ast_ms else None,
        # Kernel time is mostly socket syscalls (Redis, AMI, HTTP, PostgreSQL).
        "engine_sys_ms_per_call": round(_ms(end.engine_sys - start.engine_sys) / placed, 2),
        "asterisk_sys_ms_per_call": round(_ms(end.asterisk_sys - start.asterisk_sys) / placed, 2),
        "target_ratio": 0.25,
        "engine_idle_ms_per_s": round(_ms(idle1.engine - idle0.engine) / idle_s, 2),
        "asterisk_idle_ms_per_s": round(_ms(idle1.asterisk - idle0.asterisk) / idle_s, 2),
        "clock_tick_ms": round(1000.0 / CLK_TCK, 1),
        "write_round_s": write_round_s,
        "latency_source": latency_source,
        "event_latency": latency.summary() if reader is not None else None,
    }


def run(
    profile: Path | None = None,
    calls: int = CALLS,
    rate: float = RATE,
    *,
    write_round_s: float | None = None,
    latency: str = "none",
) -> dict[str, Any]:
    if latency not in LATENCY_SOURCES:
        raise ValueError(f"latency: one of {LATENCY_SOURCES}")
    load_before = _loadavg()
    ast_pid = asterisk_pid()
    others = ami_sessions()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    tmp.chmod(0o711)  # the embedded PostgreSQL runs unprivileged and must enter it
    api_port = _free_port()
    cfg = tmp / "engine.toml"
    cfg.write_text(_config(api_port, tmp / "data", write_round_s))
    cmd = [sys.executable]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "engine", "run", "--config", str(cfg)]
    log_path = tmp / "engine.log"
    with log_path.open("wb") as log_file:
        engine = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            result = asyncio.run(
                _load(
                    f"http://127.0.0.1:{api_port}/v1",
                    engine,
                    ast_pid,
                    calls,
                    rate,
                    latency,
                    write_round_s,
                )
            )
        finally:
            engine.send_signal(signal.SIGTERM)
            try:
                engine.wait(90)
            except subprocess.TimeoutExpired:
                engine.kill()
                engine.wait(10)
    result["other_ami_sessions"] = others
    result["load_before"] = load_before
    result["load_after"] = _loadavg()
    result["engine_log"] = str(log_path)
    result["profiled"] = profile is not None
    out = ROOT / "reports" / "cpu_per_call.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"cpu per call over {result['calls_placed']} calls at {rate:g}/s: engine "
        f"{result['engine_ms_per_call']} ms, asterisk {result['asterisk_ms_per_call']} ms, "
        f"ratio {result['ratio']} (target <= {result['target_ratio']})"
    )
    lat = result["event_latency"]
    if lat and lat.get("events"):
        print(
            f"event latency ({latency}, {lat['events']} events): p50 {lat['p50_ms']} ms, "
            f"p95 {lat['p95_ms']} ms, max {lat['max_ms']} ms"
        )
    return result


def _print_profile(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, help="run the engine under cProfile into PATH")
    parser.add_argument("--top", type=int, default=30, help="profile rows to print")
    parser.add_argument("--calls", type=int, default=CALLS, help="calls to place")
    parser.add_argument("--rate", type=float, default=RATE, help="calls per second")
    parser.add_argument(
        "--write-round-s",
        type=float,
        default=None,
        help="[storage] write_round_s for the engine (default: the engine's own)",
    )
    parser.add_argument(
        "--latency",
        choices=LATENCY_SOURCES,
        default="none",
        help="also measure event latency, read from the Redis stream or a /v1/events socket",
    )
    args = parser.parse_args()
    prof = args.profile.resolve() if args.profile is not None else None
    result = run(
        prof, args.calls, args.rate, write_round_s=args.write_round_s, latency=args.latency
    )
    print(json.dumps(result, indent=2))
    if prof is not None:
        _print_profile(prof, args.top)
