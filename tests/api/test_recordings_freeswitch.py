"""Recordings on FreeSWITCH, end to end: the whole engine (real PostgreSQL and Redis) against
the fake FreeSWITCH, which records like the third batch of real recordings
(tests/fakes/fake_recorder.py: first 0.5 s missing, mask = digital silence, pause = gap,
RECORD_STEREO = two channels, the far end's 440 Hz tone).

What is checked is what a user sees: the API's answers, the ``RecordingReady`` event, and the
downloaded, decrypted WAV analysed with numpy (tone where there was tone, zeros where masked,
the paused time gone, the right duration); and on disk, that no plaintext stays.

The waits marked "audio" let wall-clock time pass on purpose: the length of the recorded
audio is the stimulus. Everything else waits for a condition.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from engine.app import Engine
from tests.api.openapi_check import check
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import (
    Client,
    engine_config,
    event_log,
    freeswitch_switch_toml,
    running_engine,
    wait_for,
)
from tests.storage_proxy import StorageProxy, pg_dsn_via, pg_upstream

SWITCH = "freeswitch-1"
RATE = 16000
START_LOSS_S = 0.5  # recorded: a FreeSWITCH recording starts 0.5 s after uuid_record start


@dataclass
class Rig:
    engine: Engine
    client: Client
    fs: FakeFreeSwitch
    proxy: StorageProxy
    spool: Path
    store: Path
    pg_dsn: str


@pytest.fixture(scope="module")
async def rig(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Rig]:
    base = store_data_dir / f"rec-fs-{uuid.uuid4().hex[:6]}"
    spool, store = base / "spool", base / "store"
    spool.mkdir(parents=True)
    async with (
        StorageProxy(pg_upstream(pg_dsn)) as proxy,
        CarrierFakeAmi() as ami,
        FakeFreeSwitch(time_scale=0.05) as fs,
    ):
        extra = f"""{freeswitch_switch_toml(SWITCH, fs.host, fs.port, fs.password)}
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
[recordings.campaigns.gapcamp]
pause = "gap"
channels = "dual"
retention_days = 7
[recordings.campaigns.nevercamp]
policy = "never"
[recordings.queues.sales]
policy = "always"
channels = "dual"
retention_days = 60

[acd]
pause_reasons = ["break"]
[[agents]]
id = "a1"
endpoints = {{ {SWITCH} = "user/agent1" }}
skills = {{ sales = 9 }}
[[queues]]
name = "sales"
skills = {{ sales = 5 }}
ring_timeout_s = 2.0
wrap_up_s = 0.5
"""
        cfg = engine_config(
            pg_dsn=pg_dsn_via(pg_dsn, proxy.port),
            redis_url=redis_url,
            prefix=f"recfs:{uuid.uuid4().hex[:8]}:",
            data_dir=base / "engine",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=extra,
        )
        async with running_engine(cfg) as (engine, client):
            yield Rig(engine, client, fs, proxy, spool, store, pg_dsn)


async def _call(rig: Rig, **variables: str) -> str:
    # 69XXX: the far end answers and plays a continuous 440 Hz tone (third batch)
    call = await rig.client.originate(
        "69001", trunk="fs-good", timeout_s=10, variables=variables or None
    )
    await rig.client.wait_state(call["call_id"], "answered")
    return str(call["call_id"])


async def _act(rig: Rig, call_id: str, action: str) -> tuple[float, dict[str, Any]]:
    """Send one recording action; returns the loop time it was sent at and the answer."""
    at = asyncio.get_running_loop().time()
    status, body, _ = await rig.client.request(
        "POST", f"/calls/{call_id}/recording", json={"action": action}
    )
    assert status == 200, body
    assert isinstance(body, dict)
    check("/v1/calls/{call_id}/recording", "post", 200, body)
    return at, body


async def _audio_time(seconds: float) -> None:
    """audio: let the call talk for ``seconds`` (the recording's content is the stimulus)."""
    await asyncio.sleep(seconds)


def _ready(events: list[dict[str, Any]], rid: str) -> bool:
    return any(
        isinstance(m.get("event"), dict)
        and m["event"].get("type") == "RecordingReady"
        and m["event"].get("recording_id") == rid
        for m in list(events)
    )


async def _raw(rig: Rig, rid: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    from tests.harness import TOKEN

    async with rig.client.http.get(
        f"{rig.client.base}/recordings/{rid}/audio",
        headers={"Authorization": f"Bearer {TOKEN}", **headers},
    ) as r:
        return r.status, await r.read(), dict(r.headers)


def _pcm(wav_bytes: bytes) -> tuple[np.ndarray, int, int]:
    with wave.open(io.BytesIO(wav_bytes), "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.reshape(-1, channels), rate, channels


def _tone_440(window: np.ndarray, rate: int) -> bool:
    """A 440 Hz tone dominates the window (and it is loud)."""
    x = window.astype(np.float64)
    if np.abs(x).max() < 3000:
        return False
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak = np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))]
    return bool(abs(peak - 440) < 15)


