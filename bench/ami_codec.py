"""AMI codec throughput on one core: every real Asterisk 22 transcript, parsed over and over.

``python -m bench.ami_codec`` prints the figures as JSON; ``run()`` returns them.
Transcripts are fed in 4 KiB chunks, as the client reads them from a socket,
and every event's ``Uniqueid`` is looked up, as the translator does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.pbx.asterisk.ami_codec import AmiParser, Event

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests/fixtures/asterisk-22/transcripts"
CHUNK = 4096


def _load() -> list[bytes]:
    return [p.read_bytes() for p in sorted(TRANSCRIPTS.glob("*.ami"))]


def run(seconds: float = 3.0) -> dict[str, float]:
    datas = _load()
    chunked = [[d[i : i + CHUNK] for i in range(0, len(d), CHUNK)] for d in datas]
    events = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for chunks in chunked:
            parser = AmiParser()
            for chunk in chunks:
                for msg in parser.feed(chunk):
                    if isinstance(msg, Event):
                        events += 1
                        msg.get("Uniqueid")
    elapsed = time.perf_counter() - start
    return {
        "ami_events_per_s": round(events / elapsed, 1),
        "events": float(events),
        "seconds": round(elapsed, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
