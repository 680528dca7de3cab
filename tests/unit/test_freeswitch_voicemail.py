"""The engine's voicemail ``record`` on FreeSWITCH, against the fake that replays the
outbound-socket-record-silence*.esl recordings (tests/unit/test_fake_esl_voicemail.py).

- the step ends on CHANNEL_EXECUTE_COMPLETE (the session never sees RECORD_START/STOP) and
  returns the take the switch reported (``variable_record_ms`` ...);
- on a G722 call the silence argument counts double, so the session halves it: the
  caller-facing silence is the flow's ``silence_s``;
- the IVR ``record`` step puts the message's length (``duration_ms``) on ``IvrRecorded``;
- a caller who hangs up during the take (the usual end of a voicemail) still leaves a
  message: the record app's CHANNEL_EXECUTE_COMPLETE after CHANNEL_HANGUP carries the take
  so far (INFERRED, not recorded: see tests/fakes/fake_voicemail.py ``run_record``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.ivr.runtime import IvrRuntime
from engine.pbx import base
from engine.pbx.base import CallSession
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from engine.pbx.freeswitch.outbound import FreeSwitchCallSession, OutboundServer, SessionHandler
from tests.fakes.esl_transcripts import outbound_session
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.fakes.fake_voicemail import G722_FILE, PCMU_FILE, CallerSpeech, take


def _recorded(name: str, key: str) -> str:
    done = next(
        e
        for e in outbound_session(f"{name}.outbound")
        if e.name == "CHANNEL_EXECUTE_COMPLETE" and e.get("Application") == "record"
    )
    return done.get(key)


async def _call(
    handler: SessionHandler,
    variables: Mapping[str, str] | None = None,
    caller: CallerSpeech | None = None,
) -> None:
    """A 67XXX call: its far-end leg runs ``handler`` on the engine's outbound server."""
    async with OutboundServer(handler, "127.0.0.1", 0, reply_timeout=5) as server:
        async with FakeFreeSwitch(
            time_scale=0.05, heartbeat_interval=3600, carrier_socket=("127.0.0.1", server.port)
        ) as fs:
            if caller is not None:
                fs.voicemail_callers["67069"] = caller
            driver = FreeSwitchDriver("fs1", fs.host, fs.port, fs.password)
            await driver.start()
            await driver.wait_up()
            await driver.originate(
                base.OriginateRequest(
                    call_id="vm-1",
                    target=base.DialTarget("raw", "sofia/external/67069@127.0.0.1:5080"),
                    then=base.Park(),
                    variables=variables or {},
                )
            )
            for _ in range(2000):
                if server.completed:
                    break
                await asyncio.sleep(0.01)
            await driver.stop()
        assert server.completed == 1, "the IVR session never finished"
        assert server.failures == []


def _record_arg(session: FreeSwitchCallSession) -> str:
    return next(
        e.get("Application-Data")
        for e in session.events
        if e.name == "CHANNEL_EXECUTE" and e.get("Application") == "record"
    )


async def _take(
    silence_s: float, variables: Mapping[str, str] | None = None
) -> tuple[str, base.RecordedTake | None, list[str]]:
    seen: dict[str, Any] = {}

    async def flow(session: CallSession) -> None:
        assert isinstance(session, FreeSwitchCallSession)
        await session.answer()
        seen["take"] = await session.record("/tmp/vm-x.wav", 10, silence_s)
        seen["arg"] = _record_arg(session)
        seen["names"] = [e.name for e in session.events]
        await session.hangup()

    await _call(flow, variables)
    return seen["arg"], seen["take"], seen["names"]


async def test_g722_silence_is_halved_and_the_take_comes_from_execute_complete() -> None:
    # outbound-socket-record-silence.esl: on G722 "2" waited 4 s of silence. A flow that
    # asks for 4 s therefore sends 2, and the take is the recorded one.
    arg, take, names = await _take(4)
    assert arg == "/tmp/vm-x.wav 10 200 2"
    assert take == base.RecordedTake(
        duration_ms=int(_recorded(G722_FILE, "variable_record_ms")),
        size_bytes=int(_recorded(G722_FILE, "variable_record_file_size")),
        ended_by_silence=True,
    )
    assert not [n for n in names if n.startswith(("RECORD_", "PLAYBACK_"))]


