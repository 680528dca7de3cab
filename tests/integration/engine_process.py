"""The engine as a separate process, for drills that kill it (SIGKILL, SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.harness import ROOT, TOKEN, Client, engine_config_text


def _ephemeral_range() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def free_port() -> int:
    """A free port OUTSIDE the kernel's ephemeral range.

    These engines are killed and restarted on the same port. A port from
    ``bind(0)`` is an ephemeral one: between the kill and the restart any
    outgoing connection on the machine (Redis, PostgreSQL, AMI clients of
    parallel tests) may take it as its local port, and the restart then fails
    with EADDRINUSE (seen in a full run under load). Ports below the range
    are never handed out that way.
    """
    ephemeral = _ephemeral_range()
    candidates = [p for p in range(20000, 32000) if p not in ephemeral]
    for port in random.sample(candidates, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-31999")


@dataclass
class EngineProcess:
    config_path: Path
    api_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    redis_prefix: str = ""
    starts: int = field(default=0)

    async def start(self, timeout_s: float = 60.0) -> None:
        self._spawn()
        await self.wait_ready(timeout_s)

    def _spawn(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"===== start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", "--config", str(self.config_path)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    async def wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        url = f"http://127.0.0.1:{self.api_port}/v1/calls"
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"engine exited ({self.proc.returncode}); {self.tail()}")
                try:
                    headers = {"Authorization": f"Bearer {TOKEN}"}
                    async with http.get(url, headers=headers) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if loop.time() > deadline:
                    raise AssertionError(f"engine not up after {timeout_s}s; {self.tail()}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all, as in a crash or OOM kill."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "engine log tail:\n" + "\n".join(text.splitlines()[-lines:])

    def client(self, http: aiohttp.ClientSession) -> Client:
        return Client(http, f"http://127.0.0.1:{self.api_port}/v1")


@dataclass(frozen=True)
class SharedStorage:
    """What engines of one call centre share: PostgreSQL, Redis (one prefix), the carrier.
    ``storage_extra``: more ``[storage]`` keys (``redis_sentinels`` with an empty
    ``redis_url``: a Sentinel group)."""

    pg_dsn: str
    redis_url: str
    prefix: str
    ami_port: int
    storage_extra: str = ""


def named_engine(work: Path, name: str, shared: SharedStorage, extra: str) -> EngineProcess:
    """An engine process with its own instance id, API port and data directory, on shared
    storage (several engines of one call centre: the cluster drills and bench)."""
    port = free_port()
    text = engine_config_text(
        pg_dsn=shared.pg_dsn,
        redis_url=shared.redis_url,
        prefix=shared.prefix,
        data_dir=work / name,
        api_port=port,
        ami_port=shared.ami_port,
        agi_bind_port=0,
        extra=extra,
        storage_extra=shared.storage_extra,
    ).replace('instance = "test"', f'instance = "{name}"')
    path = work / f"{name}.toml"
    path.write_text(text)
    return EngineProcess(path, port, work / f"{name}.log", redis_prefix=shared.prefix)
