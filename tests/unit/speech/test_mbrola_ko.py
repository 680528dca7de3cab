"""scripts/mbrola_ko.py: espeak-ng's Korean through the MBROLA hn1 diphone voice (test audio).

The table's own checks need nothing installed; the build and the diphone check need the
non-free ``mbrola`` and ``mbrola-hn1`` packages and are skipped, naming why, without them.
"""

from __future__ import annotations

import hashlib
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from engine.speech.wav import Pcm, encode_wav
from scripts import asr_corpus as corpus
from scripts import mbrola_ko
from scripts.corpus_audio import speak_text

ROOT = Path(__file__).resolve().parents[3]

MISSING = mbrola_ko.missing()
needs_hn1 = pytest.mark.skipif(MISSING is not None, reason=f"non-free voice absent: {MISSING}")


def test_table_fits_what_espeak_ng_compiles() -> None:
    lines = mbrola_ko.phtrans_source().splitlines()
    assert 0 < len(lines) <= mbrola_ko.MAX_RULES
    # --compile-mbrola reads 39 characters at a time: a longer line would be cut in two.
    assert max(len(line) for line in lines) <= mbrola_ko.MAX_LINE
    for line in lines:
        fields = line.split()
        assert len(fields) in (5, 6), line
        # espeak-ng keeps 4 characters of a name: hn1's ts\_h and ts\_> go out renamed.
        assert all(len(name) <= 4 for name in fields[1:3] + fields[4:]), line


def test_every_output_is_an_hn1_phoneme() -> None:
    for rule in mbrola_ko.rules():
        for name in (rule.out, rule.out2):
            assert name in ("NULL", "") or name in mbrola_ko.HN1_PHONEMES, rule
    renamed = {line.split()[4] for line in mbrola_ko.phtrans_source().splitlines()}
    assert {"tsh", "ts-"} <= renamed
    assert not {"ts\\_h", "ts\\_>"} & renamed


def test_retime_gives_hn1_timing_and_a_leading_pause() -> None:
    pho = "k_h\t100\na\t40\t 0 110 100 100\ntsh\t100\n4\t70\n\n_\t300\n"
    lines = mbrola_ko.retime(pho).splitlines()
    assert lines[0] == f"_\t{mbrola_ko.LEAD_MS}"
    assert lines[1] == "k_h\t60"  # consonant x 0.6
    assert lines[2] == "a\t60\t0 110 100 100"  # vowel x 1.5, pitch points kept
    assert lines[3] == "tsh\t60"  # a renamed unit is still a consonant
    assert lines[4] == "4\t24"  # the tap x 0.35
    assert lines[6] == "_\t300"  # pauses unchanged


def test_a_missing_voice_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(mbrola_ko.MbrolaMissing, match="'mbrola'"):
        mbrola_ko.build(tmp_path)
    assert not (tmp_path / "espeak-ng-data").exists()


