"""A listen address already in use, or a storage server the engine cannot use, stops the start
with one line naming the engine.toml setting (``[api] bind``, ``[fastagi] bind``, ``[storage]
postgres_dsn``...), and ``python -m engine run`` exits 1 with it; it used to end in a traceback
(an ``OSError`` from deep inside aiohttp or asyncio, a ``StoreError``)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import pytest

import engine.app
from engine.app import Engine
from engine.cli import main
from engine.core.errors import StartupError
from engine.wiring.storage import open_storage
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config

# The CLI commands run here configure logging for the process (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("restore_logging")

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("which", ["api", "fastagi"])
async def test_a_busy_listen_address_names_its_setting(
    which: str, pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    async with CarrierFakeAmi() as ami:
        with busy_port() as port:
            cfg = engine_config(
                pg_dsn=pg_dsn,
                redis_url=redis_url,
                prefix=f"bind:{uuid.uuid4().hex[:8]}:",
                data_dir=store_data_dir / f"engine-bind-{which}",
                ami_port=ami.port,
                agi_bind_port=port if which == "fastagi" else 0,
                api_port=port if which == "api" else 0,
            )
            with pytest.raises(StartupError) as err:
                async with Engine(cfg):
                    pass
    assert str(err.value).startswith(f"[{which}] bind = '127.0.0.1:{port}': cannot listen there")


def test_run_prints_a_startup_error_on_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def refuses(*_: object) -> None:
        raise StartupError("[api] bind = '127.0.0.1:8080': cannot listen there (in use)")

    monkeypatch.setattr(engine.app, "run_forever", refuses)
    assert main(["run", "--config", str(ROOT / "telephony-config" / "engine.toml")]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "engine could not start: [api] bind = '127.0.0.1:8080': cannot listen there (in use)\n"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_storage_server_out_of_reach_names_its_setting(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    port = closed_port()
    for pg, redis, expected in (
        (
            f"postgresql://engine:sekret@127.0.0.1:{port}/engine",
            redis_url,
            "PostgreSQL: cannot reach postgres while connecting to "
            f"postgresql://engine:***@127.0.0.1:{port}/engine",
        ),
        (pg_dsn, f"redis://127.0.0.1:{port}/0", "Redis: redis unavailable while connecting"),
    ):
        cfg = engine_config(pg_dsn=pg, redis_url=redis, prefix="s:", data_dir=tmp_path)
        async with AsyncExitStack() as stack:
            with pytest.raises(StartupError) as err:
                await open_storage(cfg, tmp_path, stack)
        assert str(err.value).startswith(expected), err.value
        setting = "postgres_dsn (or ENGINE_PG_DSN)" if "PostgreSQL" in expected else "redis_url"
        assert f"; check [storage] {setting}" in str(err.value)
        assert "sekret" not in str(err.value)
