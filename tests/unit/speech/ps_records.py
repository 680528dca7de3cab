"""The two pocketsphinx result records the menu recogniser reads (``seg()`` items and
``hyp()``), for the tests' fake decoders."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Seg:
    word: str
    start_frame: int
    end_frame: int
    prob: float


@dataclass
class Hyp:
    hypstr: str
    best_score: float
