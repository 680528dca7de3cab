"""Round 8 (docs/speech.md): front-end settings for the pocketsphinx menu decoder are really
applied (the model's feat.params override the constructor's arguments), and a decoder run at
8 kHz takes telephone audio as it is."""

from __future__ import annotations

import pytest

from engine.speech.asr.pocketsphinx_plugin import (
    MENU_FRONT_END_ENV,
    PocketSphinxEngine,
    _downsample2,
    front_end_overrides,
)
from engine.speech.wav import decode_wav
from tests.speech_audio import HAVE_TOOLS, spoken_wav

MENU = ["billing", "operator", "cancel", "repair", "payment"]


def test_settings_are_parsed_as_key_value_pairs() -> None:
    assert front_end_overrides(None) == {}
    assert front_end_overrides("") == {}
    assert front_end_overrides(" upperf=3800, -lowerf=200 cmninit=40,3,-1,") == {
        "upperf": "3800",
        "lowerf": "200",
        "cmninit": "40,3,-1",
    }
    with pytest.raises(ValueError, match="key=value"):
        front_end_overrides("upperf")
    with pytest.raises(ValueError, match="key=value"):
        front_end_overrides("upperf=")


def test_downsampling_halves_the_samples() -> None:
    pcm = (b"\x02\x00\x04\x00") * 10 + b"\x01"  # odd trailing byte dropped
    assert _downsample2(pcm) == b"\x03\x00" * 10


def _decode(engine: PocketSphinxEngine, wav: bytes) -> tuple[str, float]:
    pcm = decode_wav(wav)
    r = engine.recognizer(pcm.rate, MENU)
    r.accept(pcm.samples.astype("<i2").tobytes())
    h = r.finish()
    return h.text, h.confidence


def test_the_model_front_end_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MENU_FRONT_END_ENV, raising=False)
    engine = PocketSphinxEngine()
    c = engine._decoder.config
    # the model's feat.params (130-6800 Hz, 25 filters), not the decoder's built-in defaults
    assert (c["lowerf"], c["upperf"], c["nfilt"], c["samprate"]) == (130.0, 6800.0, 25, 16000)
    assert c["remove_noise"] is False  # MENU_FRONT_END
    assert engine.menu_rate == 16000
    # a value with commas of its own, in the type the config holds
    told = PocketSphinxEngine(front_end="cmninit=40,3,-1 nfilt=25")
    assert (told._decoder.config["cmninit"], told._decoder.config["nfilt"]) == ("40,3,-1", 25)


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")
def test_a_band_limited_filterbank_is_applied_and_changes_the_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MENU_FRONT_END_ENV, "upperf=3800,lowerf=200")
    limited = PocketSphinxEngine()
    c = limited._decoder.config
    assert (c["lowerf"], c["upperf"]) == (200.0, 3800.0)
    assert c["remove_noise"] is False
    # the argument wins over the environment
    model = PocketSphinxEngine(front_end="")
    assert model._decoder.config["upperf"] == 6800.0
    # the same audio decodes differently: the filterbank really is another one (round 8:
    # worse, the model was trained on its own)
    wav = spoken_wav("repair please", "en-gb")
    assert _decode(model, wav) != _decode(limited, wav)


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")
def test_an_8khz_decoder_takes_telephone_audio_as_it_is() -> None:
    engine = PocketSphinxEngine(front_end="samprate=8000,nfft=256,upperf=3800,lowerf=200")
    c = engine._decoder.config
    assert (c["samprate"], c["nfft"], c["upperf"], c["lowerf"]) == (8000, 256, 3800.0, 200.0)
    assert engine.menu_rate == 8000
    wav = spoken_wav("repair please", "en-gb")
    assert decode_wav(wav).rate == 8000
    assert engine.recognizer(8000, MENU)._convert is None  # no upsampling
    assert _decode(engine, wav) != _decode(PocketSphinxEngine(front_end=""), wav)
    # free speech keeps the 16 kHz decoder, upsampled
    assert engine.recognizer(8000, None)._convert is not None


def test_a_menu_decoder_at_another_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="11025 Hz"):
        PocketSphinxEngine(front_end="samprate=11025")
