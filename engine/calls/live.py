"""The live-call table: what this engine tracks right now, in memory only.

No I/O and no decisions: the calls the engine owns, one lock per call (every
change of a call happens under its lock), which call each later attempt's leg
belongs to, and the trunk side of live group calls. The other collaborators
of the calls service read and change it; only the state committer removes a
call (when it ends).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from engine.calls.commands import OriginateCommand
from engine.calls.model import Call
from engine.trunks.planner import CallPlan


@dataclass
class GroupCall:
    """The trunk side of one live group call (mutable, under the call's lock)."""

    cmd: OriginateCommand
    plan: CallPlan
    legs: dict[int, str]  # attempt number -> leg (channel) id
    pdd_s: float | None = None  # current attempt: originate to first Ringing
    answered_trunk: str | None = None  # holds a channel until the leg hangs up

    @property
    def in_flight(self) -> bool:
        return self.plan.current is not None or self.answered_trunk is not None


class LiveCalls:
    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self.groups: dict[str, GroupCall] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._legs: dict[str, str] = {}  # leg id of attempts 2.. -> call id
        # Live calls per switch, kept as calls come, move (failover) and go:
        # read on every state change (the live-calls gauge, least-loaded pick).
        self._per_switch: Counter[str] = Counter()

    def __contains__(self, call_id: object) -> bool:
        return call_id in self.calls

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self.calls.values()))

    def get(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    def put(self, call: Call) -> None:
        old = self.calls.get(call.call_id)
        if old is None or old.switch != call.switch:
            if old is not None:
                self._per_switch[old.switch] -= 1
            self._per_switch[call.switch] += 1
        self.calls[call.call_id] = call

    def lock(self, call_id: str) -> asyncio.Lock:
        lock = self._locks.get(call_id)
        if lock is None:
            lock = self._locks[call_id] = asyncio.Lock()
        return lock

    def add_leg(self, leg: str, call_id: str) -> None:
        self._legs[leg] = call_id

    def owner(self, leg: str) -> str:
        """The call a leg belongs to (a call's first leg has the call's id)."""
        return self._legs.get(leg, leg)

    def on_switch(self, switch: str) -> int:
        return self._per_switch[switch]

    def remove(self, call_id: str) -> GroupCall | None:
        """Forget an ended call: its lock, its legs and its group state (returned)."""
        old = self.calls.pop(call_id, None)
        if old is not None:
            self._per_switch[old.switch] -= 1
        self._locks.pop(call_id, None)
        gc = self.groups.pop(call_id, None)
        if gc is not None:
            for leg in gc.legs.values():
                self._legs.pop(leg, None)
        return gc