def _windows(ch: np.ndarray, rate: int, step_s: float = 0.1) -> list[tuple[float, np.ndarray]]:
    n = int(step_s * rate)
    return [(i / rate, ch[i : i + n]) for i in range(0, len(ch) - n + 1, n)]


def _no_plaintext(rig: Rig, rid: str) -> None:
    assert not any(rig.spool.iterdir()), f"plaintext left in the spool: {list(rig.spool.iterdir())}"
    enc = list(rig.store.rglob(f"{rid}.enc"))
    assert len(enc) == 1
    blob = enc[0].read_bytes()
    assert b"RIFF" not in blob and b"WAVE" not in blob
    # the tone's PCM would repeat with a 440 Hz period; ciphertext has no such runs
    assert len(set(blob[:4096])) > 200
    assert not list(rig.store.rglob("*.part"))


async def test_mask_gives_silence_and_the_download_is_the_call(rig: Rig) -> None:
    async with event_log(rig.client) as events:
        call_id = await _call(rig)
        t_start, started = await _act(rig, call_id, "start")
        rid = started["recording_id"]
        assert started["state"] == "recording" and started["pause_mode"] == "silence"
        await _audio_time(1.5)
        t_pause, paused = await _act(rig, call_id, "pause")
        assert paused["state"] == "paused"
        await _audio_time(1.0)
        t_resume, _ = await _act(rig, call_id, "resume")
        await _audio_time(1.0)
        t_stop, _ = await _act(rig, call_id, "stop")
        await wait_for(lambda: _ready(events, rid), 20, "RecordingReady")

    status, row, _ = await rig.client.request("GET", f"/recordings?call_id={call_id}")
    assert status == 200 and len(row["recordings"]) == 1, row
    check("/v1/recordings", "get", 200, row)
    rec = row["recordings"][0]
    assert rec["recording_id"] == rid and rec["state"] == "ready"
    assert rec["channels"] == "mono" and rec["sample_rate"] == RATE
    assert rec["key_id"].startswith("local-test-") and rec["retention_days"] == 30
    assert "wrapped_key" not in rec

    status, wav_bytes, headers = await _raw(rig, rid)
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    assert hashlib.sha256(wav_bytes).hexdigest() == rec["sha256"]
    assert len(wav_bytes) == rec["size"]
    pcm, rate, channels = _pcm(wav_bytes)
    assert (rate, channels) == (RATE, 1)
    duration = len(pcm) / rate
    want = t_stop - t_start - START_LOSS_S
    assert abs(duration - want) < 0.25, (duration, want)
    assert abs(rec["duration_s"] - duration) < 0.01
    # file time = time since the start - 0.5 s; margins for the API round trips
    mask_from, mask_to = t_pause - t_start - START_LOSS_S, t_resume - t_start - START_LOSS_S
    for at, window in _windows(pcm[:, 0], rate):
        if at + 0.1 < mask_from - 0.15 or mask_to + 0.15 < at:
            assert _tone_440(window, rate), f"no tone at {at:.1f} s"
        elif mask_from + 0.15 < at and at + 0.1 < mask_to - 0.15:
            assert np.abs(window).max() == 0, f"masked audio not silent at {at:.1f} s"

    # Range: the same bytes as the whole file
    status, part, headers = await _raw(rig, rid, Range="bytes=44-8235")
    assert status == 206 and part == wav_bytes[44:8236]
    assert headers["Content-Range"] == f"bytes 44-8235/{len(wav_bytes)}"
    status, tail, _ = await _raw(rig, rid, Range="bytes=-100")
    assert status == 206 and tail == wav_bytes[-100:]
    status, body, _ = await rig.client.request(
        "GET", f"/recordings/{rid}/audio", headers={"Range": f"bytes={len(wav_bytes)}-"}
    )
    assert status == 416 and body["error_id"] == "range-not-satisfiable"

    _no_plaintext(rig, rid)
    assert not list(rig.store.rglob("*.key")), "the wrapped key stays only in the index"


