"""The ASR corpus's MBROLA split (docs/speech.md round 9): its definition, the clear error when
MBROLA is missing, and, where MBROLA is installed, that its files are rebuilt byte for byte."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.speech.wav import Pcm, encode_wav
from scripts import asr_corpus as corpus

ROOT = Path(__file__).resolve().parents[3]


#: The Korean MBROLA part's ids (the mbrola-ko work), kept free by every English split.
KOREAN_MBROLA_IDS = {*range(852, 900), *range(488, 492)}


@pytest.mark.parametrize("name", ["mbrola1", "mbrola4"])
def test_mbrola_split_is_english_only_with_the_four_mbrola_voices_and_free_ids(name: str) -> None:
    items = corpus.plan_split(name, "en")
    assert corpus.plan_split(name, "ko") == []  # a Korean part is added as a LangSplit
    assert len(items) == 52
    assert {x.voice for x in items} == {"mb-us1", "mb-us2", "mb-us3", "mb-en1"}
    assert all(corpus.is_mbrola(x.voice) for x in items)
    menus = [x for x in items if x.kind == "menu"]
    assert len(menus) == corpus.FRESH_MENUS
    assert {kw: sum(x.keyword == kw for x in menus) for kw in corpus.EN_KEYWORDS} == dict.fromkeys(
        corpus.EN_KEYWORDS, 8
    )
    for x in items:
        if x.kind == "free":  # an off-menu sentence names no menu keyword
            assert not set(x.text.split()) & set(corpus.EN_KEYWORDS), x.text
        else:
            assert x.keyword is not None and x.keyword in x.text.split()
    ids = [int(x.id) for x in items]
    assert len(set(ids)) == len(ids)
    assert all(0 <= i <= 999 and len(x.id) == 3 for i, x in zip(ids, items, strict=True))
    others = [x for split, xs in corpus.plan_all().items() if split != name for x in xs]
    assert not set(ids) & {int(x.id) for x in others}
    assert not set(ids) & set(range(980, 1000))  # the live tests' own files
    assert not set(ids) & KOREAN_MBROLA_IDS
    older_free = {x.text for x in others if x.kind == "free"}
    assert not {x.text for x in items} & older_free


def test_mbrola4_has_new_conditions_and_a_hash_per_file() -> None:
    m2 = corpus.MBROLA4
    older: list[corpus.Conditions | corpus.DrawnSplit] = [
        corpus.TUNING,
        corpus.HELDOUT,
        corpus.FRESH,
        corpus.FRESH2,
        corpus.FRESH3,
        corpus.FRESH4,
        corpus.FRESH5,
        corpus.FRESH6,
        corpus.MBROLA1,
    ]
    for c in older:
        assert not set(m2.speeds) & set(c.speeds)
        assert not set(m2.noise_rms) & set(c.noise_rms)
        assert not set(m2.lead_ms) & set(c.lead_ms)
    lines = (ROOT / "scripts/asr_mbrola4.sha256").read_text().splitlines()
    names = [line.split()[1] for line in lines]
    assert names[:-1] == [
        f"{x.id}.wav" for x in sorted(corpus.plan_split("mbrola4", "en"), key=lambda x: x.id)
    ]
    assert names[-1] == "mbrola4-en-labels(sorted-json)"


def test_missing_mbrola_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda name: None if name == "mbrola" else (real(name) or f"/usr/bin/{name}"),
    )
    formant = [("en-us+m3", "billing")]
    assert corpus.mbrola_problems(formant, tmp_path) == []  # formant voices need none
    said = [("mb-us1", "billing"), ("en-us", "cancel"), ("mb-en1", "repair")]
    problems = corpus.mbrola_problems(said, tmp_path)
    assert problems == ["mbrola not found (needed by mb-en1, mb-us1)"]
    assert corpus.main(["--split", "mbrola1", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "mbrola not found" in err and "scripts/host-deps --mbrola" in err
    assert not list((tmp_path / "c").glob("*.wav"))  # nothing half built


def test_revoice_keeps_texts_and_conditions() -> None:
    items = corpus.plan_fresh5("en")
    out = corpus.revoice([*items, *corpus.plan_fresh5("ko")], "en", ("mb-us1", "mb-us2"), 7)
    assert len(out) == len(items)
    assert {x.voice for x in out} == {"mb-us1", "mb-us2"}
    for a, b in zip(items, out, strict=True):
        assert (a.id, a.text, a.speed, a.lead_ms, a.noise_rms) == (
            b.id,
            b.text,
            b.speed,
            b.lead_ms,
            b.noise_rms,
        )


def _mbrola_voice_works(voice: str) -> bool:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        return corpus.mbrola_problems([(voice, "billing please")], Path(tmp)) == []


FIRST = corpus.plan_split("mbrola1", "en")[0]


@pytest.mark.skipif(
    not _mbrola_voice_works(FIRST.voice),
    reason=f"MBROLA voice {FIRST.voice} not installed (scripts/host-deps --mbrola; corpus only)",
)
def test_mbrola1_first_file_rebuilds_to_its_committed_hash(tmp_path: Path) -> None:
    # The first item of a split draws the split's noise first, so it can be rebuilt alone.
    lines = (ROOT / "scripts/asr_mbrola1.sha256").read_text().splitlines()
    committed = {name: digest for digest, name in (line.split() for line in lines)}
    seed = corpus.MBROLA1.langs["en"].noise_seed
    built = []
    for _ in range(2):
        speech = corpus.speak(FIRST, tmp_path)
        audio = corpus.render(FIRST, speech, np.random.default_rng(seed))
        built.append(encode_wav(Pcm(corpus.RATE, audio)))
    assert built[0] == built[1]
    assert hashlib.sha256(built[0]).hexdigest() == committed[f"{FIRST.id}.wav"]
    # MBROLA spoke it: a formant voice gives other audio for the same text and speed.
    mbrola = corpus.speak(FIRST, tmp_path)
    formant = corpus.speak(replace(FIRST, voice="en-us"), tmp_path)
    assert formant.shape != mbrola.shape or not np.array_equal(formant, mbrola)
