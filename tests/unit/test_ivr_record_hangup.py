"""The IVR ``record`` step when the caller hangs up during the take, on Asterisk.

Hanging up is how most callers end a voicemail. Captured on the sandbox Asterisk 22
(tests/integration/test_ivr_flows_live.py, the 76981 caller): ``RECORD FILE`` answers
``200 result=-1 (hangup) endpos=44298`` and the file stays, 44298 samples at 8 kHz. The
step reports it (IvrRecorded, ``ended_by: hangup``) unless nothing was recorded
(``endpos=0``), and the flow then ends as on any hang-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.ivr.runtime import IvrRuntime
from engine.pbx import base
from engine.pbx.asterisk.agi_codec import parse_environment
from tests.unit.test_agi_session import Step, connected, transcript_env

FLOW = """\
name: vm
steps:
  - id: take
    record: {into: message, max_s: 30, silence_s: 10, beep: false, on_error: failed}
  - say: "Thank you."
  - hangup
  - id: failed
    hangup: {}
"""
CALL_ID = parse_environment(transcript_env()).uniqueid
BASE = f"/rec/ivr-{CALL_ID}-1000"
RECORD = ("RECORD", "FILE", BASE, "wav", "#", "30000", "0", "s=10")


class _Events:
    def __init__(self) -> None:
        self.items: list[Mapping[str, Any]] = []

    async def publish(self, data: Mapping[str, Any]) -> None:
        self.items.append(data)


async def test_session_reports_the_take_at_the_hangup() -> None:
    steps = [Step(RECORD, b"200 result=-1 (hangup) endpos=44298\n")]  # captured
    async with connected(steps) as h:
        with pytest.raises(base.HangupDuringRecord) as gone:
            await h.session.record(f"{BASE}.wav", 30, 10)
    assert gone.value.take is not None
    assert gone.value.take.duration_ms == 44298 * 1000 // 8000
    assert h.fake.mismatches == []


@pytest.mark.parametrize(("endpos", "indexed"), [(44298, True), (0, False)])
async def test_record_step_keeps_the_message_of_a_caller_who_hangs_up(
    tmp_path: Path, endpos: int, indexed: bool
) -> None:
    flows = tmp_path / "ivr"
    flows.mkdir()
    (flows / "vm.yaml").write_text(FLOW)
    events = _Events()
    runtime = IvrRuntime(
        flows,
        events,
        tts_dir=tmp_path / "tts",
        tts_prefix="tts",
        recordings_dir="/rec",
        wall_clock=lambda: 1000.0,
    )
    assert runtime.load() == []
    steps = [Step(RECORD, f"200 result=-1 (hangup) endpos={endpos}\n".encode())]
    async with connected(steps) as h:
        result = await runtime.run(h.session, "vm")
    assert h.fake.mismatches == []
    assert result.end == "caller hung up"
    types = [e["type"] for e in events.items]
    recorded = [e for e in events.items if e["type"] == "IvrRecorded"]
    if not indexed:  # nothing was recorded: no message
        assert recorded == [] and types == ["IvrStarted", "IvrFinished"]
        return
    assert types == ["IvrStarted", "IvrRecorded", "IvrFinished"]
    (event,) = recorded
    assert event["path"] == f"{BASE}.wav"
    assert event["duration_ms"] == 5537
    assert event["ended_by"] == "hangup"
    assert event["kind"] == "voicemail"
    assert result.variables["message"] == f"{BASE}.wav"
    assert events.items[-1]["reason"] == "caller hung up"
