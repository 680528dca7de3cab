"""engine doctor's runner: a check group that hangs or raises is one FAIL line with a fix an
operator can act on (not "see above", which pointed at nothing: the group printed no other
line), and any FAIL makes the exit status 1."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from engine.config import load_config
from engine.doctor import probes
from engine.doctor.run import _bounded, report
from engine.doctor.verdicts import Finding, Status, ok
from tests.harness import engine_config_text


async def _hang() -> list[Finding]:
    await asyncio.Event().wait()
    return []


async def _boom() -> list[Finding]:
    raise RuntimeError("probe bug")


async def test_a_hung_or_broken_group_is_one_actionable_fail_line() -> None:
    hung = await _bounded("postgresql", _hang(), 0.01)
    broken = await _bounded("redis", _boom(), 5)
    for findings, name in ((hung, "postgresql"), (broken, "redis")):
        assert [f.status for f in findings] == [Status.FAIL]
        line = findings[0].line()
        assert line.startswith(f"FAIL  {name}: ") and "\n" not in line
        assert "| fix: " in line and f"check {name}" in line and "see above" not in line
    assert "--timeout" in hung[0].fix
    out = io.StringIO()
    assert report([ok("config", "valid"), *hung, *broken], out) == 1
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1] == "doctor: 1 OK, 2 FAIL"
    assert report([ok("config", "valid")], io.StringIO()) == 0


async def test_warnings_from_unreadable_state_carry_a_fix(tmp_path: Path) -> None:
    """The WARN lines a probe gives when it cannot look (the outbox unreadable, the leases
    unreadable, a Redis that hides its version) say what to do, like every other line."""
    config = tmp_path / "engine.toml"
    config.write_text(
        engine_config_text(
            pg_dsn="postgresql://postgres@127.0.0.1:1/postgres",
            redis_url="redis://127.0.0.1:1/0",
            prefix="doctor-run:",
            data_dir=tmp_path / "engine",
        )
    )
    cfg = load_config(config)
    (tmp_path / "engine" / "outbox" / "cdrs.dead.jsonl").mkdir(parents=True)
    findings = [
        *probes.outbox_dead_letters(cfg),
        probes._redis_version("banana"),
        *await probes._owned_leases(cfg, "redis://127.0.0.1:1/0", 0.5),
    ]
    assert [f.status for f in findings] == [Status.WARN] * 3, findings
    for f in findings:
        assert f.fix and "| fix: " in f.line(), f.line()