async def test_g722_odd_silence_rounds_up_to_whole_units() -> None:
    arg, take, _ = await _take(3)
    assert arg == "/tmp/vm-x.wav 10 200 2"  # 4 s: never shorter than the flow asked
    arg, take, _ = await _take(2)
    assert arg == "/tmp/vm-x.wav 10 200 1"  # 1 unit = 2 s of silence on G722
    assert take is not None and take.ended_by_silence


async def test_pcmu_silence_is_as_given() -> None:
    # outbound-socket-record-silence-pcmu.esl: on PCMU "2" waited 2 s.
    arg, take, _ = await _take(2, {"absolute_codec_string": "PCMU"})
    assert arg == "/tmp/vm-x.wav 10 200 2"
    assert take is not None
    assert take.duration_ms == int(_recorded(PCMU_FILE, "variable_record_ms"))
    assert take.size_bytes == int(_recorded(PCMU_FILE, "variable_record_file_size"))


class _Events:
    def __init__(self) -> None:
        self.items: list[Mapping[str, Any]] = []

    async def publish(self, data: Mapping[str, Any]) -> None:
        self.items.append(data)


async def test_ivr_record_step_reports_the_message_length(tmp_path: Path) -> None:
    result, items = await _ivr_record(tmp_path, None)
    (recorded,) = [e for e in items if e["type"] == "IvrRecorded"]
    assert recorded["duration_ms"] == int(_recorded(G722_FILE, "variable_record_ms"))
    assert recorded["path"].startswith("/tmp/ivr-")
    assert result.variables["record.duration_ms"] == recorded["duration_ms"]


#: The recorded caller (1 s of nothing, 2 s of speech, then silent RTP) hangs up 1.5 s into
#: the silence, long before the 4 s of silence would end the take.
HANGS_UP = CallerSpeech(hangup_at_s=4.5)
#: What the fake then reports: the recording's take (G722) cut at the hang-up.
HANGS_UP_MS = round(take(G722_FILE).written_offset_ms + (2.0 + 1.5) * 1000)


async def test_hangup_during_the_take_returns_what_was_recorded() -> None:
    seen: dict[str, Any] = {}

    async def flow(session: CallSession) -> None:
        await session.answer()
        try:
            await session.record("/tmp/vm-x.wav", 10, 4)
        except base.HangupDuringRecord as gone:
            seen["take"] = gone.take
        else:
            seen["take"] = "no hang-up"

    await _call(flow, caller=HANGS_UP)
    assert seen["take"] == base.RecordedTake(
        duration_ms=HANGS_UP_MS,
        size_bytes=44 + 2 * (HANGS_UP_MS * 16),  # 16 kHz, 16-bit
        ended_by_silence=False,
    )


async def _ivr_record(tmp_path: Path, caller: CallerSpeech | None) -> tuple[Any, list[Any]]:
    flows = tmp_path / "ivr"
    flows.mkdir()
    (flows / "vm.yaml").write_text(
        "name: vm\nsteps:\n  - answer\n"
        "  - id: take\n"
        "    record: {into: message, max_s: 10, silence_s: 4, on_error: failed}\n"
        "  - hangup\n"
        "  - id: failed\n    hangup: {}\n"
    )
    events = _Events()
    runtime = IvrRuntime(
        flows, events, tts_dir=tmp_path / "tts", tts_prefix="tts", recordings_dir="/tmp"
    )
    assert runtime.load() == []
    results = []

    async def handler(session: CallSession) -> None:
        results.append(await runtime.run(session, "vm"))

    await _call(handler, caller=caller)
    return results[0], events.items


async def test_ivr_record_step_keeps_the_message_of_a_caller_who_hangs_up(
    tmp_path: Path,
) -> None:
    result, events = await _ivr_record(tmp_path, HANGS_UP)
    assert result.end == "caller hung up"
    (recorded,) = [e for e in events if e["type"] == "IvrRecorded"]
    assert (recorded["duration_ms"], recorded["ended_by"]) == (HANGS_UP_MS, "hangup")
    assert recorded["path"].startswith("/tmp/ivr-")
    assert [e["type"] for e in events][-2:] == ["IvrRecorded", "IvrFinished"]


async def test_ivr_record_step_drops_an_empty_take_at_the_hangup(tmp_path: Path) -> None:
    # The caller hangs up before saying anything (no RTP came yet): record_ms 0.
    result, events = await _ivr_record(tmp_path, CallerSpeech(hangup_at_s=0.5))
    assert result.end == "caller hung up"
    assert not [e for e in events if e["type"] == "IvrRecorded"]
