"""A voicemail ``record`` on a leg whose call is being recorded must not end the call's
recording: FreeSWITCH sends that take's RECORD_STOP (its own Record-File-Path) to the
inbound connection too (outbound-socket-record-silence*.esl)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from engine.pbx.base import RecordingStopped
from engine.recordings import audio, crypto
from engine.recordings.config import RecordingsSection
from engine.recordings.model import RecordingRules
from engine.recordings.service import Active, RecordingService
from tests.fakes.esl_transcripts import events_of
from tests.fakes.fake_voicemail import G722_FILE


class _Sink:
    def put(self, payload: dict[str, Any]) -> None:
        pass


async def test_a_voicemail_record_stop_does_not_finish_the_call_recording(
    tmp_path: Path,
) -> None:
    service = RecordingService(
        RecordingsSection(),
        keys=crypto.KeyRing({"k1": bytes(32)}, "k1"),
        calls=None,  # type: ignore[arg-type]  # handle() never asks for a call
        records=_Sink(),
        events=_Sink(),
        index=None,
        store_dir=tmp_path,
    )
    finished: list[Active] = []

    async def finish(active: Active, ended_at: float) -> None:
        finished.append(active)

    service.finish = finish  # type: ignore[method-assign]
    rid = uuid.uuid4()
    active = Active(
        recording_id=rid,
        call_id="c-1",
        leg="leg-1",
        switch="fs1",
        switch_path=f"/var/lib/freeswitch/recordings/{rid}.wav",
        file=audio.SwitchFile(tmp_path / f"{rid}.wav", "wav"),
        rules=RecordingRules("always", "silence", "mono", "", 30),
        started_at=0.0,
    )
    service.active["c-1"] = active
    service._by_leg["leg-1"] = active  # what a start fills in

    # The voicemail take's RECORD_STOP as recorded (its Record-File-Path), on the same leg.
    vm_path = next(e for e in events_of(G722_FILE) if e.name == "RECORD_STOP").get(
        "Record-File-Path"
    )
    service.handle(RecordingStopped(switch="fs1", call_id="leg-1", ts=1.0, path=vm_path))
    await asyncio.sleep(0)
    assert finished == [] and not active.stopping

    # The call recording's own stop still finishes it.
    service.handle(RecordingStopped(switch="fs1", call_id="leg-1", ts=1.0, path=active.switch_path))
    await asyncio.sleep(0)
    assert finished == [active]
