"""A campaign's settings (``CampaignSpec``), as ``engine.toml`` defaults, the API and the
``campaigns.spec`` column hold them. Pure: no I/O.

Every field has a production-sane default, so ``POST /v1/campaigns`` with a name, a trunk group
and a queue is a working campaign. Validation errors name the field and what was expected.
"""

from __future__ import annotations

import re
from datetime import date, time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from engine.campaigns.regions import Region
from engine.speech.amd.params import KEYS as AMD_KEYS
from engine.speech.amd.params import LIMITS as AMD_LIMITS
from engine.speech.amd.params import PROFILES as AMD_PROFILES
from engine.speech.amd.params import AmdOverrides

CAMPAIGN_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
CampaignId = Annotated[str, Field(pattern=CAMPAIGN_ID_PATTERN)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _whole(value: object) -> object:
    # JSON Schema counts 1.0 as an integer; the API validates strictly otherwise.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Whole = Annotated[int, BeforeValidator(_whole)]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CampaignState(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"


class Mode(StrEnum):
    PREVIEW = "preview"  # the agent gets the contact first and accepts or skips it
    PROGRESSIVE = "progressive"  # one call per idle agent
    POWER = "power"  # power_ratio calls per idle agent
    PREDICTIVE = "predictive"  # engine/dialer/pacing/predictive.py


class AbandonPeriod(StrEnum):
    FCC_30D = "fcc_30d"  # US TCPA/FCC: per campaign over 30 days
    OFCOM_24H = "ofcom_24h"  # UK Ofcom: per campaign over 24 hours

    @property
    def seconds(self) -> float:
        return 30 * 86400.0 if self is AbandonPeriod.FCC_30D else 86400.0


class Outcome(StrEnum):
    """What one attempt came to (engine/campaigns/outcomes.py classifies switch results)."""

    HUMAN = "human"  # answered, handed to an agent (or to safe harbour: see ABANDONED)
    MACHINE = "machine"  # AMD said machine: the machine action, never an agent
    BUSY = "busy"
    NO_ANSWER = "no_answer"  # unanswered, or answered and gone before any hand-over (AMD HANGUP)
    DECLINED = "declined"  # SIP 603: the callee's own verdict
    CARRIER_FAILURE = "carrier_failure"  # congestion, 5xx, trunk down: not the contact's doing
    INVALID_NUMBER = "invalid_number"  # unallocated number (cause 1 / SIP 404)
    ABANDONED = "abandoned"  # a human not connected within the safe-harbour time
    INTERRUPTED = "interrupted"  # the engine crashed and the channel was gone on restart
    SKIPPED = "skipped"  # preview mode: the agent skipped the contact


class Disposition(StrEnum):
    SALE = "sale"
    NOT_INTERESTED = "not_interested"
    WRONG_NUMBER = "wrong_number"
    DO_NOT_CALL = "do_not_call"
    CALLBACK = "callback"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _from_toml_time(value: object) -> object:
    # engine.toml may give the time unquoted (`start = 09:00:00`, a TOML local time): the
    # same wall-clock minute as "09:00". Seconds have no place in a calling window.
    if isinstance(value, time):
        if value.tzinfo is not None or value.second or value.microsecond:
            _check_hhmm(value.isoformat())  # seconds or an offset: refused, in words
        return value.strftime("%H:%M")
    return value


def _check_hhmm(value: str) -> str:
    if not re.fullmatch(_HHMM, value):
        raise ValueError('expected a 24-hour time "HH:MM", 00:00 to 23:59, e.g. "09:00"')
    return value


# The schema keeps the pattern; the check says in words what it is.
HHMM = Annotated[
    str,
    BeforeValidator(_from_toml_time),
    AfterValidator(_check_hhmm),
    Field(json_schema_extra={"pattern": _HHMM}),
]


class CallingWindow(_Strict):
    """When a contact may be called, in the contact's own local time ("HH:MM", wall clock).

    ``end`` before ``start`` is a window over midnight (e.g. 22:00-06:00, counted on the day
    it starts); ``end`` equal to ``start`` is the whole day.
    """

    # At least one day, checked after the days themselves (not min_length): pydantic counts a
    # tuple's valid items, so one misspelt day of one was also "Tuple should have at least 1
    # item". The schema still says minItems.
    days: tuple[Weekday, ...] = Field(
        default=("mon", "tue", "wed", "thu", "fri", "sat"), json_schema_extra={"minItems": 1}
    )
    start: HHMM = "09:00"
    end: HHMM = "20:00"
    holidays: tuple[date, ...] = ()

    @field_validator("days", mode="after")
    @classmethod
    def _some_day(cls, value: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
        if not value:
            raise ValueError(f"at least one day is needed, of {', '.join(WEEKDAYS)}")
        return value

    @property
    def start_time(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def end_time(self) -> time:
        return time.fromisoformat(self.end)


class RetryRule(_Strict):
    """What an outcome leads to: another attempt after ``after_s``, or the end."""

    after_s: float = Field(default=3600.0, ge=0, le=30 * 86400)
    final: bool = False  # the contact is finished with this outcome
    counts: bool = True  # counts toward max_attempts (a carrier failure does not)


def default_retries() -> dict[Outcome, RetryRule]:
    return {
        Outcome.BUSY: RetryRule(after_s=15 * 60),
        Outcome.NO_ANSWER: RetryRule(after_s=2 * 3600),
        Outcome.MACHINE: RetryRule(after_s=86400),
        Outcome.CARRIER_FAILURE: RetryRule(after_s=5 * 60, counts=False),
        Outcome.ABANDONED: RetryRule(after_s=3600),
        Outcome.DECLINED: RetryRule(final=True),
        Outcome.INVALID_NUMBER: RetryRule(final=True),
        Outcome.HUMAN: RetryRule(final=True),
        Outcome.INTERRUPTED: RetryRule(after_s=15 * 60, counts=False),
        Outcome.SKIPPED: RetryRule(after_s=3600, counts=False),
    }


_LO = {key: lo for key, (lo, _hi) in AMD_LIMITS.items()}
_HI = {key: hi for key, (_lo, hi) in AMD_LIMITS.items()}


class AmdParameters(_Strict):
    """app_amd's keys (amd.conf; ms except maximum_number_of_words and silence_threshold),
    each replacing the profile's value for this campaign; a key not given keeps it. The
    ranges are engine.speech.amd.params.LIMITS."""

    initial_silence: (
        Annotated[
            int,
            Field(ge=_LO["initial_silence"], le=_HI["initial_silence"]),
            BeforeValidator(_whole),
        ]
        | None
    ) = None
    greeting: (
        Annotated[int, Field(ge=_LO["greeting"], le=_HI["greeting"]), BeforeValidator(_whole)]
        | None
    ) = None
    after_greeting_silence: (
        Annotated[
            int,
            Field(ge=_LO["after_greeting_silence"], le=_HI["after_greeting_silence"]),
            BeforeValidator(_whole),
        ]
        | None
    ) = None
    total_analysis_time: (
        Annotated[
            int,
            Field(ge=_LO["total_analysis_time"], le=_HI["total_analysis_time"]),
            BeforeValidator(_whole),
        ]
        | None
    ) = None
    min_word_length: (
        Annotated[
            int,
            Field(ge=_LO["min_word_length"], le=_HI["min_word_length"]),
            BeforeValidator(_whole),
        ]
        | None
    ) = None
    between_words_silence: (
        Annotated[
            int,
            Field(ge=_LO["between_words_silence"], le=_HI["between_words_silence"]),
            BeforeValidator(_whole),
        ]
        | None
    ) = None
    maximum_number_of_words: (
        Annotated[
            int,
            Field(ge=_LO["maximum_number_of_words"], le=_HI["maximum_number_of_words"]),
            BeforeValidator(_whole),
        ]
        | None
    ) = None
    silence_threshold: (
        Annotated[
            int,
            Field(ge=_LO["silence_threshold"], le=_HI["silence_threshold"]),
            BeforeValidator(_whole),
        ]
        | None
    ) = None
    maximum_word_length: (
        Annotated[
            int,
            Field(ge=_LO["maximum_word_length"], le=_HI["maximum_word_length"]),
            BeforeValidator(_whole),
        ]
        | None
    ) = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: object) -> object:
        # A typo ("greting") would otherwise be "Extra inputs are not permitted".
        if isinstance(data, dict):
            unknown = [k for k in data if k not in AMD_LIMITS]
            if unknown:
                raise ValueError(
                    f"unknown AMD parameter {unknown[0]!r}: expected one of {', '.join(AMD_KEYS)}"
                )
        return data


#: ``switch``: each switch's own amd.conf (Asterisk) / the driver's parameters (FreeSWITCH, the
#: same values), as before profiles existed. ``accurate``: amd.conf's values pinned for this
#: campaign. ``fast``: amd-fast.conf's. docs/amd.md "Per campaign" has the measured trade.
AmdProfile = Literal["switch", "accurate", "fast"]


class AmdSettings(_Strict):
    enabled: bool = True
    # What a machine gets: hung up (no flow), or an ivr/ flow that leaves a message.
    machine_flow: Name | None = None
    # The detector's declared rate of people taken for machines (Ofcom's "reasoned estimate"),
    # added to the abandon estimate: docs/amd.md gives the measured figure.
    false_positive_rate: float = Field(default=0.02, ge=0, le=0.5)
    # The detector's parameters: a preset, then single keys over it (docs/amd.md).
    profile: AmdProfile = Field(
        default="switch",
        description=(
            "AMD parameter preset: switch (the switch's amd.conf, the default), accurate"
            " (amd.conf's values pinned), fast (amd-fast.conf: people decided sooner, most"
            " machines passed to a person). docs/amd.md has the measured trade."
        ),
    )
    params: AmdParameters = Field(
        default_factory=AmdParameters,
        description="Single AMD keys (amd.conf's names) over the profile's values.",
    )

    def overrides(self) -> AmdOverrides | None:
        """What this campaign's calls pass to the detector (``Amd(params)``): None for the
        switch's own parameters (the default: ``AMD()`` exactly as before)."""
        values: dict[str, int] = {}
        if self.profile != "switch":
            values.update(AmdOverrides.of(AMD_PROFILES[self.profile]).given())
        values.update(self.params.model_dump(exclude_none=True))
        return AmdOverrides(**values) if values else None


class CampaignSpec(_Strict):
    """One campaign's settings."""

    mode: Mode = Mode.PREDICTIVE
    power_ratio: float = Field(default=2.0, ge=1.0, le=10.0)
    abandon_limit: float = Field(default=0.03, gt=0, le=0.2)
    abandon_period: AbandonPeriod = AbandonPeriod.FCC_30D
    trunk_group: Name
    caller_id_num: str = Field(default="", pattern=r"^\+?[0-9]{0,20}$")
    caller_id_name: str = Field(default="", max_length=40)
    queue: Name
    skills: dict[Name, Annotated[Annotated[int, Field(ge=1, le=10)], BeforeValidator(_whole)]] = (
        Field(default_factory=dict)
    )
    amd: AmdSettings = AmdSettings()
    # Played to a person no agent took within safe_harbour_s (a sound file name on the switch).
    safe_harbour_prompt: str = Field(default="engine-safe-harbour", pattern=r"^[A-Za-z0-9_/.-]+$")
    safe_harbour_s: float = Field(default=2.0, gt=0, le=10)
    window: CallingWindow = CallingWindow()
    retries: dict[Outcome, RetryRule] = Field(default_factory=default_retries)
    max_attempts: Whole = Field(default=3, ge=1, le=50)
    max_attempts_per_day: Whole = Field(default=2, ge=1, le=50)
    # Attempts that do not count (carrier failures, interruptions) are capped too: a number the
    # carriers always refuse must not be dialled for ever.
    max_uncounted_attempts: Whole = Field(default=10, ge=1, le=100)
    priority: Whole = Field(default=0, ge=-100, le=100)
    default_region: Region = "US"
    ring_timeout_s: float = Field(default=25.0, ge=5, le=120)
    max_lines: Whole = Field(default=0, ge=0, le=10000)  # 0: 3 lines per logged-in agent
    # Contacts held after a crash left their attempt's outcome unknown (docs/campaigns.md).
    quarantine_s: float = Field(default=3600.0, ge=0, le=7 * 86400)
    preview_timeout_s: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("retries", mode="after")
    @classmethod
    def _complete_retries(cls, value: dict[Outcome, RetryRule]) -> dict[Outcome, RetryRule]:
        # A rule given changes only the fields it names ({"after_s": 60} for carrier_failure
        # keeps counts = false); outcomes not given keep their defaults.
        merged = default_retries()
        for outcome, rule in value.items():
            given = {name: getattr(rule, name) for name in rule.model_fields_set}
            merged[outcome] = merged[outcome].model_copy(update=given)
        return merged


class CampaignConfig(_Strict):
    """A campaign as ``[[campaigns]]`` in engine.toml or the body of ``POST /v1/campaigns``."""

    name: CampaignId
    spec: CampaignSpec
