"""A campaign's settings (``CampaignSpec``), as ``engine.toml`` defaults, the API and the
``campaigns.spec`` column hold them. Pure: no I/O.

Every field has a production-sane default, so ``POST /v1/campaigns`` with a name, a trunk group
and a queue is a working campaign. Validation errors name the field and what was expected.
"""

from __future__ import annotations

from datetime import date, time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from engine.campaigns.regions import Region

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
    NO_ANSWER = "no_answer"
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


HHMM = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class CallingWindow(_Strict):
    """When a contact may be called, in the contact's own local time ("HH:MM", wall clock).

    ``end`` before ``start`` is a window over midnight (e.g. 22:00-06:00, counted on the day
    it starts); ``end`` equal to ``start`` is the whole day.
    """

    days: tuple[Weekday, ...] = Field(
        default=("mon", "tue", "wed", "thu", "fri", "sat"), min_length=1
    )
    start: HHMM = "09:00"
    end: HHMM = "20:00"
    holidays: tuple[date, ...] = ()

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


class AmdSettings(_Strict):
    enabled: bool = True
    # What a machine gets: hung up (no flow), or an ivr/ flow that leaves a message.
    machine_flow: Name | None = None
    # The detector's declared rate of people taken for machines (Ofcom's "reasoned estimate"),
    # added to the abandon estimate: docs/amd.md gives the measured figure.
    false_positive_rate: float = Field(default=0.02, ge=0, le=0.5)


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
