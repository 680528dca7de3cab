"""Config schema of trunks and trunk groups (``[[trunks]]``, ``[[trunk_groups]]``).

Same style as :mod:`engine.core.config`: unknown keys are errors, models are
frozen, messages say what was expected. This module must not import
``engine.core.config`` (that module will import this one to add the two lists
to ``EngineConfig``), so the name pattern is repeated here.

Cross-references (group members exist, names unique, switches exist) are
checked by :func:`check_references`, which ``EngineConfig`` calls from its
``model_validator``; :class:`TrunkingConfig` does the same for the two lists
alone (tests, tools).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.core.config import duplicate_problem, unknown_problem
from engine.trunks import causes as cz
from engine.trunks.model import (
    BreakerParams,
    CausePolicy,
    GroupSpec,
    Selection,
    TrunkSpec,
)
from engine.trunks.translate import compile_rule

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Q850 = Annotated[int, Field(ge=0, le=127)]
SipCode = Annotated[int, Field(ge=300, le=699)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerConfig(_Strict):
    """``[trunks.breaker]``: health and circuit-breaker tuning (docs/trunks.md)."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    min_samples: int = Field(default=20, ge=1)
    window_s: float = Field(default=60.0, ge=1, le=3600)
    cooldown_s: float = Field(default=30.0, gt=0, le=3600)
    backoff: float = Field(default=2.0, ge=1, le=10)
    max_cooldown_s: float = Field(default=300.0, gt=0, le=86400)
    close_after: int = Field(default=2, ge=1, le=100)
    probe_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    report_ttl_s: float = Field(default=300.0, gt=0, le=86400)
    degraded_error_rate: float = Field(default=0.2, gt=0, le=1)
    degraded_pdd_s: float = Field(default=8.0, gt=0, le=300)

    @model_validator(mode="after")
    def _coherent(self) -> BreakerConfig:
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError(
                f"max_cooldown_s ({self.max_cooldown_s}) must be >= cooldown_s ({self.cooldown_s})"
            )
        if self.degraded_error_rate > self.error_rate:
            raise ValueError(
                f"degraded_error_rate ({self.degraded_error_rate}) must be <= error_rate "
                f"({self.error_rate}): a trunk is degraded before its breaker opens"
            )
        return self

    def to_params(self) -> BreakerParams:
        return BreakerParams(**self.model_dump())


class TrunkConfig(_Strict):
    name: Name
    switch: Name  # the [[switches]] name this trunk lives on
    # PJSIP endpoint (Asterisk) or sofia gateway (FreeSWITCH) to dial through.
    target: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@:+-]{1,128}$")]
    max_channels: int = Field(ge=1, le=100_000)
    max_cps: float = Field(gt=0, le=10_000)
    cps_burst: int = Field(default=1, ge=1, le=10_000)
    priority: int = Field(default=10, ge=0, le=1000)  # lower is preferred (SRV order)
    weight: int = Field(default=100, ge=0, le=100_000)  # share inside one priority
    tags: list[Name] = Field(default_factory=list)
    breaker: BreakerConfig = BreakerConfig()

    def to_spec(self) -> TrunkSpec:
        return TrunkSpec(
            name=self.name,
            switch=self.switch,
            target=self.target,
            max_channels=self.max_channels,
            max_cps=self.max_cps,
            cps_burst=self.cps_burst,
            priority=self.priority,
            weight=self.weight,
            tags=tuple(self.tags),
            breaker=self.breaker.to_params(),
        )


class TranslationConfig(_Strict):
    """One ``translations`` entry of a trunk group: ``{match = "regex", replace = "template"}``."""

    match: str = Field(min_length=1, max_length=256)
    replace: str = Field(max_length=64)

    @model_validator(mode="after")
    def _valid(self) -> TranslationConfig:
        compile_rule(self.match, self.replace)  # ValueError says what is wrong
        return self


