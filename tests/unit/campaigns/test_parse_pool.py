"""An engine killed with SIGKILL leaves no parsing processes behind: its contacts pool's
workers (and the forkserver they keep alive) used to wait forever for their next job; seen
as a pair of leftover processes after every SIGKILL drill (engine/campaigns/contacts/
parse_pool.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# A stand-in for the engine: builds the pool as the engine does, makes both workers start,
# prints their pids, then waits to be killed.
ENGINE = """
import time
from engine.campaigns.contacts.parse_pool import new_parse_pool

if __name__ == "__main__":
    pool = new_parse_pool(2)
    for future in [pool.submit(time.sleep, 0.3) for _ in range(4)]:
        future.result()
    print(" ".join(str(pid) for pid in pool._processes), flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_the_parsing_processes_end_when_the_engine_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "engine_stand_in.py"
    script.write_text(ENGINE)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(p) for p in workers), workers
        forkserver = parent_of(workers[0])
        assert forkserver != proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        left = [*workers, forkserver]
        deadline = time.monotonic() + 20
        while any(alive(p) for p in left):
            assert time.monotonic() < deadline, [p for p in left if alive(p)]
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait(timeout=10)