async def test_gap_pause_dual_channel_per_campaign(rig: Rig) -> None:
    async with event_log(rig.client) as events:
        call_id = await _call(rig, ENGINE_CAMPAIGN="gapcamp")
        t_start, started = await _act(rig, call_id, "start")
        rid = started["recording_id"]
        assert started["channels"] == "dual" and started["pause_mode"] == "gap"
        await _audio_time(1.2)
        t_pause, _ = await _act(rig, call_id, "pause")
        await _audio_time(1.5)
        t_resume, _ = await _act(rig, call_id, "resume")
        await _audio_time(1.0)
        # the caller hangs up while recording: the recording ends with the call
        status, _, _ = await rig.client.request("DELETE", f"/calls/{call_id}")
        assert status in (200, 202)
        t_end = asyncio.get_running_loop().time()
        await wait_for(lambda: _ready(events, rid), 20, "RecordingReady")
    status, rec, _ = await rig.client.request("GET", f"/recordings/{rid}")
    assert status == 200 and rec["campaign"] == "gapcamp" and rec["retention_days"] == 7
    check("/v1/recordings/{recording_id}", "get", 200, rec)
    status, wav_bytes, _ = await _raw(rig, rid)
    pcm, rate, channels = _pcm(wav_bytes)
    assert channels == 2
    paused = t_resume - t_pause
    want = t_end - t_start - START_LOSS_S - paused
    assert abs(len(pcm) / rate - want) < 0.3, (len(pcm) / rate, want)
    # channel 1 (the far end) is tone throughout: the pause left a gap, not silence
    for at, window in _windows(pcm[:, 0], rate):
        assert _tone_440(window, rate), f"no tone at {at:.1f} s"
    assert np.abs(pcm[:, 1]).max() <= 1  # channel 2: what was sent to the far end (nothing)
    _no_plaintext(rig, rid)


async def test_policy_never_and_bad_requests(rig: Rig) -> None:
    call_id = await _call(rig, ENGINE_CAMPAIGN="nevercamp")
    status, body, _ = await rig.client.request(
        "POST", f"/calls/{call_id}/recording", json={"action": "start"}
    )
    assert status == 409 and body["error_id"] == "recording-not-allowed"
    status, body, _ = await rig.client.request(
        "POST", f"/calls/{call_id}/recording", json={"action": "pause"}
    )
    assert status == 409 and body["error_id"] == "recording-state"
    status, body, _ = await rig.client.request(
        "POST", f"/calls/{call_id}/recording", json={"action": "rewind"}
    )
    assert status == 400
    status, body, _ = await rig.client.request(
        "POST", f"/calls/{uuid.uuid4()}/recording", json={"action": "start"}
    )
    assert status == 404 and body["error_id"] == "call-not-found"
    status, body, _ = await rig.client.request("GET", "/recordings/not-a-uuid")
    assert status == 400 and body["error_id"] == "invalid-recording-id"
    status, body, _ = await rig.client.request("GET", f"/recordings/{uuid.uuid4()}/audio")
    assert status == 404 and body["error_id"] == "recording-not-found"
    status, body, _ = await rig.client.request("GET", "/recordings?limit=0")
    assert status == 400
    await rig.client.request("DELETE", f"/calls/{call_id}")


async def _recorded(rig: Rig, seconds: float = 0.8) -> str:
    async with event_log(rig.client) as events:
        call_id = await _call(rig)
        _, started = await _act(rig, call_id, "start")
        await _audio_time(seconds)
        await _act(rig, call_id, "stop")
        rid = str(started["recording_id"])
        await wait_for(lambda: _ready(events, rid), 20, "RecordingReady")
    await rig.client.request("DELETE", f"/calls/{call_id}")
    return rid


