"""What the ACD service's parts share: settings, the live agents and entries, the clock.

Only the ACD service's modules (docs/acd.md "Module map") touch this state, and only
from plain (not ``async``) methods, so two events never interleave inside one change.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.acd.entries import Entry, Phase
from engine.acd.errors import QueueNotFound, UnknownAgent
from engine.acd.kpi import ANSWERED
from engine.acd.kpi_window import KpiWindow
from engine.acd.model import DEFAULT_PRIORITIES, DEFAULT_PRIORITY, QueueSpec
from engine.agents.model import AgentConfig, AgentStatus
from engine.pbx.base import PbxEvent

#: Ids of a queue's entries counted here kept for the next read of its KPI window
#: (``AcdState.ended_here``): they are pruned to the window anyway; this bounds a burst.
UNRESTORED_KEPT = 100_000


@dataclass(frozen=True, slots=True)
class AcdSettings:
    pause_reasons: tuple[str, ...] = ("break", "lunch", "training")
    priorities: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    default_priority: int = DEFAULT_PRIORITY
    intents: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    tick_s: float = 0.05
    reconcile_s: float = 2.0
    kpi_window_s: float = 24 * 3600.0
    storage_timeout_s: float = 2.0
    # Switch name -> endpoints a supervisor's listen / whisper / barge may ring there (besides
    # every agent's phone on that switch): [acd] supervisor_endpoints.
    supervisor_endpoints: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PendingAction:
    """A supervisor's pause or logout of an agent who was ringing or talking: applied when
    the call (and its wrap-up) is over (engine/acd/supervision.py)."""

    action: str  # "pause" | "logout"
    reason: str
    actor: str
    note: str = ""


@dataclass(slots=True)
class QueueTotals:
    """Monotonic counts of one queue since start (the Prometheus counters of
    engine/acd/metrics.py): bumped once per finished entry, O(1)."""

    outcomes: dict[str, int] = field(default_factory=dict)  # finished entries by outcome
    answered_within_sl: int = 0
    answered_wait_s: float = 0.0  # summed waits of answered entries (rate / rate = ASA)


@dataclass(slots=True)
class AgentRecord:
    config: AgentConfig
    status: AgentStatus
    session_id: str = ""
    leg: str = ""  # the agent's leg while reserved / on a call
    switch: str = ""
    entry_id: str = ""  # the entry it is offered, talking to, or wrapping up
    confirmed: bool = True  # False after a restart until its switch's channel list is seen


class _Held(dict[str, Any]):
    """A dict that reports every insertion (the ACD's live agents and entries): the timer
    loop sleeps while both are empty and must hear of the first one at once, whichever
    module adds it (see ``Timers.run``)."""

    __slots__ = ("_added",)

    def __init__(self, added: Callable[[], None]) -> None:
        super().__init__()
        self._added = added

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._added()

    def setdefault(self, key: str, default: Any = None) -> Any:
        value = super().setdefault(key, default)
        self._added()
        return value

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        if self:
            self._added()


class AcdState:
    def __init__(
        self,
        *,
        settings: AcdSettings,
        queues: Sequence[QueueSpec],
        kinds: Mapping[str, str],
        now: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.queues = {q.name: q for q in queues}
        self.kinds = dict(kinds)  # switch name -> driver kind
        self._clock = now
        self._last_now = float("-inf")
        #: Set when an agent or an entry is added, or on close: wakes the timer loop,
        #: which sleeps while the ACD holds neither (``Timers.run``).
        self.held = asyncio.Event()
        self.agents: dict[str, AgentRecord] = _Held(self.held.set)
        self.entries: dict[str, Entry] = _Held(self.held.set)  # entry_id -> live entry
        self.by_call: dict[str, str] = {}  # caller call id -> entry id
        self.legs: dict[str, tuple[str, str | None]] = {}  # leg -> (entry id, agent id | None)
        # Each queue's live KPI window: exact sums per minute of end time (kpi_window.py).
        self.kpi: dict[str, KpiWindow] = {q: KpiWindow(settings.kpi_window_s) for q in self.queues}
        # The window is read back from PostgreSQL at start and again at each takeover
        # (restore.py), each read from where the last one of the queue ended
        # (``kpi_read_until``, absent: never read) up to its ``now``. Entries counted here
        # since (entry id -> end time, pruned to the window) are left out of the next read:
        # they count already.
        self.kpi_read_until: dict[str, float] = {}
        self.ended_here: dict[str, dict[str, float]] = {q: {} for q in self.queues}
        self.kpi_restored = False  # the start's read ran (once: a second would count twice)
        # Entries ended before a restart (or takeover) whose agent's wrap-up was resumed from
        # its record (restore.py): not counted here yet (see ``wrap_up_over``).
        self.restored_ended: set[str] = set()
        self.totals: dict[str, QueueTotals] = {q: QueueTotals() for q in self.queues}
        self.wrapping: dict[str, Entry] = {}  # agent id -> the entry whose wrap-up it is in
        # Events of legs not known yet, while an agent originate is in flight:
        # its first events can come before CallService.originate returns the id.
        self.originating = 0
        self.stash: OrderedDict[str, list[PbxEvent]] = OrderedDict()
        # switch -> (entry id, agent id) of offers its link was away for (nothing rang):
        # the router holds those agents as missed until the switch is back (restore.py).
        self.unreached: dict[str, set[tuple[str, str]]] = {}
        self.closed = False
        self.retry = False
        # agent id -> a supervisor's pause or logout waiting for its call to end.
        self.pending: dict[str, PendingAction] = {}

    def entry_ended(self, entry: Entry) -> None:
        """A finished entry into its queue's KPI window (and its handle time, if its wrap-up
        was over before the caller left)."""
        assert entry.ended_at is not None
        window = self.kpi[entry.queue]
        sl = self.queues[entry.queue].service_level_s
        window.ended(entry.ended_at, entry.outcome, entry.wait_s or 0.0, sl)
        if entry.outcome == ANSWERED and entry.wrap_up_s is not None:
            window.wrapped(entry.ended_at, entry.talk_s or 0.0, entry.wrap_up_s)
        ids = self.ended_here[entry.queue]
        ids[entry.entry_id] = entry.ended_at
        # Ids leave in end order: those out of the window can be in no read any more.
        oldest = window.since(entry.ended_at)
        while ids:
            first, at = next(iter(ids.items()))
            if at >= oldest and len(ids) <= UNRESTORED_KEPT:
                break
            del ids[first]

    def wrap_up_over(self, entry: Entry, wrap_up_s: float) -> None:
        """The agent's wrap-up after ``entry`` is over. An entry that already ended answered
        gets its handle time now, in the bucket of its end; one still going gets it when it
        ends (``entry_ended``): counted once either way.

        An entry that ended before a restart (its agent's wrap-up resumed from Redis,
        ``restored_ended``) was counted by the previous run, not here: if the KPI window's
        read from PostgreSQL covered its end, the read counted the entry (its row had no
        wrap-up yet) and only the handle time is added; if not (read later, or never), it is
        counted whole here and the read leaves it out."""
        first = entry.wrap_up_s is None
        entry.wrap_up_s = wrap_up_s
        restored = entry.entry_id in self.restored_ended
        self.restored_ended.discard(entry.entry_id)
        if first and entry.phase is Phase.ENDED and entry.outcome == ANSWERED:
            assert entry.ended_at is not None
            read_until = self.kpi_read_until.get(entry.queue)
            if restored and (read_until is None or entry.ended_at >= read_until):
                self.entry_ended(entry)
                return
            self.kpi[entry.queue].wrapped(entry.ended_at, entry.talk_s or 0.0, wrap_up_s)

    def now(self) -> float:
        # The router refuses time going backwards; the wall clock may (NTP).
        now = max(self._clock(), self._last_now)
        self._last_now = now
        return now

    def agent(self, agent_id: str) -> AgentRecord:
        rec = self.agents.get(agent_id)
        if rec is None:
            raise UnknownAgent(
                f"no agent with id {agent_id!r}",
                details={"agent_id": agent_id, "known": sorted(self.agents)[:50]},
            )
        return rec

    def sorted_entries(self, queue: str | None = None) -> list[Entry]:
        """Live entries (of one queue, or all), in service order."""
        out = [e for e in self.entries.values() if queue is None or e.queue == queue]
        return sorted(out, key=lambda e: (-e.priority, e.entered_at, e.entry_id))

    def queue(self, name: str) -> QueueSpec:
        q = self.queues.get(name)
        if q is None:
            raise QueueNotFound(
                f"no queue named {name!r}", details={"queue": name, "known": sorted(self.queues)}
            )
        return q
