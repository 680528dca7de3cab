"""The energy endpointer: start, end, no-input and max-speech decisions, counted in audio."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from engine.speech.vad import Endpointer, VadEvent, VadParams

RATE = 8000
FRAME = RATE // 50


def tone(ms: int, amp: float = 8000.0) -> npt.NDArray[np.int16]:
    t = np.arange(RATE * ms // 1000) / RATE
    return np.asarray(np.round(amp * np.sin(2 * np.pi * 300 * t)), dtype=np.int16)


def quiet(ms: int, rms: float = 0.0, seed: int = 1) -> npt.NDArray[np.int16]:
    n = RATE * ms // 1000
    if rms == 0:
        return np.zeros(n, dtype=np.int16)
    noise = np.random.default_rng(seed).normal(0, rms, n)
    return np.asarray(np.round(noise), dtype=np.int16)


def run(ep: Endpointer, audio: npt.NDArray[np.int16]) -> list[tuple[int, VadEvent]]:
    """(sample offset at the end of the frame, event) for every event."""
    out: list[tuple[int, VadEvent]] = []
    for at in range(0, len(audio), FRAME):
        ev = ep.feed(audio[at : at + FRAME])
        if ev is not VadEvent.NONE:
            out.append((at + FRAME, ev))
    return out


def test_speech_then_silence_starts_and_ends() -> None:
    p = VadParams(start_ms=60, end_silence_ms=300)
    ep = Endpointer(p, RATE)
    events = run(ep, np.concatenate([quiet(500), tone(800), quiet(1000)]))
    assert [e for _, e in events] == [VadEvent.SPEECH_START, VadEvent.SPEECH_END]
    # Start after 60 ms of voice; end 300 ms after the last voiced frame.
    assert events[0][0] == RATE * 560 // 1000
    assert events[1][0] == RATE * (500 + 800 + 300) // 1000
    assert ep.speech_start == RATE * 500 // 1000
    assert ep.last_voiced_end == RATE * 1300 // 1000


def test_a_click_is_not_speech_and_no_input_ends() -> None:
    ep = Endpointer(VadParams(start_ms=60, no_input_ms=1000), RATE)
    events = run(ep, np.concatenate([quiet(200), tone(40), quiet(2000)]))
    assert [e for _, e in events] == [VadEvent.NO_INPUT]
    assert events[0][0] == RATE  # exactly 1 s of audio


def test_the_threshold_follows_the_line_noise_floor() -> None:
    # The same RMS-400 sound: speech over a quiet line (floor 60: threshold 300), but not
    # over a noisy one (floor 150: threshold 450), where it is just louder noise.
    ep = Endpointer(VadParams(min_rms=300, ratio=3.0), RATE)
    lead = quiet(3000, rms=60, seed=2)
    hiss = quiet(1000, rms=400, seed=3)
    assert [e for _, e in run(ep, np.concatenate([lead, hiss]))] == [VadEvent.SPEECH_START]
    ep2 = Endpointer(VadParams(min_rms=300, ratio=3.0), RATE)
    events2 = run(ep2, np.concatenate([quiet(3000, rms=150, seed=4), quiet(1000, rms=400)]))
    assert events2 == []


def test_short_pauses_inside_speech_do_not_end_it() -> None:
    ep = Endpointer(VadParams(end_silence_ms=300), RATE)
    audio = np.concatenate([tone(400), quiet(200), tone(400), quiet(500)])
    assert [e for _, e in run(ep, audio)] == [VadEvent.SPEECH_START, VadEvent.SPEECH_END]


def test_max_speech_ends_a_caller_who_never_pauses() -> None:
    ep = Endpointer(VadParams(max_speech_ms=1000), RATE)
    events = run(ep, tone(3000))
    assert [e for _, e in events] == [VadEvent.SPEECH_START, VadEvent.MAX_SPEECH]
    assert events[-1][0] == RATE * 1000 // 1000


def test_nothing_after_the_end() -> None:
    ep = Endpointer(VadParams(), RATE)
    run(ep, np.concatenate([tone(300), quiet(500)]))
    assert ep.done is VadEvent.SPEECH_END
    assert ep.feed(tone(100)) is VadEvent.NONE


def test_works_at_16_khz_in_ms_not_samples() -> None:
    ep = Endpointer(VadParams(end_silence_ms=300), 16000)
    t = np.arange(16000) / 16000
    voice = np.asarray(8000 * np.sin(2 * np.pi * 300 * t), dtype=np.int16)
    audio = np.concatenate([voice, np.zeros(16000, dtype=np.int16)])
    events = []
    for at in range(0, len(audio), 320):
        ev = ep.feed(audio[at : at + 320])
        if ev is not VadEvent.NONE:
            events.append((at + 320, ev))
    assert events[-1] == (16000 + 16000 * 300 // 1000, VadEvent.SPEECH_END)


@pytest.mark.parametrize("field", ["start_ms", "end_silence_ms", "no_input_ms", "max_speech_ms"])
def test_bad_params_are_named(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        VadParams(**{field: 0})