async def test_delete_is_crypto_shredding_and_legal_hold_blocks_it(rig: Rig) -> None:
    held, gone = await _recorded(rig), await _recorded(rig)
    status, body, _ = await rig.client.request(
        "PATCH", f"/recordings/{held}", json={"legal_hold": True}
    )
    assert status == 200 and body["legal_hold"] is True
    check("/v1/recordings/{recording_id}", "patch", 200, body)
    status, body, _ = await rig.client.request("DELETE", f"/recordings/{held}")
    assert status == 409 and body["error_id"] == "legal-hold"
    status, _, _ = await rig.client.request("DELETE", f"/recordings/{gone}")
    assert status == 204
    status, body, _ = await rig.client.request("GET", f"/recordings/{gone}/audio")
    assert status == 410 and body["error_id"] == "recording-deleted"
    check("/v1/recordings/{recording_id}/audio", "get", 410, body)
    conn = await asyncpg.connect(rig.pg_dsn, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT state, wrapped_key FROM recordings WHERE recording_id = $1", uuid.UUID(gone)
        )
    finally:
        await conn.close()
    assert row["state"] == "deleted" and row["wrapped_key"] is None
    assert not list(rig.store.rglob(f"{gone}.*"))
    status, wav_bytes, _ = await _raw(rig, held)
    assert status == 200 and wav_bytes[:4] == b"RIFF"


async def test_retention_sweeper_skips_legal_holds(rig: Rig) -> None:
    old, kept = await _recorded(rig, 0.6), await _recorded(rig, 0.6)
    conn = await asyncpg.connect(rig.pg_dsn, timeout=10)
    try:
        # both ended 31 days ago (retention 30); one is under legal hold
        await conn.execute(
            "UPDATE recordings SET ended_at = now() - interval '31 days' "
            "WHERE recording_id = ANY($1::uuid[])",
            [uuid.UUID(old), uuid.UUID(kept)],
        )
        await conn.execute(
            "UPDATE recordings SET legal_hold = true WHERE recording_id = $1", uuid.UUID(kept)
        )
    finally:
        await conn.close()
    assert rig.engine.recordings is not None
    assert await rig.engine.recordings.sweep_once() >= 1
    _, a, _ = await rig.client.request("GET", f"/recordings/{old}")
    _, b, _ = await rig.client.request("GET", f"/recordings/{kept}")
    assert a["state"] == "deleted" and b["state"] == "ready"


async def test_recording_ended_while_postgres_is_down_is_indexed_later(rig: Rig) -> None:
    lane = rig.engine.recording_lane
    assert lane is not None
    async with event_log(rig.client) as events:
        call_id = await _call(rig)
        _, started = await _act(rig, call_id, "start")
        rid = str(started["recording_id"])
        await _audio_time(0.8)
        await rig.proxy.set_mode("refuse")
        try:
            await _act(rig, call_id, "stop")
            # encrypted, plaintext gone, wrapped key waiting beside the file: not indexed yet
            await wait_for(lambda: any(rig.store.rglob(f"{rid}.key")), 20, "sealed file")
            await wait_for(lambda: not any(rig.spool.iterdir()), 20, "plaintext removed")
            assert lane.journal.depth >= 1
            assert not _ready(events, rid)
        finally:
            await rig.proxy.set_mode("pass")
        await wait_for(lambda: _ready(events, rid), 60, "RecordingReady after PostgreSQL")
    status, rec, _ = await rig.client.request("GET", f"/recordings/{rid}")
    assert status == 200 and rec["state"] == "ready"
    status, wav_bytes, _ = await _raw(rig, rid)
    assert status == 200 and hashlib.sha256(wav_bytes).hexdigest() == rec["sha256"]
    assert not list(rig.store.rglob(f"{rid}.key"))
    await rig.client.request("DELETE", f"/calls/{call_id}")


def _frames(blob: bytes, frame_size: int) -> tuple[bytes, list[bytes]]:
    from engine.recordings.crypto import HEADER, NONCE_LEN, TAG_LEN

    step = NONCE_LEN + frame_size + TAG_LEN
    body = blob[HEADER.size :]
    return blob[: HEADER.size], [body[i : i + step] for i in range(0, len(body), step)]


def _tampered(blob: bytes, kind: str) -> bytes:
    head, frames = _frames(blob, 8192)  # the rig's frame_size
    assert len(frames) >= 4
    if kind == "flipped-byte":
        bad = bytearray(blob)
        bad[len(head) + len(frames[0]) + 100] ^= 0x04
        return bytes(bad)
    if kind == "dropped-frame":
        return head + b"".join(frames[:1] + frames[2:])
    if kind == "swapped-frames":
        return head + b"".join([frames[0], frames[2], frames[1], *frames[3:]])
    if kind == "truncated":
        return head + b"".join(frames[:-1])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["flipped-byte", "dropped-frame", "swapped-frames", "truncated"])