@needs_hn1
def test_build_has_no_unknown_diphone_where_the_stock_table_has_many(tmp_path: Path) -> None:
    path = mbrola_ko.build(tmp_path / "a")
    assert mbrola_ko.build(path) == path  # idempotent
    assert mbrola_ko.unknown_diphones(mbrola_ko.CHECK_TEXT, path) == []
    # The check itself finds gaps: espeak-ng's stock hn1 table on the same text.
    stock = subprocess.run(
        ["espeak-ng", f"--path={path}", "-v", mbrola_ko.STOCK_VOICE, "-q", "--pho", "감사 합니다"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pho = tmp_path / "stock.pho"
    pho.write_text(stock)
    done = subprocess.run(
        ["mbrola", str(mbrola_ko.database()), str(pho), str(tmp_path / "stock.wav")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "unknown" in (done.stdout + done.stderr).lower()


@needs_hn1
def test_corpus_speaks_an_hn1_voice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mbrola_ko, "ESPEAK_PATH", tmp_path / "data")
    wav = tmp_path / "x.wav"
    mbrola_ko.speak("mb-hn1-p60", "창문 좀 열어 주시겠어요", wav, speed=160)
    with wave.open(str(wav)) as f:
        assert f.getframerate() == 16000 and f.getnframes() > 16000 // 2
    samples = speak_text(
        "t", "네 감사 합니다", voice="mb-hn1", speed=160, tmp=tmp_path, rate=8000, peak=14000
    )
    assert abs(samples).max() == pytest.approx(14000) and len(samples) > 8000 // 2


def test_mbrola2_is_korean_only_spoken_by_hn1_with_free_ids() -> None:
    items = corpus.plan_split("mbrola2", "ko")
    assert corpus.plan_split("mbrola2", "en") == []
    assert len(items) == 52
    assert {x.voice for x in items} == {"mb-hn1-p40", "mb-hn1-p55", "mb-hn1-p70", "mb-hn1-p85"}
    assert all(mbrola_ko.is_voice(x.voice) and corpus.is_mbrola(x.voice) for x in items)
    menus = [x for x in items if x.kind == "menu"]
    assert {kw: sum(x.keyword == kw for x in menus) for kw in corpus.KO_KEYWORDS} == dict.fromkeys(
        corpus.KO_KEYWORDS, 8
    )
    for x in items:
        if x.kind == "free":  # an off-menu sentence names no keyword, even inside a word
            assert not any(kw in x.text for kw in corpus.KO_KEYWORDS), x.text
        else:
            assert x.keyword is not None and x.keyword in x.text.split()
    ids = [int(x.id) for x in items]
    assert len(set(ids)) == len(ids) and all(len(x.id) == 3 for x in items)
    others = [x for split, xs in corpus.plan_all().items() if split != "mbrola2" for x in xs]
    assert not set(ids) & {int(x.id) for x in others}
    assert not set(ids) & set(range(980, 1000))  # the live tests' own files
    older = {x.text for x in others if x.lang == "ko" and x.kind == "free"}
    assert not {x.text for x in items} & older


@needs_hn1
def test_mbrola2_first_file_rebuilds_to_its_committed_hash(tmp_path: Path) -> None:
    first = corpus.plan_split("mbrola2", "ko")[0]
    lines = (ROOT / "scripts/asr_mbrola2.sha256").read_text().splitlines()
    committed = {name: digest for digest, name in (line.split() for line in lines)}
    speech = corpus.speak(first, tmp_path)
    # The first item draws the split's noise first, so it can be rebuilt alone.
    seed = corpus.MBROLA2.langs["ko"].noise_seed
    audio = corpus.render(first, speech, np.random.default_rng(seed))
    assert hashlib.sha256(encode_wav(Pcm(corpus.RATE, audio))).hexdigest() == committed["852.wav"]


def test_mbrola3_is_korean_only_with_new_pitches_and_the_last_free_ids() -> None:
    items = corpus.plan_split("mbrola3", "ko")
    assert corpus.plan_split("mbrola3", "en") == []
    assert len(items) == 40  # the 40 three-digit ids left: 30 menu answers, 10 sentences
    voices = {x.voice for x in items}
    assert voices == {"mb-hn1-p45", "mb-hn1-p62", "mb-hn1-p77", "mb-hn1-p92"}
    menus = [x for x in items if x.kind == "menu"]
    assert {kw: sum(x.keyword == kw for x in menus) for kw in corpus.KO_KEYWORDS} == dict.fromkeys(
        corpus.KO_KEYWORDS, 6
    )
    assert sum(x.kind == "free" for x in items) == 10
    # mbrola4 (English) was made at the same time on another branch, not before: it shares
    # some conditions, never ids (checked below)
    parallel = ("mbrola3", "mbrola4")
    older = [x for split, xs in corpus.plan_all().items() if split not in parallel for x in xs]
    ids = {int(x.id) for x in items}
    assert len(ids) == 40 and all(len(x.id) == 3 for x in items)
    assert not ids & {int(x.id) for x in older}
    assert not ids & set(range(980, 1000))  # the live tests' own files
    assert not ids & {*range(52, 100), *range(392, 396)}  # mbrola4, English, made in parallel
    assert not {x.speed for x in items} & {x.speed for x in older}
    assert not {x.noise_rms for x in items} & {x.noise_rms for x in older}
    assert not {x.lead_ms for x in items} & {x.lead_ms for x in older}
    assert not voices & {x.voice for x in older}
    sentences = {x.text for x in items if x.kind == "free"}
    assert not sentences & {x.text for x in older}
    assert not any(kw in s for s in sentences for kw in corpus.KO_KEYWORDS)


@needs_hn1
def test_mbrola3_first_file_rebuilds_to_its_committed_hash(tmp_path: Path) -> None:
    first = corpus.plan_split("mbrola3", "ko")[0]
    assert first.id == "952"
    lines = (ROOT / "scripts/asr_mbrola3.sha256").read_text().splitlines()
    committed = {name: digest for digest, name in (line.split() for line in lines)}
    speech = corpus.speak(first, tmp_path)
    audio = corpus.render(
        first, speech, np.random.default_rng(corpus.MBROLA3.langs["ko"].noise_seed)
    )
    assert hashlib.sha256(encode_wav(Pcm(corpus.RATE, audio))).hexdigest() == committed["952.wav"]
