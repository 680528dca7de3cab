"""Voicemail messages of the IVR ``record`` step are recordings (docs/recordings.md
"Voicemail"): the whole engine (real PostgreSQL and Redis) against the fake FreeSWITCH, whose
67XXX far end runs the engine's IVR over the outbound socket and, for these tests, writes each
take's WAV where the step asked (tests/fakes/fake_voicemail.py ``write_take``).

What is checked is what a user sees: the message in ``GET /v1/recordings`` (``kind`` filter,
flow, ``ended_by``, no queue/campaign/agent), ``GET /v1/recordings/{id}`` and its audio
decrypting to the switch's file; the event ``IvrRecorded`` naming the recording and
``RecordingReady``; on disk, no plaintext left and an encrypted store file. A caller who hangs
up during the take leaves a listed message; one who hangs up before saying anything leaves none.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from engine.pbx.base import CallSession
from engine.pbx.freeswitch.outbound import OutboundServer
from engine.store.pg.pool import PgStore
from tests.api.openapi_check import check
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch, OutboundLeg
from tests.fakes.fake_voicemail import CallerSpeech
from tests.harness import (
    TOKEN,
    Client,
    engine_config,
    event_log,
    freeswitch_switch_toml,
    running_engine,
    wait_for,
)
from tests.integration.engine_process import free_port

SWITCH = "freeswitch-1"
FLOW = """name: vm
steps:
  - answer
  - record: {into: message, max_s: 10, silence_s: 4, on_error: failed}
  - hangup
  - id: failed
    hangup: {}
"""
#: The caller reviews the message: it is played back from its `into` path, then the line is
#: held (a gather that loops on its timeout) until the caller hangs up.
REVIEW = """name: review
steps:
  - answer
  - record: {into: message, max_s: 10, silence_s: 4, on_error: failed}
  - play: "{message}"
  - id: hold
    gather: {prompt: beep, into: key, max_digits: 1, timeout_s: 120, on_timeout: hold}
  - hangup
  - id: failed
    hangup: {}
"""


@dataclass
class Rig:
    engine: Engine
    client: Client
    fs: FakeFreeSwitch
    spool: Path
    store: Path
    #: call id of each IVR session (the far-end leg), in order
    sessions: list[str]
    #: the event stream as a WebSocket client receives it (set by each test)
    events: list[dict[str, Any]]
    #: the flow the next IVR sessions run, in order ("vm" once it is empty)
    flows: list[str]


@pytest.fixture(scope="module")
async def rig(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Rig]:
    base = store_data_dir / f"rec-vm-{uuid.uuid4().hex[:6]}"
    spool, store, flows = base / "spool", base / "store", base / "ivr"
    (spool / "ivr").mkdir(parents=True)
    flows.mkdir()
    (flows / "vm.yaml").write_text(FLOW)
    (flows / "review.yaml").write_text(REVIEW)
    sessions: list[str] = []
    plan: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        # The IVR's record files, in the switch's view: a directory inside the mapped one.
        mp.setenv("ENGINE_IVR_RECORDINGS_DIR", str(spool / "ivr"))
        async with CarrierFakeAmi() as ami, FakeFreeSwitch(time_scale=0.05) as fs:
            fs.voicemail_files = {}
            switch = freeswitch_switch_toml(
                SWITCH, fs.host, fs.port, fs.password, outbound_port=free_port()
            )
            extra = f"""{switch}
[[trunks]]
name = "fs-good"
switch = "{SWITCH}"
target = "carrier"
max_channels = 20
max_cps = 20

