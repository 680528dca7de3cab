"""ESL codec throughput on one core: every real transcript, parsed over and over.

``python -m bench.esl_codec`` prints the figures as JSON. ``run()`` returns them.

Two figures, because plain-event headers are split and URL-decoded lazily
(see ``EventHeaders``): ``esl_events_per_s`` is what the codec costs when
consumers read a few headers (it reads ``Unique-ID`` and ``Event-Name`` of
every event, as the driver does); ``esl_events_per_s_all_headers`` reads
every header of every event.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.pbx.freeswitch.esl_codec import EslEvent, EslParser

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "tests/fixtures/freeswitch-1.10/transcripts"


def _load() -> list[bytes]:
    return [p.read_bytes() for p in sorted(TRANSCRIPTS.glob("*.esl"))]


def _measure(datas: list[bytes], seconds: float, all_headers: bool) -> float:
    events = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for data in datas:
            for msg in EslParser().feed(data):
                if isinstance(msg, EslEvent):
                    events += 1
                    if all_headers:
                        for key in msg.headers:
                            msg.headers[key]
                    else:
                        msg.get("Unique-ID")
    return events / (time.perf_counter() - start)


def run(seconds: float = 3.0) -> dict[str, float]:
    datas = _load()
    return {
        "esl_events_per_s": round(_measure(datas, seconds * 2 / 3, all_headers=False)),
        "esl_events_per_s_all_headers": round(_measure(datas, seconds / 3, all_headers=True)),
        "esl_transcript_bytes": sum(len(d) for d in datas),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
