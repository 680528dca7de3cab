"""A short schemathesis run (every check on) in the normal suite, so a
regression in the API contract shows in ``make test``. The long run is
``scripts/fuzz-api --seconds 600``; both use the same engine set-up.

``ENGINE_FUZZ_SEED=<seed>`` replays the seed a report printed (schemathesis ``--seed``);
unset, each run draws its own."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from scripts.fuzz_api import fuzz_engine, schemathesis_command, schemathesis_env

SECONDS = 40


async def test_schemathesis_finds_no_failure(
    pg_dsn: str, redis_url: str, store_data_dir: Path, tmp_path: Path
) -> None:
    async with fuzz_engine(
        store_data_dir / "engine-fuzz", pg_dsn=pg_dsn, redis_url=redis_url
    ) as engine:
        seed = os.environ.get("ENGINE_FUZZ_SEED", "")
        extra = ["--seed", seed] if seed else []
        cmd = schemathesis_command(f"http://127.0.0.1:{engine.api_port}", SECONDS, extra)
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=tmp_path,
            env=schemathesis_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), SECONDS + 120)
    report = out.decode(errors="replace")
    # On failure show schemathesis' FAILURES section: each case with a curl
    # line and the seed to replay it.
    failures = report[report.find("FAILURES") :] if "FAILURES" in report else report[-4000:]
    assert proc.returncode == 0, failures
    assert "Test cases:" in report, report[-4000:]
