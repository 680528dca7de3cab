"""A voicemail message's plaintext stays while its call lives, so the flow can play it back
(``record into: msg``, then ``play: "{msg}"``), and goes when the call ends: at its HungUp,
when recovery finds its channel gone (a HungUp missed), or after a restart (the index row still
names the file). The sealed copy is made at once, as before (docs/recordings.md "Voicemail").
"""

from __future__ import annotations

import io
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from engine.core.errors import PbxUnavailable
from engine.ivr.runtime import IvrRuntime
from engine.pbx.asterisk.agi_codec import parse_environment
from engine.pbx.base import HungUp, LiveChannel
from engine.recordings import crypto
from engine.recordings.config import RecordingsSection, SwitchPaths
from engine.recordings.service import CallsPort, RecordingService
from engine.recordings.store import RecordingIndex
from tests.unit.test_agi_session import Step, connected, transcript_env

SWITCH = "ast1"


class _Sink:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put(self, payload: dict[str, Any]) -> None:
        self.items.append(payload)

    def kinds(self, rid: str) -> list[str]:
        return [p["kind"] for p in self.items if p.get("recording_id") == rid]


@dataclass
class _Driver:
    live: set[str] = field(default_factory=set)
    down: bool = False

    async def live_calls(self) -> list[LiveChannel]:
        if self.down:
            raise PbxUnavailable("link down")
        return [LiveChannel(call_id=c, channel=f"PJSIP/{c}", state="answered") for c in self.live]


@dataclass
class _Calls:
    drv: _Driver

    async def get(self, call_id: str) -> Any:
        raise AssertionError("a voicemail's call is not a tracked call")

    def driver(self, name: str) -> _Driver:
        assert name == SWITCH
        return self.drv


@dataclass
class _Index:
    """What recovery reads of PostgreSQL (the rows a stopped engine left); the lane's
    ``plaintext_removed`` records clear a row's ``source`` as they are written."""

    lane: _Sink
    kept: list[tuple[Any, str]] = field(default_factory=list)

    async def unfinished(self, switches: list[str], before: float) -> list[Any]:
        return []

    async def pending_voicemail(self, switches: list[str], before: float) -> list[Any]:
        return []

    async def kept_voicemail(self, switches: list[str]) -> list[tuple[Any, str]]:
        removed = {p["recording_id"] for p in self.lane.items if p["kind"] == "plaintext_removed"}
        return [(row, source) for row, source in self.kept if row.recording_id not in removed]


@dataclass
class _Rig:
    service: RecordingService
    records: _Sink
    driver: _Driver
    index: _Index
    spool: Path
    store: Path


@pytest.fixture
def rig(tmp_path: Path) -> _Rig:
    spool, store = tmp_path / "spool", tmp_path / "store"
    spool.mkdir()
    section = RecordingsSection(
        store_dir=str(store),
        switches={SWITCH: SwitchPaths(switch_dir="/var/spool/vm", engine_dir=str(spool))},
    )
    records, driver = _Sink(), _Driver()
    index = _Index(records)
    service = RecordingService(
        section,
        keys=crypto.KeyRing({"k1": bytes(32)}, "k1"),
        calls=cast(CallsPort, _Calls(driver)),
        records=records,
        events=_Sink(),
        index=cast(RecordingIndex, index),
        store_dir=store,
    )
    return _Rig(service, records, driver, index, spool, store)


def _take(rig: _Rig, call_id: str, ended_by: str | None = None) -> tuple[str, Path]:
    """The switch leaves a 1 s take; the step reports it. Its recording id and file."""
    name = f"ivr-{call_id}-1000.wav"
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x20" * 8000)
    (rig.spool / name).write_bytes(buf.getvalue())
    rid = rig.service.voicemail(
        {
            "type": "IvrRecorded",
            "call_id": call_id,
            "ts": time.time(),
            "flow": "vm",
            "path": f"/var/spool/vm/{name}",
            "max_s": 10,
            "duration_ms": 1000,
            "ended_by": ended_by,
            "kind": "voicemail",
        }
    )
    assert rid is not None
    return rid, rig.spool / name


def _finished(rig: _Rig, rid: str) -> dict[str, Any]:
    (done,) = [p for p in rig.records.items if p["kind"] == "finished"]
    assert done["recording_id"] == rid
    return done


def _sealed(rig: _Rig, rid: str) -> bool:
    return any(rig.store.rglob(f"{rid}.enc"))


async def test_the_plaintext_stays_while_the_call_lives_and_goes_at_its_hangup(
    rig: _Rig,
) -> None:
    rid, plain = _take(rig, "c1")
    assert await rig.service.wait_idle(10)
    # Sealed and journalled ready as before; the plaintext kept, and the row told so.
    done = _finished(rig, rid)
    assert (done["state"], done["plaintext_kept"]) == ("ready", True)
    assert _sealed(rig, rid) and plain.exists()
    assert rig.service.kept_plaintext == {"c1": [str(plain)]}
    # Another leg's hang-up changes nothing; the call's own removes it, once.
    rig.service.handle(HungUp(switch=SWITCH, call_id="other", ts=1.0, cause=16))
    assert plain.exists()
    rig.service.handle(HungUp(switch=SWITCH, call_id="c1", ts=2.0, cause=16))
    assert not plain.exists() and _sealed(rig, rid)
    assert rig.records.kinds(rid) == ["voicemail", "finished", "plaintext_removed"]
    assert rig.service.kept_plaintext == {}


