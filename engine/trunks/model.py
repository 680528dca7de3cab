"""Plain values of the trunk domain: what a trunk and a group ARE (specs) and
the small value types every pure module shares.

Specs are frozen dataclasses built from the validated config
(:mod:`engine.trunks.config`), so the decision code never depends on pydantic
and the simulator or a test can build them directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from engine.trunks.translate import Translation

Reachability = Literal["reachable", "unreachable", "unknown"]
Verdict = Literal["failover", "final", "success"]
#: An attempt's verdict; "not-placed": the originate never reached the switch
#: (link down). That says nothing about the carrier, so no breaker counts it.
AttemptVerdict = Literal["failover", "final", "success", "not-placed"]


class Health(enum.StrEnum):
    """What ``GET /v1/trunks`` shows as ``state``.

    UP: selectable. DEGRADED: selectable, but its recent error rate or
    post-dial delay is above the "degraded" marks (an early warning, below the
    thresholds that open the breaker). DOWN: never selected (breaker open: the
    switch says unreachable, or calls kept failing). PROBING: the breaker is
    half-open; one live call at a time is let through as a probe.
    """

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    PROBING = "probing"


class Phase(enum.StrEnum):
    """Circuit-breaker phase."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Selection(enum.StrEnum):
    PRIORITY = "priority"  # lowest priority value first, weighted random inside a tier (SRV style)
    ROUND_ROBIN = "round_robin"
    LEAST_USED = "least_used"


@dataclass(frozen=True, slots=True)
class BreakerParams:
    """Health and circuit-breaker tuning of one trunk (see docs/trunks.md)."""

    failure_threshold: int = 5  # N: consecutive trunk failures that open the breaker
    error_rate: float = 0.5  # X: failure share over the window that opens it...
    min_samples: int = 20  # ...once the window holds at least this many results
    window_s: float = 60.0  # sliding window for error rate and post-dial delay
    cooldown_s: float = 30.0  # OPEN -> HALF_OPEN after this long (first opening)
    backoff: float = 2.0  # each failed probe multiplies the cooldown...
    max_cooldown_s: float = 300.0  # ...up to this cap, so a trunk is never dead for good
    close_after: int = 2  # M: successful probes in a row that close it again
    probe_timeout_s: float = 120.0  # a probe with no verdict after this frees the probe slot
    report_ttl_s: float = 300.0  # an "unreachable" report older than this no longer blocks
    degraded_error_rate: float = 0.2  # DEGRADED above this failure share (same min_samples)
    degraded_pdd_s: float = 8.0  # DEGRADED when the mean post-dial delay exceeds this


@dataclass(frozen=True, slots=True)
class TrunkSpec:
    """One carrier connection on one switch."""

    name: str
    switch: str
    target: str  # PJSIP endpoint (Asterisk) or sofia gateway (FreeSWITCH)
    max_channels: int
    max_cps: float
    cps_burst: int = 1
    priority: int = 10
    weight: int = 100
    tags: tuple[str, ...] = ()
    breaker: BreakerParams = field(default_factory=BreakerParams)


@dataclass(frozen=True, slots=True)
class CausePolicy:
    """Which hangup causes move a call to the next trunk.

    ``never_*`` wins over ``failover_*``: an outcome that matches any never
    entry on any of its three signals is final (see :func:`causes.classify`).
    Names are FreeSWITCH-style cause names (``GATEWAY_DOWN``), upper case.
    """

    failover_q850: frozenset[int]
    failover_sip: frozenset[int]
    failover_names: frozenset[str]
    never_q850: frozenset[int]
    never_sip: frozenset[int]
    never_names: frozenset[str]


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    members: tuple[str, ...]
    causes: CausePolicy
    selection: Selection = Selection.PRIORITY
    max_attempts: int = 3  # attempts per call, across members; each member at most once
    queue_timeout_s: float = 5.0  # total time a call may wait while every member is full
    #: The implicit group of one trunk (a call with a plain ``trunk``): same
    #: limits and queueing, no failover. Not listed as a group in the API.
    single: bool = False
    #: Outbound number translation rules, first match wins (engine/trunks/translate.py).
    translations: tuple[Translation, ...] = ()


def single_group_name(trunk: str) -> str:
    """Name of a trunk's implicit group. ':' never occurs in configured names."""
    return f"trunk:{trunk}"


@dataclass(frozen=True, slots=True)
class CauseInfo:
    """How an attempt ended, as the driver reported it (HungUp/OriginateFailed)."""

    cause: int | None = None
    sip_code: int | None = None
    cause_text: str = ""

    def to_dict(self) -> dict[str, int | str | None]:
        return {"cause": self.cause, "sip_code": self.sip_code, "cause_text": self.cause_text}