async def test_tampered_file_is_a_clear_error_never_audio(rig: Rig, kind: str) -> None:
    rid = await _recorded(rig, 1.8)  # 1.3 s of 16 kHz audio: 6 frames of 8 KiB
    (enc,) = list(rig.store.rglob(f"{rid}.enc"))
    original = enc.read_bytes()
    enc.write_bytes(_tampered(original, kind))
    try:
        status, body, _ = await rig.client.request("GET", f"/recordings/{rid}/audio")
        assert status == 500, body
        assert body["error_id"] == "recording-integrity-error"
        assert rid in body["message"]
        check("/v1/recordings/{recording_id}/audio", "get", 500, body)
        status, body, _ = await rig.client.request(
            "GET", f"/recordings/{rid}/audio", headers={"Range": "bytes=0-99"}
        )
        assert status == 500 and body["error_id"] == "recording-integrity-error"
    finally:
        enc.write_bytes(original)
    status, wav_bytes, _ = await _raw(rig, rid)
    assert status == 200 and wav_bytes[:4] == b"RIFF"


async def test_wrong_data_key_is_a_clear_error(rig: Rig) -> None:
    a, b = await _recorded(rig, 0.6), await _recorded(rig, 0.6)
    conn = await asyncpg.connect(rig.pg_dsn, timeout=10)
    try:
        # b's wrapped key put on a: it is bound to b (authenticated data), so it cannot open
        await conn.execute(
            "UPDATE recordings SET wrapped_key = (SELECT wrapped_key FROM recordings "
            "WHERE recording_id = $2) WHERE recording_id = $1",
            uuid.UUID(a),
            uuid.UUID(b),
        )
    finally:
        await conn.close()
    status, body, _ = await rig.client.request("GET", f"/recordings/{a}/audio")
    assert status == 500 and body["error_id"] == "recording-integrity-error"
    assert "does not open" in body["message"]


async def test_kek_rotation_rewraps_keys_and_keeps_every_recording_readable(rig: Rig) -> None:
    from engine.recordings.crypto import KeyRing

    service = rig.engine.recordings
    assert service is not None
    mine = [await _recorded(rig, 0.6) for _ in range(3)]
    before = {rid: _file_digest(rig, rid) for rid in mine}
    old_ring = service.keys
    old_id = old_ring.current_id
    new_key = os.urandom(32)
    # the new KEK on top, the old one still there: new data keys use the new one
    service.keys = KeyRing({"rotated-2": new_key, old_id: old_ring._keys[old_id]}, "rotated-2")
    done, _skipped = await service.rewrap(batch=2)  # small batches: the loop pages
    assert done >= len(mine)
    # only the new KEK left: every recording still reads, no audio file was touched
    service.keys = KeyRing({"rotated-2": new_key}, "rotated-2")
    try:
        for rid in mine:
            status, rec, _ = await rig.client.request("GET", f"/recordings/{rid}")
            assert rec["key_id"] == "rotated-2"
            status, wav_bytes, _ = await _raw(rig, rid)
            assert status == 200 and hashlib.sha256(wav_bytes).hexdigest() == rec["sha256"]
            assert _file_digest(rig, rid) == before[rid]
    finally:
        service.keys = KeyRing({"rotated-2": new_key, old_id: old_ring._keys[old_id]}, old_id)


def _file_digest(rig: Rig, rid: str) -> str:
    (enc,) = list(rig.store.rglob(f"{rid}.enc"))
    return hashlib.sha256(enc.read_bytes()).hexdigest()


async def test_policy_always_records_what_the_acd_connects(rig: Rig) -> None:
    rig.fs.agents["agent1"] = "answer"
    for action in ("login", "ready"):
        status, body, _ = await rig.client.request("POST", f"/agents/a1/{action}")
        assert status == 200, body
    async with event_log(rig.client) as events:
        call_id = await _call(rig)
        status, body, _ = await rig.client.request(
            "POST", "/queues/sales/calls", json={"call_id": call_id}
        )
        assert status == 201, body

        def started() -> list[str]:
            return [
                r.recording_id
                for r in list(rig.engine.recordings.active.values())  # type: ignore[union-attr]
                if r.call_id == call_id
            ]

        await wait_for(lambda: bool(started()), 20, "policy recording started")
        rid = str(started()[0])
        await _audio_time(1.5)
        await rig.client.request("DELETE", f"/calls/{call_id}")
        await wait_for(lambda: _ready(events, rid), 20, "RecordingReady")
    ready = next(
        m["event"]
        for m in events
        if isinstance(m.get("event"), dict) and m["event"].get("recording_id") == rid
    )
    assert ready["queue"] == "sales" and ready["agent_id"] == "a1" and ready["call_id"] == call_id
    status, rec, _ = await rig.client.request("GET", f"/recordings/{rid}")
    assert rec["queue"] == "sales" and rec["agent_id"] == "a1"
    assert rec["channels"] == "dual" and rec["retention_days"] == 60
    status, page, _ = await rig.client.request("GET", "/recordings?queue=sales&agent_id=a1")
    assert [r["recording_id"] for r in page["recordings"]] == [rid]
    status, wav_bytes, _ = await _raw(rig, rid)
    pcm, rate, channels = _pcm(wav_bytes)
    assert channels == 2 and len(pcm) / rate > 0.5
    await rig.client.request("POST", "/agents/a1/logout")


