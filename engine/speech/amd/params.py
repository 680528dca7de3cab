"""AMD parameters: the keys and meaning of Asterisk's amd.conf, so both switches decide alike.

The defaults here are the values in telephony-config/asterisk/amd.conf: Asterisk's stock
values except after_greeting_silence (500, stock 800) and maximum_number_of_words (4, stock 2),
tuned on the tuning set of the corpus (docs/amd.md) (a unit test reads that file and
compares), so the engine's detector on FreeSWITCH and app_amd on Asterisk run
with the same settings unless someone changes one on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class AmdParams:
    """All durations in milliseconds, as in amd.conf."""

    #: Silence before the greeting longer than this -> MACHINE (INITIALSILENCE).
    initial_silence: int = 2500
    #: Voiced time in the greeting reaching this -> MACHINE (LONGGREETING).
    greeting: int = 1500
    #: Silence after a greeting reaching this -> HUMAN.
    after_greeting_silence: int = 500
    #: Audio analysed reaching this (or this much wall time) -> NOTSURE (TOOLONG).
    total_analysis_time: int = 5000
    #: Consecutive voice needed to count a word.
    min_word_length: int = 100
    #: Silence that separates two words.
    between_words_silence: int = 50
    #: More words than this -> MACHINE (MAXWORDS).
    maximum_number_of_words: int = 4
    #: Mean absolute sample of a frame below this -> the frame is silence (0..32767).
    silence_threshold: int = 256
    #: One word longer than this -> MACHINE (MAXWORDLENGTH).
    maximum_word_length: int = 5000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"AMD parameter {f.name}={value!r}: expected a positive integer")


def parse_amd_conf(text: str, *, source: str = "amd.conf") -> AmdParams:
    """Read the ``[general]`` section of an amd.conf; unknown keys are errors (app_amd only
    warns, but a typo here would silently make the two switches disagree)."""
    known = {f.name for f in fields(AmdParams)}
    values: dict[str, int] = {}
    section = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        if section != "general":
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or key not in known:
            raise ValueError(
                f"{source}:{lineno}: expected one of {sorted(known)} = <ms>, got {raw!r}"
            )
        try:
            values[key] = int(value.strip())
        except ValueError:
            raise ValueError(
                f"{source}:{lineno}: {key} must be an integer, got {value.strip()!r}"
            ) from None
    return AmdParams(**values)
