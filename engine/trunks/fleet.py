"""The whole trunk picture in one immutable value: specs, live states and the
round-robin cursors of the groups.

The service keeps exactly one :class:`Fleet` and replaces it with what each
pure call returns (copy-on-write of a small dict; nothing here awaits, so on
one event loop there is no race between reading and replacing it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.core.frozen import replace
from engine.trunks import health as hl
from engine.trunks.causes import default_policy
from engine.trunks.model import (
    CauseInfo,
    GroupSpec,
    Health,
    Reachability,
    TrunkSpec,
    single_group_name,
)


def _single(trunk: TrunkSpec) -> GroupSpec:
    # A plain-trunk call: the trunk's limits, queueing and 503, no failover.
    return GroupSpec(
        name=single_group_name(trunk.name),
        members=(trunk.name,),
        causes=default_policy(),
        max_attempts=1,
        single=True,
    )


def _tiers(group: GroupSpec, trunks: Mapping[str, TrunkSpec]) -> tuple[tuple[str, ...], ...]:
    by_prio: dict[int, list[str]] = {}
    for m in group.members:
        by_prio.setdefault(trunks[m].priority, []).append(m)
    return tuple(tuple(by_prio[p]) for p in sorted(by_prio))


@dataclass(frozen=True, slots=True)
class Fleet:
    trunks: Mapping[str, TrunkSpec]
    groups: Mapping[str, GroupSpec]
    states: Mapping[str, hl.TrunkState]
    cursors: Mapping[str, int] = field(default_factory=dict)
    #: group -> members grouped by priority, lowest value first (precomputed).
    tiers: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    #: (switch, target) -> trunk name, to route TrunkStatus reports.
    targets: Mapping[tuple[str, str], str] = field(default_factory=dict)
    #: Switches whose control link is not up: their trunks are not selected
    #: (nothing can be placed there), and no breaker learns anything from it.
    down_switches: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        trunks: Iterable[TrunkSpec],
        groups: Iterable[GroupSpec],
        previous: Fleet | None = None,
    ) -> Fleet:
        """A fleet for this config. With ``previous`` (a reload), trunks that
        still exist keep their live state: channels in use, breaker, counters."""
        specs = {t.name: t for t in trunks}
        grps = {g.name: g for g in groups}
        for t in specs.values():
            grps[single_group_name(t.name)] = _single(t)
        for g in grps.values():
            missing = [m for m in g.members if m not in specs]
            if missing:
                raise ValueError(f"trunk group {g.name!r}: unknown members {missing}")
        old = previous.states if previous else {}
        states = {n: old.get(n, hl.TrunkState()) for n in specs}
        cursors = {n: (previous.cursors.get(n, 0) if previous else 0) for n in grps}
        return cls(
            trunks=specs,
            groups=grps,
            states=states,
            cursors=cursors,
            tiers={n: _tiers(g, specs) for n, g in grps.items()},
            targets={(t.switch, t.target): t.name for t in specs.values()},
            down_switches=previous.down_switches if previous else frozenset(),
        )

    # -- lookups -----------------------------------------------------------

    def trunk_for(self, switch: str, target: str) -> str | None:
        """The trunk a switch report (``TrunkStatus.trunk`` = AOR/gateway) is about."""
        return self.targets.get((switch, target))

    def health(self, name: str, now: float) -> Health:
        return hl.health(self.states[name], self.trunks[name].breaker, now)

    def view(self, name: str, now: float, wall_offset: float = 0.0) -> dict[str, Any]:
        return hl.view(name, self.trunks[name], self.states[name], now, wall_offset)

    def views(self, now: float, wall_offset: float = 0.0) -> list[dict[str, Any]]:
        return [self.view(n, now, wall_offset) for n in self.trunks]

    @property
    def configured_groups(self) -> list[GroupSpec]:
        """The groups of the config (without the trunks' implicit ones)."""
        return [g for g in self.groups.values() if not g.single]

    def next_wakeup(self) -> float | None:
        """Earliest time some trunk's state changes by time alone (breaker
        half-opening, a probe timing out). The service re-reads health then
        to emit ``TrunkStateChanged``."""
        times = [
            t
            for n, st in self.states.items()
            if (t := hl.next_change(st, self.trunks[n].breaker)) is not None
        ]
        return min(times) if times else None

    # -- transitions (each returns a new Fleet) -----------------------------

    def _put(self, name: str, st: hl.TrunkState) -> Fleet:
        states = dict(self.states)
        states[name] = st
        return replace(self, states=states)

    def dispatch(self, name: str, now: float, probe: bool = False) -> Fleet:
        return self._put(name, hl.dispatch(self.states[name], self.trunks[name], now, probe))

    def record(
        self,
        name: str,
        now: float,
        *,
        failed: bool,
        answered: bool = False,
        probe: bool = False,
        pdd_s: float | None = None,
        cause: CauseInfo | None = None,
        release: bool = True,
    ) -> Fleet:
        st = hl.record(
            self.states[name],
            self.trunks[name],
            now,
            failed=failed,
            answered=answered,
            probe=probe,
            pdd_s=pdd_s,
            cause=cause,
            release=release,
        )
        return self._put(name, st)

    def release(self, name: str) -> Fleet:
        """An answered leg on this trunk hung up: free its channel."""
        return self._put(name, hl.release(self.states[name]))

    def report(
        self, name: str, status: Reachability, now: float, rtt_ms: float | None = None
    ) -> Fleet:
        return self._put(name, hl.report(self.states[name], self.trunks[name], now, status, rtt_ms))

    def abandon(self, name: str, *, probe: bool, uncount: bool) -> Fleet:
        """A dispatched attempt that never reached the carrier (no verdict)."""
        return self._put(name, hl.abandon(self.states[name], probe=probe, uncount=uncount))

    def sync(self, name: str, in_use: int, tat: float | None) -> Fleet:
        """The shared counters of this trunk, as every engine sees them."""
        return self._put(name, hl.sync(self.states[name], in_use, tat))

    def with_down_switches(self, down: frozenset[str]) -> Fleet:
        return self if down == self.down_switches else replace(self, down_switches=down)

    def set_in_use(self, name: str, in_use: int) -> Fleet:
        """After a driver resync: the switch's own count of live legs on the trunk."""
        return self._put(name, replace(self.states[name], in_use=max(0, in_use)))

    def drain(self, name: str) -> Fleet:
        return self._put(name, replace(self.states[name], enabled=False))

    def enable(self, name: str) -> Fleet:
        return self._put(name, replace(self.states[name], enabled=True))

    def with_cursor(self, group: str, cursor: int) -> Fleet:
        cursors = dict(self.cursors)
        cursors[group] = cursor
        return replace(self, cursors=cursors)
