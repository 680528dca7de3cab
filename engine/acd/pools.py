"""Sorted pools of available agents, one per (queue, entry stage), and each strategy's key.

A pool is a list of key tuples kept sorted with :mod:`bisect`; the agent id is
always the last element, so keys are unique and order is total (deterministic
ties). For the ordered strategies the best agent is the first key not
excluded; the others (round-robin, ring-all, the weighted and scored ones) key
on ``(agent_id, row, level)`` and look at every candidate, ``row`` being the
agent's row in :class:`engine.acd.strategies.AgentRows`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Container, Iterator, Sequence
from heapq import merge
from typing import Any

from engine.acd.model import AgentView, Strategy

Key = tuple[Any, ...]

ORDERED = frozenset(
    {
        Strategy.LONGEST_IDLE,
        Strategy.FEWEST_CALLS,
        Strategy.LEAST_TALK_TIME,
        Strategy.HIGHEST_SKILL_LEVEL,
    }
)


def key_kind(strategy: Strategy) -> str:
    """Strategies whose pools hold the same keys (all but the ordered ones key on the agent
    id), so a queue running several strategies keeps one pool per kind, not per strategy."""
    return strategy.value if strategy in ORDERED else "by-id"


def pool_key(strategy: Strategy, view: AgentView, level: int, row: int) -> Key:
    """Smaller is better for the ordered strategies; ties go to the longest idle."""
    if strategy is Strategy.LONGEST_IDLE:
        return (view.idle_since, view.agent_id)
    if strategy is Strategy.FEWEST_CALLS:
        return (view.calls_handled, view.idle_since, view.agent_id)
    if strategy is Strategy.LEAST_TALK_TIME:
        return (view.talk_s, view.idle_since, view.agent_id)
    if strategy is Strategy.HIGHEST_SKILL_LEVEL:
        return (-level, view.idle_since, view.agent_id)
    return (view.agent_id, row, level)


def agent_of(strategy: Strategy, key: Key) -> str:
    agent_id = key[0] if strategy not in ORDERED else key[-1]
    assert isinstance(agent_id, str)
    return agent_id


class Pool:
    __slots__ = ("id_at", "keys")

    def __init__(self, strategy: Strategy) -> None:
        self.keys: list[Key] = []
        self.id_at = -1 if strategy in ORDERED else 0  # where the agent id is in a key

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: Key) -> None:
        insort(self.keys, key)

    def remove(self, key: Key) -> None:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]

    def first(self, excluded: Container[str], *, after: Key | None = None) -> Key | None:
        """The first key (after ``after``, if given) whose agent is not excluded (ordered)."""
        start = 0 if after is None else bisect_right(self.keys, after)
        at = self.id_at
        for i in range(start, len(self.keys)):
            key = self.keys[i]
            if key[at] not in excluded:
                return key
        return None


def best_first(pools: Sequence[Pool], excluded: Container[str]) -> Key | None:
    heads = [k for p in pools if (k := p.first(excluded)) is not None]
    return min(heads) if heads else None


def next_after(pools: Sequence[Pool], excluded: Container[str], after: Key | None) -> Key | None:
    """Round-robin: the first key after ``after``, wrapping to the start."""
    found = [k for p in pools if (k := p.first(excluded, after=after)) is not None]
    if not found and after is not None:
        found = [k for p in pools if (k := p.first(excluded)) is not None]
    return min(found) if found else None


def every(pools: Sequence[Pool], excluded: Container[str]) -> Iterator[Key]:
    """All keys of the ``(agent_id, row, level)`` pools, in agent id order, minus the excluded."""
    source: Iterator[Key] = (
        iter(pools[0].keys) if len(pools) == 1 else merge(*(p.keys for p in pools))
    )
    if not excluded:
        return source
    return (k for k in source if k[0] not in excluded)
