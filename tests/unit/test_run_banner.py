"""scripts/run-banner: what `make run` prints before the engine starts.

It once imported load_config from a module that no longer had it, and `make run` stopped
right after check-config with an ImportError (the engine never started).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_banner_prints_the_api_and_how_to_place_a_call() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "run-banner"), "telephony-config/engine.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Engine API:   http://127.0.0.1:8080/v1" in done.stdout
    assert "scripts/demo-call 1001" in done.stdout
    assert "Authorization: Bearer dev-token-change-me-0123456789" in done.stdout