[recordings]
store_dir = "{store}"
frame_size = 8192
retention_days = 30
[recordings.switches.{SWITCH}]
switch_dir = "{spool}"
engine_dir = "{spool}"
"""
            cfg = engine_config(
                pg_dsn=pg_dsn,
                redis_url=redis_url,
                prefix=f"recvm:{uuid.uuid4().hex[:8]}:",
                data_dir=base / "engine",
                ami_port=ami.port,
                agi_bind_port=0,
                ivr_dir=flows,
                extra=extra,
            )
            async with running_engine(cfg) as (engine, client):
                assert engine.ivr is not None

                async def handler(session: CallSession) -> None:
                    # The fake's far end does not say which flow: the door runs "vm", or
                    # what the test planned.
                    sessions.append(session.call_id)
                    assert engine.ivr is not None
                    await engine.ivr.run(session, plan.pop(0) if plan else "vm")

                async with OutboundServer(handler, "127.0.0.1", 0) as server:
                    fs.carrier_socket = ("127.0.0.1", server.port)
                    yield Rig(engine, client, fs, spool, store, sessions, [], plan)


async def _leave_message(rig: Rig, number: str, caller: CallerSpeech) -> str:
    """Call ``number`` (67XXX: the far end runs the IVR); the IVR session's call id once it
    has finished (the take is over and reported)."""
    rig.fs.voicemail_callers[number] = caller
    before = len(rig.sessions)
    finished_before = _finished(rig)
    await rig.client.originate(number, trunk="fs-good", timeout_s=10)
    await wait_for(lambda: len(rig.sessions) > before, what="the IVR session")
    await wait_for(lambda: _finished(rig) > finished_before, what="the IVR session's end")
    return rig.sessions[before]


def _finished(rig: Rig) -> int:
    return sum(
        1
        for m in list(rig.events)
        if isinstance(m.get("event"), dict) and m["event"].get("type") == "IvrFinished"
    )


def _events(rig: Rig, type_: str, call_id: str) -> list[dict[str, Any]]:
    return [
        m["event"]
        for m in list(rig.events)
        if isinstance(m.get("event"), dict)
        and m["event"].get("type") == type_
        and m["event"].get("call_id") == call_id
    ]


async def _listed(rig: Rig, **query: str) -> list[dict[str, Any]]:
    status, body, _ = await rig.client.request("GET", "/recordings", params=query)
    assert status == 200, body
    assert isinstance(body, dict)
    check("/v1/recordings", "get", 200, body)
    return list(body["recordings"])


async def _ready_message(rig: Rig, call_id: str) -> dict[str, Any]:
    """The call's voicemail message once ``RecordingReady`` said its row is ready."""
    await wait_for(lambda: _events(rig, "RecordingReady", call_id), what="RecordingReady")
    (row,) = await _listed(rig, kind="voicemail", call_id=call_id)
    assert row["state"] == "ready", row
    return row


