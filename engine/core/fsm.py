"""A tiny table-driven state machine helper.

A table maps ``(state, input) -> next state``. Looking up a pair that is not
in the table is not an exception: it returns an :class:`Illegal` result that
the caller logs and counts. A telephony engine sees out-of-order and duplicate
events routinely (a late Newstate after Hangup, a replay after reconnect); it
must never crash on them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S", bound=Hashable)
I = TypeVar("I", bound=Hashable)  # noqa: E741 - conventional name for "input"


@dataclass(frozen=True, slots=True)
class Moved(Generic[S]):
    before: S
    after: S


@dataclass(frozen=True, slots=True)
class Stayed(Generic[S]):
    """The input is known for this state but does not change it (duplicates)."""

    state: S


@dataclass(frozen=True, slots=True)
class Illegal(Generic[S, I]):
    state: S
    input: I


class Table(Generic[S, I]):
    def __init__(self, rows: Mapping[tuple[S, I], S]) -> None:
        self._rows = dict(rows)

    def step(self, state: S, value: I) -> Moved[S] | Stayed[S] | Illegal[S, I]:
        nxt = self._rows.get((state, value))
        if nxt is None:
            return Illegal(state, value)
        if nxt == state:
            return Stayed(state)
        return Moved(state, nxt)

    def inputs_for(self, state: S) -> set[I]:
        return {i for (s, i) in self._rows if s == state}
