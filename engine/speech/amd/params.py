"""AMD parameters: the keys and meaning of Asterisk's amd.conf, so both switches decide alike.

The defaults here are the values in telephony-config/asterisk/amd.conf: Asterisk's stock
values except after_greeting_silence (500, stock 800) and maximum_number_of_words (4, stock 2),
tuned on the tuning set of the corpus (docs/amd.md) (a unit test reads that file and
compares), so the engine's detector on FreeSWITCH and app_amd on Asterisk run
with the same settings unless someone changes one on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace


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


#: app_amd's positional arguments, in order: ``AMD(initialSilence,greeting,
#: afterGreetingSilence,totalAnalysisTime,minimumWordLength,betweenWordsSilence,
#: maximumNumberOfWords,silenceThreshold,maximumWordLength)`` (Asterisk 22 apps/app_amd.c and
#: ``core show application AMD``; a 10th, audioFile, is never passed). Same order as AmdParams.
KEYS: tuple[str, ...] = tuple(f.name for f in fields(AmdParams))

#: What a campaign may set each key to (inclusive). app_amd takes any ``atoi``; these keep a
#: per-campaign setting within what makes sense for a live call. ``total_analysis_time`` is
#: at most amd.conf's 5000 so a person never waits longer than today, and the campaign runner's
#: bound for a resumed analysis (AMD_RESUME_BOUND_S, 8 s) still holds.
LIMITS: dict[str, tuple[int, int]] = {
    "initial_silence": (100, 10000),
    "greeting": (100, 10000),
    "after_greeting_silence": (50, 5000),
    "total_analysis_time": (500, 5000),
    "min_word_length": (10, 2000),
    "between_words_silence": (10, 2000),
    "maximum_number_of_words": (1, 50),
    "silence_threshold": (1, 32767),
    "maximum_word_length": (100, 10000),
}

#: The ``accurate`` preset: telephony-config/asterisk/amd.conf (docs/amd.md round 4: 0 % people
#: taken for machines, 0/24 machines passed, people's p95 2.58 s after answer).
ACCURATE = AmdParams()
#: The ``fast`` preset: telephony-config/asterisk/amd-fast.conf (round 4: people's p95 1.68 s
#: on Asterisk, 1.90 s on FreeSWITCH, but 24/24 machines passed to a person). A unit test reads
#: both files and compares.
FAST = AmdParams(
    greeting=1000,
    after_greeting_silence=200,
    total_analysis_time=1900,
    maximum_number_of_words=3,
    silence_threshold=512,
)
#: The named presets a campaign may choose (``amd.profile``); ``switch`` (the default) is none
#: of them: each switch's own amd.conf / the driver's AmdParams, as before profiles existed.
PROFILES: dict[str, AmdParams] = {"accurate": ACCURATE, "fast": FAST}


def check_amd_value(key: str, value: object) -> int:
    """``value`` as a whole number within ``LIMITS[key]``; ValueError naming the key otherwise."""
    if key not in LIMITS:
        raise ValueError(f"unknown AMD parameter {key!r}: expected one of {', '.join(KEYS)}")
    lo, hi = LIMITS[key]
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"AMD parameter {key}={value!r}: expected a whole number {lo}..{hi}")
    return value


@dataclass(frozen=True, slots=True)
class AmdOverrides:
    """One call's AMD parameters. ``None`` keeps the switch's own value for that key (amd.conf
    on Asterisk, the driver's :class:`AmdParams` on FreeSWITCH); ``AmdOverrides()`` changes
    nothing. Every given value is a whole number within :data:`LIMITS`, so what reaches the
    dialplan is digits and commas only."""

    initial_silence: int | None = None
    greeting: int | None = None
    after_greeting_silence: int | None = None
    total_analysis_time: int | None = None
    min_word_length: int | None = None
    between_words_silence: int | None = None
    maximum_number_of_words: int | None = None
    silence_threshold: int | None = None
    maximum_word_length: int | None = None

    def __post_init__(self) -> None:
        for key in KEYS:
            value = getattr(self, key)
            if value is not None:
                check_amd_value(key, value)

    @classmethod
    def of(cls, params: AmdParams) -> AmdOverrides:
        """Every key set, to ``params``' values (a preset pinned whatever the switch has)."""
        return cls(**{key: getattr(params, key) for key in KEYS})

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AmdOverrides:
        """From :meth:`given`'s dict (the live-call registry); unknown keys are errors."""
        for key in data:
            if key not in LIMITS:
                raise ValueError(
                    f"unknown AMD parameter {key!r}: expected one of {', '.join(KEYS)}"
                )
        return cls(**{key: check_amd_value(key, value) for key, value in data.items()})

    def given(self) -> dict[str, int]:
        """The keys set, in app_amd's order."""
        return {key: value for key in KEYS if (value := getattr(self, key)) is not None}

    def apply(self, params: AmdParams) -> AmdParams:
        """``params`` with the keys set here replaced (the FreeSWITCH detector's parameters)."""
        return replace(params, **self.given())

    def amd_arguments(self) -> str:
        """app_amd's argument string: positional, an empty argument keeps amd.conf's value,
        trailing empties dropped (``""`` is ``AMD()``: amd.conf throughout)."""
        values = [getattr(self, key) for key in KEYS]
        return ",".join("" if v is None else str(v) for v in values).rstrip(",")
