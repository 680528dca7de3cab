"""Recordings on the real Asterisk 22 sandbox, end to end (real PostgreSQL and Redis).

The far end (carrier 03XX) plays a known tone pattern, engine-tones/pattern.wav, which
scripts/asterisk-sandbox makes with sox (440 Hz, 1000 Hz and silences, 13.5 s). The engine
records the call through the API (MixMonitor), pauses and resumes it, stops it; the test
downloads the decrypted WAV and checks with numpy, window by window, that it holds the pattern
at the right times (aligned once, on the first seconds), digital silence where it was muted, a
gap where it was paused (the pattern jumps ahead by the pause), and the right duration. On disk
no plaintext is left.

The waits marked "audio" let wall-clock time pass on purpose: the recorded audio is the
stimulus. Run under the sandbox lock:
``flock -o /tmp/asterisk-sandbox.lock pytest tests/integration/test_recordings_live.py``.
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

import numpy as np
import pytest

from engine.app import Engine
from tests.harness import TOKEN, Client, engine_config, event_log, running_engine, wait_for
from tests.integration import sandbox

pytestmark = pytest.mark.asterisk

SANDBOX_ROOT = (
    Path(os.environ.get("ASTERISK_SANDBOX_DIR", "/var/cache/telephony-engine/asterisk-22")) / "root"
)
PATTERN = SANDBOX_ROOT / "usr/share/asterisk/sounds/en_US_f_Allison/engine-tones/pattern.wav"
WIN = 0.1  # seconds per analysis window
MARGIN = 0.15  # seconds around an edge (tone change, pause) that are not judged


@dataclass
class Live:
    engine: Engine
    client: Client
    spool: Path
    store: Path


@pytest.fixture(scope="module")
async def live(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Live]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    assert PATTERN.exists(), "scripts/asterisk-sandbox start installs engine-tones/pattern.wav"
    sub = f"engine-rec-test-{uuid.uuid4().hex[:8]}"
    switch_dir = f"/var/spool/asterisk/monitor/{sub}"
    spool = SANDBOX_ROOT / switch_dir.lstrip("/")
    store = store_data_dir / f"rec-live-{sub}"
    extra = f"""
[recordings]
store_dir = "{store}"
[recordings.switches.asterisk-1]
switch_dir = "{switch_dir}"
engine_dir = "{spool}"
[recordings.campaigns.gapcamp]
pause = "gap"
channels = "dual"
"""
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"reclive:{uuid.uuid4().hex[:8]}:",
        data_dir=store_data_dir / f"engine-{sub}",
        agi_bind_port=0,
        extra=extra,
    )
    try:
        async with running_engine(cfg) as (engine, client):
            yield Live(engine, client, spool, store)
    finally:
        if spool.exists():
            for f in spool.iterdir():
                f.unlink()
            spool.rmdir()


# ----------------------------------------------------------------------------- audio analysis


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as w:
        rate, ch = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, ch)
    return pcm.astype(np.float64), rate


def _label(x: np.ndarray, rate: int) -> int:
    """0 for silence, else the dominant frequency rounded to 10 Hz."""
    if np.abs(x).max() < 300:
        return 0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return int(round(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))], -1))


def _lag(rec: np.ndarray, ref: np.ndarray, rate: int, seconds: float = 2.5) -> float:
    """Where in the reference the recording's first ``seconds`` start (seconds), by
    cross-correlating the waveforms (G.711 keeps them). The far end starts playing at its
    answer and the recording starts after the API saw the answer, so the lag is searched in
    0..3 s only: the pattern's on/off rhythm repeats, its waveform does not."""
    n = int(seconds * rate)
    a, b = rec[:n], ref
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    return int(np.argmax(corr[: 3 * rate])) / rate


