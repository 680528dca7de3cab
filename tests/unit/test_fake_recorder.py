"""The fake FreeSWITCH's recordings against the real one (record-mask-unmask.wav)."""

from __future__ import annotations

import wave

import numpy as np

from tests.fakes.esl_transcripts import TRANSCRIPTS, events_of
from tests.fakes.fake_recorder import RATE, FakeRecording


def _real() -> np.ndarray:
    with wave.open(str(TRANSCRIPTS / "record-mask-unmask.wav"), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _silent_windows(pcm: np.ndarray) -> list[int]:
    n = RATE // 10
    return [i for i in range(len(pcm) // n) if np.abs(pcm[i * n : (i + 1) * n]).max() == 0]


def test_mask_recording_has_the_real_files_shape() -> None:
    evs = events_of("record-mask-unmask.esl")
    start = next(e.ts for e in evs if e.name == "RECORD_START") / 1e6
    stop = next(e.ts for e in evs if e.name == "RECORD_STOP") / 1e6
    # README: mask 2.1 s after the start, unmask 2.0 s later (the recorder's sleeps + 0.1 s)
    fake = FakeRecording("/unused", start, stereo=False)
    fake.marks = [(start + 2.1, "mask"), (start + 4.1, "unmask")]
    got, real = fake.samples(stop), _real()
    assert abs(len(got) - len(real)) <= RATE // 100  # 5.78 s, within 10 ms
    # zeros in the same 100 ms windows (1.6 .. 3.6 s in the file)
    assert _silent_windows(got) == _silent_windows(real)
    assert abs(int(np.abs(got).max()) - int(np.abs(real).max())) < 200


def test_pause_removes_time_and_stereo_second_channel_is_silent() -> None:
    fake = FakeRecording("/unused", 0.0, stereo=True)
    fake.marks = [(1.0, "pause"), (3.1, "resume")]
    got = fake.samples(6.28)
    # record-stereo-pause-resume: 6.3 s from start to stop, 2.1 s paused -> 3.68 s
    assert abs(len(got) / RATE - 3.68) < 0.02
    assert _silent_windows(got) == []
