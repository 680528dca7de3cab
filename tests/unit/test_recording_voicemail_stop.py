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


def _service(tmp_path: Path, section: RecordingsSection) -> tuple[RecordingService, list[Active]]:
    """A service whose finish() only notes what it was asked to finish; no calls object
    (handle() never asks for one; a test that calls control() sets ``_calls``)."""
    service = RecordingService(
        section,
        keys=crypto.KeyRing({"k1": bytes(32)}, "k1"),
        calls=None,  # type: ignore[arg-type]
        records=_Sink(),
        events=_Sink(),
        index=None,
        store_dir=tmp_path,
    )
    finished: list[Active] = []

    async def finish(active: Active, ended_at: float) -> None:
        finished.append(active)

    service.finish = finish  # type: ignore[method-assign]
    return service, finished


async def test_a_voicemail_record_stop_does_not_finish_the_call_recording(
    tmp_path: Path,
) -> None:
    service, finished = _service(tmp_path, RecordingsSection())
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


class _GapPausingDriver:
    """Asterisk's gap pause: StopMixMonitor. Its MixMonitorStop is handled before the
    action's reply reaches the caller (one read carries both; the event consumer runs
    first), which is what a stressed make test showed."""

    def __init__(self, service: RecordingService, active: Active) -> None:
        self.service, self.active = service, active

    async def record_pause(self, leg: str, path: str, paused: bool, *, stereo: bool) -> None:
        if paused:
            self.service.handle(
                RecordingStopped(switch="asterisk-1", call_id=leg, ts=1.0, path=path)
            )
            await asyncio.sleep(0)


class _Calls:
    def __init__(self, driver: _GapPausingDriver) -> None:
        self._driver = driver

    async def get(self, call_id: str) -> Any:
        return type("CallView", (), {"is_ended": False, "switch": "asterisk-1"})()

    def driver(self, switch: str) -> _GapPausingDriver:
        return self._driver


async def test_a_gap_pause_whose_stop_event_comes_before_its_reply_keeps_the_recording(
    tmp_path: Path,
) -> None:
    # A stressed make test: after a gap pause on Asterisk, resume and stop answered 409 "not
    # being recorded": the pause's MixMonitorStop was handled before the pause was marked
    # done, so it was taken for the end of the recording.
    service, finished = _service(tmp_path, RecordingsSection(enabled=True))
    rid = uuid.uuid4()
    active = Active(
        recording_id=rid,
        call_id="c-1",
        leg="leg-1",
        switch="asterisk-1",
        switch_path=f"/var/spool/asterisk/monitor/{rid}.wav",
        file=audio.SwitchFile(tmp_path / f"{rid}.wav", "wav"),
        rules=RecordingRules("always", "gap", "dual", "", 30),
        started_at=0.0,
    )
    service.active["c-1"] = active
    service._by_leg["leg-1"] = active
    service._calls = _Calls(_GapPausingDriver(service, active))  # type: ignore[assignment]

    await service.control("c-1", "pause")
    await asyncio.sleep(0)
    assert finished == [] and not active.stopping
    assert active.state == "paused" and service.active.get("c-1") is active