def _edges(ref: np.ndarray, rate: int) -> list[float]:
    labels = [_label(ref[i : i + rate // 100], rate) for i in range(0, len(ref), rate // 100)]
    return [k / 100 for k in range(1, len(labels)) if labels[k] != labels[k - 1]]


def _expect(ref: np.ndarray, rate: int, at: float) -> int:
    i = int(at * rate)
    return _label(ref[i : i + int(WIN * rate)], rate) if i + int(WIN * rate) <= len(ref) else 0


def _near(t: float, edges: list[float], span: float = WIN) -> bool:
    return any(e - MARGIN < t + span and t < e + MARGIN for e in edges)


async def _call(live: Live, **variables: str) -> str:
    call = await live.client.originate("0301", timeout_s=10, variables=variables or None)
    await live.client.wait_state(call["call_id"], "answered")
    return str(call["call_id"])


async def _act(live: Live, call_id: str, action: str) -> tuple[float, dict[str, Any]]:
    at = asyncio.get_running_loop().time()
    status, body, _ = await live.client.request(
        "POST", f"/calls/{call_id}/recording", json={"action": action}
    )
    assert status == 200, body
    assert isinstance(body, dict)
    return at, body


async def _until(t0: float, seconds: float) -> None:
    """audio: let the call run until ``seconds`` after ``t0`` (the stimulus)."""
    await asyncio.sleep(max(0.0, t0 + seconds - asyncio.get_running_loop().time()))


def _ready(events: list[dict[str, Any]], rid: str) -> bool:
    return any(
        isinstance(m.get("event"), dict)
        and m["event"].get("type") == "RecordingReady"
        and m["event"].get("recording_id") == rid
        for m in list(events)
    )


async def _download(live: Live, rid: str) -> tuple[bytes, dict[str, Any]]:
    async with live.client.http.get(
        f"{live.client.base}/recordings/{rid}/audio", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "audio/wav"
        data = await r.read()
    status, rec, _ = await live.client.request("GET", f"/recordings/{rid}")
    assert status == 200 and rec["state"] == "ready"
    assert hashlib.sha256(data).hexdigest() == rec["sha256"]
    return data, rec


def _no_plaintext(live: Live, rid: str) -> None:
    left = list(live.spool.iterdir()) if live.spool.exists() else []
    assert left == [], f"plaintext left where the switch wrote: {left}"
    (enc,) = list(live.store.rglob(f"{rid}.enc"))
    blob = enc.read_bytes()
    assert b"RIFF" not in blob and b"WAVE" not in blob
    assert not list(live.store.rglob("*.part")) and not list(live.store.rglob("*.key"))


# ----------------------------------------------------------------------------- the tests


async def test_mute_is_silence_and_the_pattern_is_at_the_right_times(live: Live) -> None:
    ref, rate = _read_wav(PATTERN.read_bytes())
    ref = ref[:, 0]
    async with event_log(live.client) as events:
        call_id = await _call(live)
        t0, started = await _act(live, call_id, "start")
        rid = started["recording_id"]
        await _until(t0, 3.0)
        t_pause, _ = await _act(live, call_id, "pause")
        await _until(t0, 5.0)
        t_resume, _ = await _act(live, call_id, "resume")
        await _until(t0, 8.0)
        t_stop, _ = await _act(live, call_id, "stop")
        await wait_for(lambda: _ready(events, rid), 30, "RecordingReady")
    await live.client.request("DELETE", f"/calls/{call_id}")
    data, rec = await _download(live, rid)
    pcm, got_rate = _read_wav(data)
    assert got_rate == rate == 8000 and pcm.shape[1] == 1 and rec["channels"] == "mono"
    mono = pcm[:, 0]
    duration = len(mono) / rate
    assert abs(duration - (t_stop - t0)) < 0.4, (duration, t_stop - t0)

    lag = _lag(mono, ref, rate)
    edges = [e - lag for e in _edges(ref, rate)]
    mute = (t_pause - t0, t_resume - t0)
    judged = muted = 0
    for i in range(int(duration / WIN) - 1):
        t = i * WIN
        window = mono[int(t * rate) : int((t + WIN) * rate)]
        if _near(t, [*edges, *mute]):
            continue
        if mute[0] < t and t + WIN < mute[1]:
            assert np.abs(window).max() == 0, f"muted audio is not digital silence at {t:.1f} s"
            muted += 1
            continue
        want = _expect(ref, rate, t + lag)
        assert _label(window, rate) == want, f"at {t:.1f} s: want {want} Hz"
        judged += 1
    assert judged >= 20 and muted >= 8, (judged, muted)  # the windows away from edges
    _no_plaintext(live, rid)


async def test_gap_pause_dual_channel(live: Live) -> None:
    ref, rate = _read_wav(PATTERN.read_bytes())
    ref = ref[:, 0]
    async with event_log(live.client) as events:
        call_id = await _call(live, ENGINE_CAMPAIGN="gapcamp")
        t0, started = await _act(live, call_id, "start")
        rid = started["recording_id"]
        assert started["pause_mode"] == "gap" and started["channels"] == "dual"
        await _until(t0, 3.0)
        t_pause, _ = await _act(live, call_id, "pause")
        await _until(t0, 5.0)
        t_resume, _ = await _act(live, call_id, "resume")
        await _until(t0, 8.0)
        t_stop, _ = await _act(live, call_id, "stop")
        await wait_for(lambda: _ready(events, rid), 30, "RecordingReady")
    await live.client.request("DELETE", f"/calls/{call_id}")
    data, rec = await _download(live, rid)
    pcm, got_rate = _read_wav(data)
    assert got_rate == 8000 and pcm.shape[1] == 2 and rec["channels"] == "dual"
    far, ours = pcm[:, 0], pcm[:, 1]
    paused = t_resume - t_pause
    duration = len(far) / rate
    assert abs(duration - (t_stop - t0 - paused)) < 0.4, (duration, t_stop - t0 - paused)
    # channel 2 is what the engine's leg sent: nothing (it is parked)
    assert np.abs(ours).max() < 300
    lag = _lag(far, ref, rate)
    gap_at = t_pause - t0  # where the file jumps ahead by the pause
    judged = 0
    for i in range(int(duration / WIN) - 1):
        t = i * WIN
        shift = lag if t < gap_at else lag + paused
        edges = [e - shift for e in _edges(ref, rate)]
        if _near(t, [*edges, gap_at]):
            continue
        window = far[int(t * rate) : int((t + WIN) * rate)]
        want = _expect(ref, rate, t + shift)
        assert _label(window, rate) == want, f"at {t:.1f} s: want {want} Hz"
        judged += 1
    assert judged >= 25, judged
    _no_plaintext(live, rid)


async def test_recording_survives_the_bridge_to_an_agent(live: Live) -> None:
    """Started on a parked caller, the recording goes on through an AMI Bridge (what the ACD
    does when an agent answers): the pattern is still there, on time, after the bridge."""
    ref, rate = _read_wav(PATTERN.read_bytes())
    ref = ref[:, 0]
    async with event_log(live.client) as events:
        call_id = await _call(live)
        t0, started = await _act(live, call_id, "start")
        rid = started["recording_id"]
        other = await live.client.originate("0102", timeout_s=10)  # silent, stays up
        await live.client.wait_state(other["call_id"], "answered")
        await _until(t0, 2.0)
        t_bridge = asyncio.get_running_loop().time()
        await live.engine.drivers["asterisk-1"].bridge(call_id, str(other["call_id"]))
        await _until(t0, 7.0)
        t_stop, _ = await _act(live, call_id, "stop")
        await wait_for(lambda: _ready(events, rid), 30, "RecordingReady")
    await live.client.request("DELETE", f"/calls/{call_id}")
    await live.client.request("DELETE", f"/calls/{other['call_id']}")
    data, _rec = await _download(live, rid)
    pcm, _ = _read_wav(data)
    mono = pcm[:, 0]
    assert abs(len(mono) / rate - (t_stop - t0)) < 0.4
    lag = _lag(mono, ref, rate)
    edges = [e - lag for e in _edges(ref, rate)]
    after = 0
    for i in range(int(len(mono) / rate / WIN) - 1):
        t = i * WIN
        # the bridge's own moment (the channel changes bridges) is not judged
        if _near(t, edges) or abs(t - (t_bridge - t0)) < 0.4:
            continue
        window = mono[int(t * rate) : int((t + WIN) * rate)]
        assert _label(window, rate) == _expect(ref, rate, t + lag), f"at {t:.1f} s"
        after += t > t_bridge - t0 + 0.5
    assert after >= 20, after
    _no_plaintext(live, rid)


async def test_stop_while_paused_with_a_gap(live: Live) -> None:
    """Asterisk's gap pause has already stopped the MixMonitor: the stop must still finish the
    recording (what was recorded before the pause)."""
    async with event_log(live.client) as events:
        call_id = await _call(live, ENGINE_CAMPAIGN="gapcamp")
        t0, started = await _act(live, call_id, "start")
        rid = started["recording_id"]
        await _until(t0, 2.0)
        t_pause, _ = await _act(live, call_id, "pause")
        await _until(t0, 3.0)
        _, stopped = await _act(live, call_id, "stop")
        assert stopped["state"] == "finishing"
        await wait_for(lambda: _ready(events, rid), 30, "RecordingReady")
    await live.client.request("DELETE", f"/calls/{call_id}")
    data, _rec = await _download(live, rid)
    pcm, rate = _read_wav(data)
    assert abs(len(pcm) / rate - (t_pause - t0)) < 0.4
    _no_plaintext(live, rid)
