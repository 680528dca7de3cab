"""ASR plugins behind one streaming interface (docs/speech.md).

A plugin is chosen by name per flow or step; :func:`load_engine` makes its model (in the
worker process that will run it, see :mod:`.pool`).
"""

from __future__ import annotations

from engine.speech.asr.base import (
    Alternative,
    Engine,
    Hypothesis,
    Recognizer,
    SpeechResult,
    SpeechStatus,
)

PLUGINS = ("pocketsphinx", "vosk")


def load_engine(name: str, model_dir: str | None = None) -> Engine:
    if name == "pocketsphinx":
        from engine.speech.asr.pocketsphinx_plugin import PocketSphinxEngine

        return PocketSphinxEngine(model_dir)
    if name == "vosk":
        from engine.speech.asr.vosk_plugin import VoskEngine

        return VoskEngine(model_dir)
    raise ValueError(f"ASR plugin {name!r} is unknown; expected one of {', '.join(PLUGINS)}")


__all__ = [
    "PLUGINS",
    "Alternative",
    "Engine",
    "Hypothesis",
    "Recognizer",
    "SpeechResult",
    "SpeechStatus",
    "load_engine",
]