async def _audio(rig: Rig, rid: str) -> bytes:
    async with rig.client.http.get(
        f"{rig.client.base}/recordings/{rid}/audio", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "audio/wav"
        return await r.read()


def _exists(path: str) -> bool:
    return Path(path).exists()


def _pcm(data: bytes) -> tuple[bytes, int, int]:
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()


async def _check_message(rig: Rig, call_id: str, ended_by: str) -> dict[str, Any]:
    row = await _ready_message(rig, call_id)
    (recorded,) = _events(rig, "IvrRecorded", call_id)
    assert recorded["recording_id"] == row["recording_id"]
    assert recorded["ended_by"] == ended_by
    assert row["kind"] == "voicemail"
    assert (row["flow"], row["ended_by"]) == ("vm", ended_by)
    assert (row["agent_id"], row["queue"], row["campaign"]) == (None, None, None)
    assert (row["switch"], row["channels"], row["retention_days"]) == (SWITCH, "mono", 30)
    assert row["duration_s"] == pytest.approx(recorded["duration_ms"] / 1000, abs=0.001)
    # by id, and the audio: the switch's file, decrypted
    status, one, _ = await rig.client.request("GET", f"/recordings/{row['recording_id']}")
    assert status == 200 and one == row
    check("/v1/recordings/{recording_id}", "get", 200, one)
    got = _pcm(await _audio(rig, row["recording_id"]))
    switch_file = rig.fs.voicemail_files or {}
    assert got == _pcm(switch_file[recorded["path"]]), "not the switch's take"
    assert got[1:] == (16000, 1)  # G722 calls record at 16 kHz
    # the call-recording view does not list it; RecordingReady says what it is
    assert await _listed(rig, kind="call", call_id=call_id) == []
    (ready,) = _events(rig, "RecordingReady", call_id)
    assert ready["recording_id"] == row["recording_id"]
    assert (ready["kind"], ready["flow"], ready["queue"]) == ("voicemail", "vm", None)
    # encrypted at rest; the switch's plaintext is gone (at the call's end)
    await wait_for(lambda: not _exists(recorded["path"]), what="the plaintext removed")
    (enc,) = list(rig.store.rglob(f"{row['recording_id']}.enc"))
    blob = enc.read_bytes()
    assert b"RIFF" not in blob and b"WAVE" not in blob
    assert not list(rig.store.rglob(f"{row['recording_id']}.key"))  # the key is in the row
    return row


async def test_a_voicemail_message_is_listed_and_its_audio_is_the_take(rig: Rig) -> None:
    async with event_log(rig.client) as rig.events:
        # The recorded caller: 1 s of nothing, 2 s of speech, silence ends the take.
        call_id = await _leave_message(rig, "67069", CallerSpeech())
        await _check_message(rig, call_id, "silence")


async def test_a_caller_who_hangs_up_during_the_take_leaves_a_listed_message(rig: Rig) -> None:
    async with event_log(rig.client) as rig.events:
        call_id = await _leave_message(rig, "67068", CallerSpeech(hangup_at_s=4.5))
        row = await _check_message(rig, call_id, "hangup")
        assert row["duration_s"] > 2.0


async def test_an_empty_take_is_not_listed(rig: Rig) -> None:
    async with event_log(rig.client) as rig.events:
        # The caller hangs up before any audio came: no message (docs/ivr.md `record`).
        empty = await _leave_message(rig, "67070", CallerSpeech(hangup_at_s=0.5))
        # Then one with a message, so that the empty one had every chance to be indexed.
        spoken = await _leave_message(rig, "67071", CallerSpeech(hangup_at_s=4.5))
        await _ready_message(rig, spoken)
        assert await _listed(rig, call_id=empty) == []
        assert not _events(rig, "IvrRecorded", empty)
        listed = await _listed(rig, kind="voicemail")
        assert empty not in {r["call_id"] for r in listed}


async def test_a_take_the_switch_says_is_empty_is_not_listed(rig: Rig) -> None:
    async with event_log(rig.client) as rig.events:
        # No speech and no RTP: the silence ends the take with record_ms 0. The step still
        # reports it (IvrRecorded, duration_ms 0), but there is no message to keep.
        call_id = await _leave_message(rig, "67072", CallerSpeech(length_s=0, rtp_after=False))
        (recorded,) = _events(rig, "IvrRecorded", call_id)
        assert recorded["duration_ms"] == 0 and "recording_id" not in recorded
        assert await _listed(rig, kind="voicemail", call_id=call_id) == []
        assert await _listed(rig, call_id=call_id) == []


async def test_a_message_journalled_before_a_crash_is_sealed_by_recovery(rig: Rig) -> None:
    service = rig.engine.recordings
    assert service is not None
    lane = rig.engine.recording_lane
    assert lane is not None
    sealing = service.finish

    async def crashed(active: Any, ended_at: float) -> None:
        """The engine died right after the step reported the message: nothing sealed."""

    service.finish = crashed  # type: ignore[method-assign]
    try:
        async with event_log(rig.client) as rig.events:
            call_id = await _leave_message(rig, "67073", CallerSpeech(hangup_at_s=4.5))
            (recorded,) = _events(rig, "IvrRecorded", call_id)
            await wait_for(lambda: lane.journal.depth == 0, what="the lane delivered")
            # The journalled message is in the index, being sealed; the plaintext is kept.
            (row,) = await _listed(rig, kind="voicemail", call_id=call_id)
            assert (row["state"], row["recording_id"]) == ("finishing", recorded["recording_id"])
            assert _exists(recorded["path"])
            # What a restarted engine knows of it: nothing but the index.
            service._voicemails.clear()
            service.finish = sealing  # type: ignore[method-assign]
            assert await service.recover_once(min_age_s=0) >= 1
            await _check_message(rig, call_id, "hangup")
    finally:
        service.finish = sealing  # type: ignore[method-assign]


async def test_the_kind_filter_is_declared_and_checked(rig: Rig) -> None:
    status, body, _ = await rig.client.request("GET", "/recordings", params={"kind": "call"})
    assert status == 200, body
    check("/v1/recordings", "get", 200, body)
    assert all(r["kind"] == "call" for r in body["recordings"])
    status, body, _ = await rig.client.request("GET", "/recordings", params={"kind": "fax"})
    assert status == 400, body
    assert body["error_id"] == "invalid-query" and "must be one of call, voicemail" in str(body)


async def test_a_header_only_file_is_no_message(rig: Rig) -> None:
    """Asterisk's RECORD FILE does not say how long the take was (``duration_ms`` null): a
    file holding only its WAV header is found empty when sealing, and its row goes away."""
    service = rig.engine.recordings
    assert service is not None
    lane = rig.engine.recording_lane
    assert lane is not None
    path = rig.spool / "ivr" / f"ivr-ast-{uuid.uuid4().hex[:8]}-1.wav"
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
    await asyncio.to_thread(path.write_bytes, buf.getvalue())
    call_id = f"ast-{uuid.uuid4().hex[:8]}"
    rid = service.voicemail(
        {
            "type": "IvrRecorded",
            "call_id": call_id,
            "ts": time.time(),
            "flow": "vm",
            "path": str(path),
            "max_s": 10,
            "duration_ms": None,
            "ended_by": None,
            "kind": "voicemail",
        }
    )
    assert rid is not None  # journalled: the length is unknown until the file is read
    await wait_for(lambda: not _exists(str(path)), what="the empty file dropped")
    await wait_for(lambda: lane.journal.depth == 0, what="the lane delivered")
    assert await _listed(rig, kind="voicemail", call_id=call_id) == []
    status, body, _ = await rig.client.request("GET", f"/recordings/{rid}")
    assert status == 404, body


async def test_the_flow_plays_the_message_back_and_its_plaintext_goes_with_the_call(
    rig: Rig, pg_store: PgStore
) -> None:
    """``record into: message`` then ``play: "{message}"`` (a caller reviewing the message):
    the message is sealed and listed at once, as ever, and its plaintext stays for the flow
    while the call lives (the row keeps ``source``); the caller's hang-up removes it."""
    rig.flows.append("review")
    before = len(rig.sessions)
    async with event_log(rig.client) as rig.events:
        await rig.client.originate("67069", trunk="fs-good", timeout_s=10)
        await wait_for(lambda: len(rig.sessions) > before, what="the IVR session")
        call_id = rig.sessions[before]
        leg = rig.fs.channels[call_id].session
        assert isinstance(leg, OutboundLeg)
        row = await _ready_message(rig, call_id)  # sealed and listed while the call goes on
        (recorded,) = _events(rig, "IvrRecorded", call_id)
        playback = f"execute-app-name: playback\nexecute-app-arg: {recorded['path']}"
        await wait_for(
            lambda: any(playback in c for c in list(leg.received)), what="the message played"
        )
        rid = uuid.UUID(row["recording_id"])
        source = "SELECT source FROM recordings WHERE recording_id = $1"
        assert await pg_store.pool.fetchval(source, rid) == recorded["path"]
        index = rig.engine.recordings.index if rig.engine.recordings else None
        assert index is not None
        kept = {r.recording_id: path for r, path in await index.kept_voicemail([SWITCH])}
        assert kept.get(row["recording_id"]) == recorded["path"]  # what recovery would read
        assert _exists(recorded["path"])  # still there for the flow, the call still up
        assert not leg.hung_up
        await leg.hangup()
        await wait_for(lambda: not _exists(recorded["path"]), what="the plaintext removed")
        lane = rig.engine.recording_lane
        assert lane is not None
        await wait_for(lambda: lane.journal.depth == 0, what="the lane delivered")
        assert await pg_store.pool.fetchval(source, rid) is None
        kept = {r.recording_id: path for r, path in await index.kept_voicemail([SWITCH])}
        assert row["recording_id"] not in kept
    # The sealed message is whole: its audio decrypts to the switch's take.
    got = _pcm(await _audio(rig, row["recording_id"]))
    assert got == _pcm((rig.fs.voicemail_files or {})[recorded["path"]])
