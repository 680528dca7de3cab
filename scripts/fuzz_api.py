"""Fuzz the live control API with schemathesis, every check on (what ``--checks all`` means).

Starts a whole engine in this process, against the fake AMI peer that plays
the recorded loopback carrier (tests/fakes/carrier_ami.py), with real
PostgreSQL and Redis: ``ENGINE_TEST_PG_DSN`` / ``ENGINE_TEST_REDIS_URL`` when
set (a fresh database and key prefix are used and dropped), else the engine's
embedded servers under a temporary directory. Then runs::

    schemathesis --config-file scripts/schemathesis.toml run <engine>/v1/openapi.json \
        --max-time SECONDS -H 'Authorization: Bearer <token>' ...

(every check is on by default; the config file holds the per-operation exceptions).

and exits with schemathesis' status (0: no failure found).

    scripts/fuzz-api                 # 60 s
    scripts/fuzz-api --seconds 600   # the 10-minute acceptance run
    scripts/fuzz-api --seconds 30 -- --seed 1 --workers 2   # extra schemathesis args
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from engine.app import Engine
from engine.pbx.asterisk.ami_codec import Action
from engine.store.pg.admin import create_database, drop_database
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_ami import Segment
from tests.harness import TOKEN, engine_config

# Trunks and a group on the fake switch, so the fuzzer reaches group dialing
# too. The self-trunk carrier never trips its breaker and has room for every
# call the fuzzer places: a 503 here would be the fuzz rig running out of
# carrier, not an API fault. No queueing (queue_timeout_s = 0).
FUZZ_TRUNKS = """
[[trunks]]
name = "self-trunk"
switch = "asterisk-1"
target = "self-trunk"
max_channels = 100000
max_cps = 10000
cps_burst = 10000
[trunks.breaker]
failure_threshold = 1000
error_rate = 1.0
degraded_error_rate = 1.0
min_samples = 1000000

[[trunks]]
name = "dead-trunk"
switch = "asterisk-1"
target = "dead-trunk"
max_channels = 50
max_cps = 1000

[[trunk_groups]]
name = "sandbox-outbound"
members = ["dead-trunk", "self-trunk"]
queue_timeout_s = 0

# A queue, so campaigns (which name one) can be created.
[[queues]]
name = "fuzz-queue"
"""


class FuzzCarrier(CarrierFakeAmi):
    """The recorded loopback carrier, answering busy for any dial it has no
    recording for (endpoint dials, numbers starting with 0, 7-9, + or *), so
    the fuzzer tests the API and not the fake's coverage."""

    def _scripted(self, action: Action) -> Segment | None:
        segment = super()._scripted(action)
        if segment is None and action.name.lower() == "originate":
            return self._outcomes["2"]
        return segment


@asynccontextmanager
async def fuzz_engine(data_dir: Path, *, pg_dsn: str, redis_url: str) -> AsyncIterator[Engine]:
    """A running engine on the fuzz carrier; ``engine.api_port`` is its API.
    Empty ``pg_dsn`` / ``redis_url``: the engine's embedded servers."""
    async with FuzzCarrier() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"fuzz:{uuid.uuid4().hex[:8]}:",
            data_dir=data_dir,
            ami_port=ami.port,
            agi_bind_port=0,
            extra=FUZZ_TRUNKS,
        )
        async with Engine(cfg) as engine:
            await engine.wait_until_up(30)
            yield engine


@asynccontextmanager
async def storage_from_env() -> AsyncIterator[tuple[str, str]]:
    """(pg_dsn, redis_url): a fresh database on ENGINE_TEST_PG_DSN's server
    (dropped afterwards) and ENGINE_TEST_REDIS_URL, or empty for embedded."""
    server_dsn = os.environ.get("ENGINE_TEST_PG_DSN", "")
    redis_url = os.environ.get("ENGINE_TEST_REDIS_URL", "")
    if not server_dsn:
        yield "", redis_url
        return
    name = f"engine_fuzz_{uuid.uuid4().hex[:12]}"
    dsn = await create_database(server_dsn, name)
    try:
        yield dsn, redis_url
    finally:
        await drop_database(server_dsn, name)


HOOKS = Path(__file__).resolve().with_name("fuzz_hooks.py")


def schemathesis_env() -> dict[str, str]:
    """The environment of a schemathesis run: ours, plus the project's hooks (serializers)."""
    return {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}


def schemathesis_command(base: str, seconds: int, extra: Sequence[str]) -> list[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    return [
        exe,
        # Per-operation exceptions, each with its reason (scripts/schemathesis.toml).
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{base}/v1/openapi.json",
        # Every check runs: schemathesis enables all of them by default (what `--checks all`
        # would say). Not said on the command line, because a check named there overrides the
        # config file's per-operation `enabled = false` (schemathesis 4.32: ChecksConfig
        # merges a CLI-named check over a file setting), which let the stateful phase report
        # the DNC lists' false use-after-free; tests/unit/test_fuzz_config.py holds both.
        "--max-time",
        str(seconds),
        "--header",
        f"Authorization: Bearer {TOKEN}",
        # The API refuses NUL in every string it takes, so generating them is
        # worth it: they are what broke GET /v1/cdrs before.
        "--generation-allow-x00",
        "true",
        "--request-timeout",
        "30",
        "--no-color",
        # A WebSocket handshake cannot be described in OpenAPI, so every plain
        # GET the fuzzer could send there is rightly a 400; the stream has its
        # own tests (tests/api/test_api.py, tests/integration).
        "--exclude-path",
        "/v1/events",
        # Draining every member of the group is the client's own doing: the
        # next group originate is then rightly "503 trunks-unavailable", which
        # schemathesis counts as a server error. Drain has its own tests
        # (tests/api/test_trunks_api.py); enable stays in the run.
        "--exclude-operation-id",
        "drainTrunk",
        *extra,
    ]


async def run_schemathesis(
    engine: Engine, seconds: int, extra: Sequence[str], workdir: Path
) -> int:
    """Run schemathesis against ``engine``; its exit status (0: nothing found)."""
    cmd = schemathesis_command(f"http://127.0.0.1:{engine.api_port}", seconds, extra)
    shown = " ".join("'Authorization: Bearer <token>'" if "Bearer" in a else a for a in cmd)
    print("$", shown, flush=True)
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=workdir, env=schemathesis_env())
    return await proc.wait()


async def run_fuzz(seconds: int, extra: Sequence[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="engine-fuzz-") as tmp:
        async with (
            storage_from_env() as (pg_dsn, redis_url),
            fuzz_engine(Path(tmp) / "data", pg_dsn=pg_dsn, redis_url=redis_url) as engine,
        ):
            return await run_schemathesis(engine, seconds, extra, Path(tmp))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="schemathesis --max-time")
    parser.add_argument("extra", nargs="*", help="more schemathesis arguments (after --)")
    args = parser.parse_args(argv)
    return asyncio.run(run_fuzz(args.seconds, args.extra))


if __name__ == "__main__":
    sys.exit(main())