async def test_list_pages_without_overlap_newest_first(rig: Rig) -> None:
    mine = [await _recorded(rig, 0.6) for _ in range(3)]
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        query = "/recordings?limit=2&state=ready" + (f"&after={after}" if after else "")
        status, page, _ = await rig.client.request("GET", query)
        assert status == 200, page
        check("/v1/recordings", "get", 200, page)
        seen.extend(page["recordings"])
        after = page["next_after"]
        if after is None:
            break
    ids = [r["recording_id"] for r in seen]
    assert len(ids) == len(set(ids)) and set(mine) <= set(ids)
    starts = [r["started_at"] for r in seen]
    assert starts == sorted(starts, reverse=True)
    assert all(r["state"] == "ready" for r in seen)
    since = seen[0]["started_at"]
    status, page, _ = await rig.client.request(
        "GET", "/recordings", params={"since": since, "until": "2999-01-01T00:00:00Z"}
    )
    assert status == 200 and [r["recording_id"] for r in page["recordings"]] == [ids[0]]
    status, body, _ = await rig.client.request("GET", "/recordings?since=yesterday")
    assert status == 400 and body["error_id"] == "invalid-query"


def _forget(rig: Rig) -> None:
    """What a restarted engine knows of the recordings the old process started: nothing."""
    service = rig.engine.recordings
    assert service is not None
    service.active.clear()
    service._by_leg.clear()


async def test_a_restarted_engine_takes_back_a_live_recording(rig: Rig) -> None:
    service = rig.engine.recordings
    assert service is not None
    async with event_log(rig.client) as events:
        call_id = await _call(rig)
        _, started = await _act(rig, call_id, "start")
        rid = started["recording_id"]
        await wait_for(lambda: rig.engine.recording_lane.journal.depth == 0, 20, "indexed")  # type: ignore[union-attr]
        _forget(rig)
        status, body, _ = await rig.client.request(
            "POST", f"/calls/{call_id}/recording", json={"action": "stop"}
        )
        assert status == 409 and body["error_id"] == "recording-state"
        assert await service.recover_once(min_age_s=0) >= 1
        assert service.active[call_id].recording_id == uuid.UUID(rid)
        await _audio_time(0.8)
        await _act(rig, call_id, "stop")
        await wait_for(lambda: _ready(events, rid), 20, "RecordingReady")
    await rig.client.request("DELETE", f"/calls/{call_id}")
    status, wav_bytes, _ = await _raw(rig, rid)
    assert status == 200 and wav_bytes[:4] == b"RIFF"
    _no_plaintext(rig, rid)


async def test_a_call_that_ended_unseen_gets_its_recording_finished(rig: Rig) -> None:
    service = rig.engine.recordings
    assert service is not None
    async with event_log(rig.client) as events:
        call_id = await _call(rig)
        _, started = await _act(rig, call_id, "start")
        rid = started["recording_id"]
        await wait_for(lambda: rig.engine.recording_lane.journal.depth == 0, 20, "indexed")  # type: ignore[union-attr]
        await _audio_time(0.8)
        _forget(rig)
        await rig.client.request("DELETE", f"/calls/{call_id}")
        await rig.client.wait_state(call_id, "ended")
        # the switch wrote its file at the hangup; nobody took it: plaintext on disk
        await wait_for(lambda: any(rig.spool.iterdir()), 20, "the switch's file")
        assert await service.recover_once(min_age_s=0) >= 1
        await wait_for(lambda: _ready(events, rid), 20, "RecordingReady")
    status, wav_bytes, _ = await _raw(rig, rid)
    assert status == 200 and wav_bytes[:4] == b"RIFF"
    _no_plaintext(rig, rid)