async def test_a_failed_seal_leaves_the_plaintext_as_the_only_copy(
    rig: _Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(active: Any) -> dict[str, Any]:
        raise OSError("disk full")

    monkeypatch.setattr(rig.service, "_seal", broken)
    rid, plain = _take(rig, "c4")
    assert await rig.service.wait_idle(10)
    done = _finished(rig, rid)
    assert (done["state"], done["plaintext_kept"]) == ("failed", False)
    assert rig.service.kept_plaintext == {}  # nothing waits for the call's end
    rig.service.handle(HungUp(switch=SWITCH, call_id="c4", ts=2.0, cause=16))
    assert plain.exists()  # nothing accepted is lost
    assert rig.records.kinds(rid) == ["voicemail", "finished"]


async def test_a_message_ended_by_the_callers_hangup_keeps_no_plaintext(rig: _Rig) -> None:
    rid, plain = _take(rig, "c2", ended_by="hangup")
    assert await rig.service.wait_idle(10)
    assert _finished(rig, rid)["plaintext_kept"] is False
    assert not plain.exists() and _sealed(rig, rid)
    assert rig.service.kept_plaintext == {}


async def test_a_hangup_while_sealing_removes_the_plaintext_once_sealed(rig: _Rig) -> None:
    rid, plain = _take(rig, "c3")
    rig.service.handle(HungUp(switch=SWITCH, call_id="c3", ts=2.0, cause=16))  # before sealing
    assert await rig.service.wait_idle(10)
    assert _finished(rig, rid)["plaintext_kept"] is False
    assert not plain.exists() and _sealed(rig, rid)
    # A message reported after its call's HungUp (events race) keeps nothing either.
    late, late_plain = _take(rig, "c3")
    assert await rig.service.wait_idle(10)
    assert not late_plain.exists() and _sealed(rig, late)


async def test_recovery_removes_the_plaintext_of_a_call_whose_hangup_was_missed(
    rig: _Rig,
) -> None:
    gone_rid, gone = _take(rig, "c5")
    live_rid, live = _take(rig, "c6")
    assert await rig.service.wait_idle(10)
    rig.driver.down = True  # the switch cannot say: nothing is removed on a guess
    await rig.service.recover_once(min_age_s=0)
    assert gone.exists() and live.exists()
    rig.driver.down, rig.driver.live = False, {"c6"}
    await rig.service.recover_once(min_age_s=0)
    assert not gone.exists() and live.exists()
    assert rig.records.kinds(gone_rid)[-1] == "plaintext_removed"
    assert "plaintext_removed" not in rig.records.kinds(live_rid)
    assert rig.service.kept_plaintext == {"c6": [str(live)]}


async def test_after_a_restart_recovery_removes_what_a_stopped_engine_kept(rig: _Rig) -> None:
    """The rows still name their file (``source``); this engine never heard of them."""
    files = {}
    for call_id in ("c7", "c8"):
        path = rig.spool / f"ivr-{call_id}-1.wav"
        path.write_bytes(b"RIFF....WAVE")
        files[call_id] = path
        row = SimpleNamespace(
            recording_id=str(uuid.uuid4()),
            call_id=call_id,
            switch=SWITCH,
            pause_mode="silence",
            retention_days=30,
            started_at=time.time() - 60,
            flow="vm",
            ended_by=None,
        )
        rig.index.kept.append((row, str(path)))
    rig.driver.live = {"c8"}  # c7 ended while the engine was down; c8 still talks
    await rig.service.recover_once(min_age_s=0)
    assert not files["c7"].exists() and files["c8"].exists()
    assert [p["kind"] for p in rig.records.items] == ["plaintext_removed"]
    # c8's own hang-up removes it (the next round does not take it twice).
    await rig.service.recover_once(min_age_s=0)
    rig.service.handle(HungUp(switch=SWITCH, call_id="c8", ts=2.0, cause=16))
    assert not files["c8"].exists()
    assert [p["kind"] for p in rig.records.items] == ["plaintext_removed"] * 2


# ----------------------------------------------------------------------------- the IVR side

FLOW = """\
name: review
variables: {other: "/etc/passwd"}
steps:
  - record: {into: message, max_s: 30, beep: false, on_error: failed}
  - play: "{message}"
  - play: "{other}"
  - hangup
  - id: failed
    hangup: {}
"""
CALL_ID = parse_environment(transcript_env()).uniqueid
BASE = f"/rec/ivr-{CALL_ID}-1000"


async def test_a_flow_plays_back_the_message_it_recorded(tmp_path: Path) -> None:
    """``play: "{message}"`` plays the take on Asterisk (STREAM FILE without ``.wav``, as
    RECORD FILE took it); a filled-in path the call did not record is still refused."""
    flows = tmp_path / "ivr"
    flows.mkdir()
    (flows / "review.yaml").write_text(FLOW)
    events: list[Any] = []

    class _Events:
        async def publish(self, data: Any) -> None:
            events.append(data)

    runtime = IvrRuntime(
        flows,
        _Events(),
        tts_dir=tmp_path / "tts",
        tts_prefix="tts",
        recordings_dir="/rec",
        wall_clock=lambda: 1000.0,
    )
    assert runtime.load() == []
    steps = [
        Step(("RECORD", "FILE", BASE, "wav", "#", "30000"), b"200 result=35 (dtmf) endpos=8000\n"),
        Step(("SET", "VARIABLE", "message", f"{BASE}.wav"), b"200 result=1\n"),
        Step(("STREAM", "FILE", BASE, ""), b"200 result=0 endpos=8000\n"),
        Step(("HANGUP",), b"200 result=1\n"),
    ]
    async with connected(steps) as h:
        result = await runtime.run(h.session, "review")
    assert h.fake.mismatches == [], h.fake.mismatches
    assert result.end == "hangup"
    assert result.prompts == [BASE + ".wav"]
    assert [e["type"] for e in events] == ["IvrStarted", "IvrRecorded", "IvrFinished"]
