"""The engine's AMD detector (app_amd's rules) on synthetic audio, and its parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.speech.amd import AmdDetector, AmdParams, frame_is_silent, parse_amd_conf

ROOT = Path(__file__).resolve().parents[3]
RATE = 8000


def silence(ms: int, rate: int = RATE) -> npt.NDArray[np.int16]:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def voice(ms: int, rate: int = RATE, amp: int = 8000) -> npt.NDArray[np.int16]:
    t = np.arange(rate * ms // 1000) / rate
    return np.round(amp * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def decide(*parts: npt.NDArray[np.int16], params: AmdParams | None = None, rate: int = RATE):  # type: ignore[no-untyped-def]
    det = AmdDetector(params)
    return det.feed(np.concatenate(parts), rate) or det.expire()


def test_short_hello_then_silence_is_human_after_the_after_greeting_silence() -> None:
    p = AmdParams()
    v = decide(silence(400), voice(500), silence(3000))
    assert (v.status, v.cause) == (
        "HUMAN",
        f"HUMAN-{p.after_greeting_silence}-{p.after_greeting_silence}",
    )
    assert v.audio_ms == 400 + 500 + p.after_greeting_silence


def test_long_voice_is_a_long_greeting() -> None:
    v = decide(silence(300), voice(4000))
    assert (v.status, v.cause) == ("MACHINE", "LONGGREETING-1500-1500")


def test_words_are_counted_after_a_between_words_silence() -> None:
    # 200 ms words with 100 ms gaps (less voice than `greeting`): the word after the
    # maximum makes it a machine.
    most = AmdParams().maximum_number_of_words
    words = [np.concatenate([voice(200), silence(100)]) for _ in range(most + 2)]
    v = decide(silence(300), *words)
    assert (v.status, v.cause) == ("MACHINE", f"MAXWORDS-{most + 1}-{most}")


def test_initial_silence_is_a_machine() -> None:
    v = decide(silence(4000))
    assert (v.status, v.cause) == ("MACHINE", "INITIALSILENCE-2500-2500")


def test_too_long_is_notsure() -> None:
    # Words too short to count and gaps too short to end the greeting: nothing decides.
    p = AmdParams(initial_silence=10000, greeting=10000, maximum_number_of_words=100)
    chunk = np.concatenate([voice(80), silence(300)])
    v = decide(*([chunk] * 20), params=p)
    assert (v.status, v.cause) == ("NOTSURE", f"TOOLONG-{p.total_analysis_time}")


def test_expire_without_audio_is_noaudiodata_and_hangup_has_no_cause() -> None:
    assert AmdDetector().expire().cause == "NOAUDIODATA-0"
    det = AmdDetector()
    det.feed(voice(60), RATE)
    assert (det.hangup().status, det.hangup().cause) == ("HANGUP", "")


def test_the_same_audio_at_16_khz_decides_the_same() -> None:
    a = decide(silence(400), voice(500), silence(3000))
    b = decide(silence(400, 16000), voice(500, 16000), silence(3000, 16000), rate=16000)
    assert (a.status, a.cause, a.audio_ms) == (b.status, b.cause, b.audio_ms)


def test_audio_fed_in_odd_pieces_decides_like_one_block() -> None:
    audio = np.concatenate([silence(400), voice(700), silence(2000)])
    whole = decide(audio)
    det = AmdDetector()
    got = None
    for start in range(0, len(audio), 37):
        got = det.feed(audio[start : start + 37], RATE) or got
        if got:
            break
    assert got == whole


def test_noise_below_the_threshold_is_silence() -> None:
    rng = np.random.default_rng(1)
    quiet = np.round(rng.normal(0, 100, 160)).astype(np.int16)  # mean |x| ~ 80
    loud = np.round(rng.normal(0, 1000, 160)).astype(np.int16)
    assert frame_is_silent(quiet, 256)
    assert not frame_is_silent(loud, 256)


def test_defaults_match_amd_conf() -> None:
    # Both switches must decide alike: the engine's defaults ARE amd.conf.
    conf = (ROOT / "telephony-config" / "asterisk" / "amd.conf").read_text()
    assert parse_amd_conf(conf) == AmdParams()


def test_amd_conf_errors_name_the_line() -> None:
    with pytest.raises(ValueError, match=r"amd.conf:2: .*greting"):
        parse_amd_conf("[general]\ngreting = 100\n")
    with pytest.raises(ValueError, match="positive integer"):
        AmdParams(greeting=0)


def test_a_resumed_analysis_takes_a_silent_wait_for_a_person() -> None:
    # After a restart the greeting may be over: a person waiting in silence is a person
    # (a fresh analysis would call it INITIALSILENCE, a machine).
    p = AmdParams()
    fresh = decide(silence(4000))
    assert fresh.status == "MACHINE"
    det = AmdDetector(p, resumed=True)
    v = det.feed(silence(4000), RATE) or det.expire()
    ms = p.after_greeting_silence
    assert (v.status, v.cause, v.audio_ms) == ("HUMAN", f"HUMAN-{ms}-{ms}", ms)


def test_a_resumed_analysis_still_hears_a_machine_talking_on() -> None:
    det = AmdDetector(resumed=True)
    v = det.feed(np.concatenate([voice(4000), silence(1000)]), RATE) or det.expire()
    assert (v.status, v.cause) == ("MACHINE", "LONGGREETING-1500-1500")