class TrunkGroupConfig(_Strict):
    name: Name
    members: list[Name] = Field(min_length=1)
    selection: Selection = Selection.PRIORITY
    max_attempts: int = Field(default=3, ge=1, le=20)
    queue_timeout_s: float = Field(default=5.0, ge=0, le=300)
    failover_q850: list[Q850] = Field(default_factory=lambda: sorted(cz.DEFAULT_FAILOVER_Q850))
    failover_sip: list[SipCode] = Field(default_factory=lambda: sorted(cz.DEFAULT_FAILOVER_SIP))
    failover_names: list[str] = Field(default_factory=lambda: sorted(cz.DEFAULT_FAILOVER_NAMES))
    never_q850: list[Q850] = Field(default_factory=lambda: sorted(cz.DEFAULT_NEVER_Q850))
    never_sip: list[SipCode] = Field(default_factory=lambda: sorted(cz.DEFAULT_NEVER_SIP))
    never_names: list[str] = Field(default_factory=lambda: sorted(cz.DEFAULT_NEVER_NAMES))
    # Outbound number translation (E.164 -> what the carrier expects), first match wins.
    translations: list[TranslationConfig] = Field(default_factory=list, max_length=100)

    @field_validator("failover_names", "never_names")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for n in value:
            if not cz.cause_name(n):
                raise ValueError(f"expected cause names such as GATEWAY_DOWN, got {n!r}")
        return value

    @field_validator("members")
    @classmethod
    def _unique_members(cls, value: list[str]) -> list[str]:
        dup = sorted({m for m in value if value.count(m) > 1})
        if dup:
            raise ValueError(f"each trunk may be listed once; repeated: {', '.join(dup)}")
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> TrunkGroupConfig:
        # A cause in both lists would be silently final (never wins); say so
        # instead, so whoever wrote it learns which list to change.
        clashes = []
        for kind, fo, nv in (
            ("q850", set(self.failover_q850), set(self.never_q850)),
            ("sip", set(self.failover_sip), set(self.never_sip)),
            (
                "names",
                cz.normalize_names(self.failover_names),
                cz.normalize_names(self.never_names),
            ),
        ):
            both = sorted(fo & nv, key=str)
            if both:
                clashes.append(
                    f"{', '.join(map(str, both))} in both failover_{kind} and never_{kind}"
                )
        if clashes:
            raise ValueError(
                "; ".join(clashes) + " (never wins; remove it from never_* to fail over on it)"
            )
        return self

    def policy(self) -> CausePolicy:
        return CausePolicy(
            failover_q850=frozenset(self.failover_q850),
            failover_sip=frozenset(self.failover_sip),
            failover_names=cz.normalize_names(self.failover_names),
            never_q850=frozenset(self.never_q850),
            never_sip=frozenset(self.never_sip),
            never_names=cz.normalize_names(self.never_names),
        )

    def to_spec(self) -> GroupSpec:
        return GroupSpec(
            name=self.name,
            members=tuple(self.members),
            causes=self.policy(),
            selection=self.selection,
            max_attempts=self.max_attempts,
            queue_timeout_s=self.queue_timeout_s,
            translations=tuple(compile_rule(t.match, t.replace) for t in self.translations),
        )


def reference_problems(
    trunks: Sequence[TrunkConfig],
    groups: Sequence[TrunkGroupConfig],
    switch_names: Iterable[str] | None = None,
) -> list[str]:
    """Every cross-reference problem, each as ``key.path: what is wrong``."""
    out: list[str] = []
    seen: dict[str, int] = {}
    targets: dict[tuple[str, str], str] = {}
    switches = set(switch_names) if switch_names is not None else None
    for i, t in enumerate(trunks):
        if t.name in seen:
            out.append(duplicate_problem("trunks", i, "name", t.name, seen[t.name]))
        seen.setdefault(t.name, i)
        if switches is not None and t.switch not in switches:
            out.append(unknown_problem(f"trunks[{i}].switch", "switch", t.switch, switches))
        key = (t.switch, t.target)
        if key in targets and targets[key] != t.name:
            # Two trunk entries on one carrier connection would each think they
            # own all of its channels and CPS.
            out.append(
                f"trunks[{i}].target: {t.target!r} on {t.switch!r} is already trunk "
                f"{targets[key]!r}; limits are per carrier connection, define it once"
            )
        targets.setdefault(key, t.name)
    names = set(seen)
    gseen: dict[str, int] = {}
    for i, g in enumerate(groups):
        if g.name in gseen:
            out.append(duplicate_problem("trunk_groups", i, "name", g.name, gseen[g.name]))
        gseen.setdefault(g.name, i)
        for j, m in enumerate(g.members):
            if m not in names:
                out.append(unknown_problem(f"trunk_groups[{i}].members[{j}]", "trunk", m, names))
    return out


def check_references(
    trunks: Sequence[TrunkConfig],
    groups: Sequence[TrunkGroupConfig],
    switch_names: Iterable[str] | None = None,
) -> None:
    """Raise ``ValueError`` listing every problem of :func:`reference_problems`."""
    problems = reference_problems(trunks, groups, switch_names)
    if problems:
        raise ValueError("; ".join(problems))


class TrunkingConfig(_Strict):
    """The two lists on their own, validated together (no switch check)."""

    trunks: list[TrunkConfig] = Field(default_factory=list)
    trunk_groups: list[TrunkGroupConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> TrunkingConfig:
        check_references(self.trunks, self.trunk_groups)
        return self

    def specs(self) -> tuple[list[TrunkSpec], list[GroupSpec]]:
        return [t.to_spec() for t in self.trunks], [g.to_spec() for g in self.trunk_groups]
