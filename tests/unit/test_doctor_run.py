"""engine doctor's runner: a check group that hangs or raises is one FAIL line with a fix an
operator can act on (not "see above", which pointed at nothing: the group printed no other
line), and any FAIL makes the exit status 1."""

from __future__ import annotations

import asyncio
import io

from engine.doctor.run import _bounded, report
from engine.doctor.verdicts import Finding, Status, ok


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
