"""The TTS plugin interface and its errors.

A plugin is a :class:`Synthesizer`: a blocking ``synthesize(text, voice)`` that
returns WAV bytes in whatever format the engine produces. Callers never use it
directly; they go through :class:`engine.speech.cache.PromptCache`, which runs it
off the event loop, converts the result to the switch's native format and
stores it once per (engine, voice, text).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["SynthesisFailed", "Synthesizer", "TtsError", "UnknownVoice"]


class TtsError(Exception):
    """Base of every speech-synthesis failure."""


class UnknownVoice(TtsError):
    """The requested voice is not installed in the engine."""

    def __init__(self, engine: str, voice: str) -> None:
        super().__init__(f"{engine} has no voice {voice!r}")
        self.engine = engine
        self.voice = voice


class SynthesisFailed(TtsError):
    """The engine is missing, crashed, timed out or produced no usable audio."""


@runtime_checkable
class Synthesizer(Protocol):
    """A TTS engine. Both methods block; they are run in a worker thread."""

    @property
    def name(self) -> str:
        """Stable identifier; part of the prompt cache key (e.g. ``espeak-ng``)."""
        ...

    def voices(self) -> frozenset[str]:
        """Lower-case names ``synthesize`` accepts. Raises :class:`TtsError`."""
        ...

    def synthesize(self, text: str, voice: str) -> bytes:
        """WAV bytes (PCM 16-bit, any rate). Raises :class:`TtsError`."""
        ...
