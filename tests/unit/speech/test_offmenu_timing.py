"""Off-menu rejection by the grammar path's timing (pocketsphinx, docs/speech.md round 3),
and the ASR bench's split selection (the fresh split is kept apart from the older two)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.speech.asr.pocketsphinx_plugin import (
    MAX_INNER_GAP_FRAMES,
    MIN_KEYWORD_FRAMES_PER_PHONE,
    implausible_timing,
)

PHONES = {"i": 1, "want": 4, "billing": 6, "please": 4}
KEYWORDS = frozenset({"billing"})


def phones(word: str) -> int:
    return PHONES[word]


def test_a_menu_answer_with_short_pauses_is_plausible() -> None:
    segs = [
        ("<sil>", 0, 40),  # lead-in silence is outside the words: not counted
        ("i", 41, 50),
        ("<sil>", 51, 60),
        ("want", 61, 95),
        ("billing", 96, 150),  # 55 frames / 6 phones
        ("<sil>", 151, 151 + MAX_INNER_GAP_FRAMES - 1),
        ("please", 151 + MAX_INNER_GAP_FRAMES, 230),
        ("</s>", 231, 400),  # trailing silence: not counted either
    ]
    assert implausible_timing(segs, KEYWORDS, phones) == ""


def test_speech_left_to_silence_and_noise_between_words_is_rejected() -> None:
    # Consecutive non-word segments add up: 20 + 20 frames > the limit.
    segs = [("i", 0, 9), ("<sil>", 10, 29), ("[NOISE]", 30, 49), ("billing", 50, 110)]
    assert implausible_timing(segs, KEYWORDS, phones) == "400 ms of non-speech between the words"


def test_a_squeezed_keyword_is_rejected() -> None:
    frames = int(MIN_KEYWORD_FRAMES_PER_PHONE * 6) - 2  # under the floor for 6 phones
    segs = [("i", 0, 9), ("want", 10, 40), ("billing", 41, 40 + frames)]
    assert implausible_timing(segs, KEYWORDS, phones).startswith("keyword 'billing' at")


def test_a_fast_filler_word_is_not_judged() -> None:
    # Only keywords have the duration floor: "i" in 3 frames is fine.
    segs = [("i", 0, 2), ("billing", 3, 60)]
    assert implausible_timing(segs, KEYWORDS, phones) == ""


def test_no_words_is_left_to_the_no_match_path() -> None:
    assert implausible_timing([("<sil>", 0, 200)], KEYWORDS, phones) == ""


def test_bench_selects_one_or_several_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.asr as bench_asr

    labels = [{"id": f"{n}", "split": s} for n, s in enumerate(["tuning", "heldout", "fresh"])]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    monkeypatch.setattr(bench_asr, "CORPUS", tmp_path)
    assert [x["split"] for x in bench_asr._labels("fresh")] == ["fresh"]
    assert [x["split"] for x in bench_asr._labels("tuning,heldout")] == ["tuning", "heldout"]
    with pytest.raises(SystemExit, match="no items of \\['nope'\\]"):
        bench_asr._labels("tuning,nope")
