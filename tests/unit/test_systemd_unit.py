"""telephony-config/systemd/telephony-engine.service: valid for systemd, and consistent with
the engine's own settings (Type=notify, a stop timeout longer than the drain)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "telephony-config" / "systemd" / "telephony-engine.service"


def _settings(text: str) -> dict[str, list[str]]:
    """Key -> every value it is given (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def test_unit_is_notify_and_outlasts_the_drain() -> None:
    unit = _settings(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["KillSignal"] == ["SIGTERM"]
    grace = tomllib.loads((ROOT / "telephony-config" / "engine.toml").read_text())["engine"][
        "shutdown_grace_s"
    ]
    assert float(unit["TimeoutStopSec"][0]) > grace
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: point it at this interpreter.
    text = UNIT.read_text().replace("/opt/telephony-engine/bin/python", sys.executable)
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # An unknown or misspelt key is only a warning on stderr (exit status 0): none allowed.
    assert done.returncode == 0 and done.stderr == "", done.stderr
