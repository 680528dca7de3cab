"""``python -m engine run`` under a fake systemd: READY=1 once the API answers, STOPPING=1 at
the drain, WATCHDOG=1 while it runs (telephony-config/systemd/telephony-engine.service).

The notify socket is a real unix datagram socket bound by the test, exactly what systemd
hands a ``Type=notify`` service in ``$NOTIFY_SOCKET``; the switch is the fake AMI peer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.fake_ami import FakeAmiServer
from tests.harness import engine_config_text
from tests.integration.engine_process import EngineProcess, free_port


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: a unix socket path must fit in 108 bytes.
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


async def _next_message(sock: socket.socket, timeout_s: float) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    return _fields(await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout_s))


async def _until(sock: socket.socket, key: str, seen: list[dict[str, str]]) -> dict[str, str]:
    while True:
        message = await _next_message(sock, 60.0)
        seen.append(message)
        if key in message:
            return message


@pytest.fixture
async def fake_ami() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer() as fake:
        yield fake


async def test_ready_after_api_up_then_stopping_on_drain(
    notify_socket: tuple[socket.socket, str],
    fake_ami: FakeAmiServer,
    pg_dsn: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sock, path = notify_socket
    port = free_port()
    config = tmp_path / "engine.toml"
    config.write_text(
        engine_config_text(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"sdn:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path / "engine",
            ami_port=fake_ami.port,
            agi_bind_port=free_port(),
            api_port=port,
        )
    )
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WatchdogSec=0.4: a ping every 0.2 s
    proc = EngineProcess(config, port, tmp_path / "engine.log")
    # Spawn only: EngineProcess.start() would poll the API until it answers, and this test is
    # about the engine saying so itself.
    proc._spawn()
    try:
        seen: list[dict[str, str]] = []
        ready = await _until(sock, "READY", seen)
        # The first message is READY (no watchdog ping before it) ...
        assert seen == [ready] and ready["READY"] == "1", seen
        assert str(port) in ready["STATUS"]
        # ... and when it arrives the API already answers, with storage up.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/v1/health/live") as r:
                assert r.status == 200
            async with http.get(f"http://127.0.0.1:{port}/v1/health/ready") as r:
                body = await r.json()
        assert body["storage"] == {"postgres": True, "redis": True, "outbox": True}, body
        # The watchdog pings come from the running event loop.
        assert (await _until(sock, "WATCHDOG", seen))["WATCHDOG"] == "1"

        assert proc.proc is not None
        proc.proc.send_signal(15)  # SIGTERM: systemctl stop
        stopping = await _until(sock, "STOPPING", seen)
        assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("draining"), stopping
        assert await asyncio.to_thread(proc.proc.wait, 60) == 0, proc.tail()
    finally:
        proc.stop()
