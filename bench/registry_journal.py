"""What the registry journal costs a call (engine/calls/mirror.py).

The registry mirror appends each new call, change of state and end to the
``registry`` journal before Redis hears of it (a crash right after the 201 of
``POST /v1/calls`` no longer loses the call). An answered call makes about
four such records (created/dialing, ringing, answered, ended).

``python -m bench.registry_journal`` prints the CPU time per record and per
call as JSON. ``run()`` returns them.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from engine.calls.model import Call, CallState
from engine.store.outbox.journal import Journal

RECORDS_PER_CALL = 4


def run(records: int = 20_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp), "registry")
        journal.open()
        call = Call(
            "0b7f3c52-7d1e-4a51-9d0e-5f6f4b1f2a10",
            "asterisk-1",
            CallState.ANSWERED,
            "1001",
            {"kind": "park"},
            100.0,
            answered_at=101.0,
        )
        start = time.process_time()
        for _ in range(records):
            journal.append(call.to_dict(), 1.0)  # what the mirror does per change
        per_record = (time.process_time() - start) / records
        journal.close()
    return {
        "registry_journal_us_per_record": round(per_record * 1e6, 1),
        "registry_journal_ms_per_call": round(per_record * RECORDS_PER_CALL * 1e3, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
