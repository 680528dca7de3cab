"""The one interface every ASR plugin implements, and the result a flow branches on."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class SpeechStatus(enum.StrEnum):
    """What the flow branches on. Only OK carries a usable answer."""

    OK = "ok"
    LOW_CONFIDENCE = "low-confidence"  # something was heard, not trusted: retry branch
    NO_MATCH = "no-match"  # speech, but nothing recognised (empty text)
    NO_INPUT = "no-input"  # nobody spoke before no_input_s
    HANGUP = "hangup"  # the audio stream ended (the caller hung up)
    ERROR = "error"  # the recogniser failed; the flow treats it as no-match


@dataclass(frozen=True, slots=True)
class Alternative:
    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class SpeechResult:
    status: SpeechStatus
    text: str = ""
    #: 0..1, the plugin's own posterior mapped to one scale (docs/speech.md).
    confidence: float = 0.0
    alternatives: tuple[Alternative, ...] = ()
    #: The menu keyword the text matched, when keywords were given.
    keyword: str | None = None
    plugin: str = ""
    #: Seconds from the end of speech (the last voiced frame's arrival) to this result.
    latency_s: float | None = None
    speech_s: float = 0.0
    barged_in: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is SpeechStatus.OK


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """What a recogniser returns for one utterance, before the confidence policy."""

    text: str
    confidence: float
    alternatives: tuple[Alternative, ...] = field(default=())


class Recognizer(Protocol):
    """One utterance's streaming decoder. Runs in a worker process (never on the loop)."""

    def accept(self, pcm: bytes) -> None:
        """16-bit little-endian mono samples at the rate given to ``Engine.recognizer``."""

    def finish(self) -> Hypothesis: ...


class Engine(Protocol):
    """A loaded model: heavy, made once per worker process; makes cheap recognisers."""

    name: str

    def recognizer(self, rate: int, keywords: Sequence[str] | None) -> Recognizer: ...


def match_keyword(text: str, keywords: Sequence[str]) -> str | None:
    """The keyword ``text`` contains, as whole words (the first one said wins)."""
    words = text.split()
    best: tuple[int, str] | None = None
    for kw in keywords:
        kw_words = kw.split()
        for i in range(len(words) - len(kw_words) + 1):
            if words[i : i + len(kw_words)] == kw_words:
                if best is None or i < best[0]:
                    best = (i, kw)
                break
    return None if best is None else best[1]
