"""espeak-ng plugin and the prompt cache, against the real espeak-ng on the host."""

from __future__ import annotations

import asyncio
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from engine.speech.cache import PromptCache
from engine.speech.espeak import EspeakNg, parse_voice_list
from engine.speech.settings import DEFAULT_TTS_DIR, TtsSettings
from engine.speech.tts import SynthesisFailed, UnknownVoice
from engine.speech.wav import decode_wav

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/host-deps)"
)

PINYIN = "ni3 hao3, huan1 ying2 zhi4 dian4"

# Rows of `espeak-ng --voices` (espeak-ng 1.51): the header, two plain rows, the Mandarin rows.
VOICES_OUTPUT = "\n".join(
    [
        "Pty Language       Age/Gender VoiceName          File                 Other Languages",
        " 5  af              --/M      Afrikaans          gmw/af               ",
        " 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)",
        " 5  cmn             --/M      Chinese_(Mandarin,_latin_as_English) sit/cmn"
        "              (zh-cmn 5)(zh 5)",
        " 5  cmn-latn-pinyin --/M      Chinese_(Mandarin,_latin_as_Pinyin) sit/cmn-Latn-pinyin"
        "  (zh-cmn 5)(zh 5)",
    ]
)


class CountingEspeak(EspeakNg):
    """The real plugin, counting how often it actually synthesizes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def synthesize(self, text: str, voice: str) -> bytes:
        self.calls.append((text, voice))
        return super().synthesize(text, voice)


def test_voice_list_parsing() -> None:
    voices = parse_voice_list(VOICES_OUTPUT)
    assert voices == {"af", "en-us", "en", "cmn", "cmn-latn-pinyin", "zh-cmn", "zh"}
    assert parse_voice_list("garbage\n\n 5\n") == frozenset()


def test_installed_espeak_has_the_mandarin_pinyin_voice() -> None:
    voices = EspeakNg().voices()
    assert {"cmn-latn-pinyin", "en", "en-us"} <= voices


def test_rendered_prompt_is_8khz_mono_16bit(tmp_path: Path) -> None:
    cache = PromptCache(EspeakNg(), tmp_path / "tts", "engine-tts")
    path = asyncio.run(cache.render(PINYIN, "cmn-latn-pinyin"))
    data = path.read_bytes()
    assert path.parent == tmp_path / "tts" and path.suffix == ".wav"
    # Header fields Asterisk's format_wav checks: PCM, 1 channel, 8000 Hz, 16 bits.
    assert data[20:24] == b"\x01\x00\x01\x00"
    pcm = decode_wav(data)
    assert pcm.rate == 8000
    # Six syllables with tones: well over half a second, well under ten.
    assert 0.8 < pcm.duration_s < 6.0
    loud = np.abs(pcm.samples.astype(np.int32))
    assert loud.max() > 3000  # speech, not silence
    # Readable by the switch's user, not only by ours.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert cache.prompt_name(path) == f"engine-tts/{path.stem}"


def test_same_text_renders_once_different_voice_or_text_again(tmp_path: Path) -> None:
    synth = CountingEspeak()
    cache = PromptCache(synth, tmp_path, "engine-tts")
    first = cache.render_sync("Welcome.", "en")
    again = cache.render_sync("Welcome.", "en")
    assert first == again and len(synth.calls) == 1
    other_voice = cache.render_sync("Welcome.", "en-us")
    other_text = cache.render_sync("Goodbye.", "en")
    assert len({first, other_voice, other_text}) == 3 and len(synth.calls) == 3
    # A second cache on the same directory (an engine restart) reuses the files.
    synth2 = CountingEspeak()
    assert PromptCache(synth2, tmp_path, "engine-tts").render_sync("Welcome.", "en") == first
    assert synth2.calls == []
    # A deleted file is rendered again rather than played missing.
    first.unlink()
    assert cache.render_sync("Welcome.", "en") == first and first.is_file()
    assert len(synth.calls) == 4


async def test_concurrent_renders_of_one_prompt_share_one_synthesis(tmp_path: Path) -> None:
    synth = CountingEspeak()
    cache = PromptCache(synth, tmp_path, "engine-tts")
    paths = await asyncio.gather(*(cache.render(PINYIN, "cmn-latn-pinyin") for _ in range(5)))
    assert len(set(paths)) == 1 and paths[0].is_file()
    assert synth.calls == [(PINYIN, "cmn-latn-pinyin")]
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.glob(".render-*")))
    assert leftovers == []  # no temporary file left behind


def test_unknown_voice_is_named(tmp_path: Path) -> None:
    cache = PromptCache(EspeakNg(), tmp_path, "engine-tts")
    with pytest.raises(UnknownVoice, match="espeak-ng has no voice 'klingon'"):
        cache.render_sync("hello", "klingon")
    assert list(tmp_path.iterdir()) == []


def test_missing_binary_and_unwritable_directory(tmp_path: Path) -> None:
    missing = PromptCache(EspeakNg("/nonexistent/espeak-ng"), tmp_path, "engine-tts")
    with pytest.raises(SynthesisFailed, match="not found"):
        missing.render_sync("hello", "en")
    # The parent of the prompt directory must exist: a wrong sounds dir is reported.
    lost = PromptCache(EspeakNg(), tmp_path / "no-such-sounds" / "engine-tts", "engine-tts")
    with pytest.raises(SynthesisFailed, match=r"cannot write prompts to .*no-such-sounds"):
        lost.render_sync("hello", "en")


def test_timeout_kills_a_hung_engine(tmp_path: Path) -> None:
    # A stand-in binary that hangs: `sleep` ignores our arguments' meaning but not the timeout.
    hung = tmp_path / "espeak-ng"
    hung.write_text(
        '#!/bin/sh\nif [ "$1" = --voices ]; then\n'
        "  echo 'Pty Language Age/Gender VoiceName File'\n"
        "  echo ' 5  en --/M English gmw/en'\n  exit 0\nfi\nexec sleep 30\n"
    )
    hung.chmod(0o755)
    cache = PromptCache(EspeakNg(str(hung), timeout_s=0.5), tmp_path / "out", "engine-tts")
    with pytest.raises(SynthesisFailed, match=r"took more than 0\.5s; killed"):
        cache.render_sync("hello", "en")


def test_settings_from_env() -> None:
    default = TtsSettings.from_env({})
    assert default.directory == DEFAULT_TTS_DIR and default.prefix == str(DEFAULT_TTS_DIR)
    chroot = TtsSettings.from_env(
        {
            "ENGINE_TTS_DIR": "/srv/chroot/usr/share/asterisk/sounds/engine-tts",
            "ENGINE_TTS_PREFIX": "engine-tts",
            "ENGINE_TTS_TIMEOUT_S": "5",
        }
    )
    assert chroot.prefix == "engine-tts" and chroot.timeout_s == 5.0
    for env, fragment in [
        ({"ENGINE_TTS_DIR": "relative/dir"}, "ENGINE_TTS_DIR: expected an absolute path"),
        ({"ENGINE_TTS_PREFIX": "../etc"}, "ENGINE_TTS_PREFIX: expected a sound directory"),
        ({"ENGINE_TTS_PREFIX": "tts dir"}, "ENGINE_TTS_PREFIX"),
        ({"ENGINE_TTS_TIMEOUT_S": "soon"}, "ENGINE_TTS_TIMEOUT_S: expected a positive number"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            TtsSettings.from_env(env)
