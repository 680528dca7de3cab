"""Answering-machine detection on audio the engine receives (FreeSWITCH has no AMD module).

Pure: :class:`AmdDetector` is fed 16-bit samples and returns an :class:`AmdVerdict` with the
same status and cause strings as Asterisk's app_amd, decided by the same rules on the same
parameters (:class:`AmdParams`, the keys of amd.conf). No I/O, no clock: time is the audio's.
"""

from engine.speech.amd.detector import AmdDetector, AmdVerdict, frame_is_silent
from engine.speech.amd.g711 import ulaw_to_linear
from engine.speech.amd.params import (
    FAST,
    KEYS,
    LIMITS,
    PROFILES,
    AmdOverrides,
    AmdParams,
    check_amd_value,
    parse_amd_conf,
)

__all__ = [
    "FAST",
    "KEYS",
    "LIMITS",
    "PROFILES",
    "AmdDetector",
    "AmdOverrides",
    "AmdParams",
    "AmdVerdict",
    "check_amd_value",
    "frame_is_silent",
    "parse_amd_conf",
    "ulaw_to_linear",
]
