"""The driver's own view of live legs, from the events it saw, to correct ``show channels``.

``show channels`` is served from FreeSWITCH's core database, which is written
behind the events (recorded in show-channels-lag.esl, measured on the same
switch): a leg still reads RINGING 49-198 ms after its CHANNEL_ANSWER, and a
hung-up leg is still listed 67-191 ms after its CHANNEL_HANGUP_COMPLETE. A
snapshot taken then is older than events the driver has already seen, so it
must not win over them:

* a leg seen answered is never reported ringing again;
* a leg seen hung up is never reported alive again (it is remembered for a
  while as a tombstone: its row can linger, its uuid never comes back).

Pure: the driver feeds it normalized events and snapshots.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field, replace

from engine.pbx import base

_RANK = {"other": 0, "ringing": 1, "answered": 2}


@dataclass
class LiveView:
    """Latest state per leg from events, plus recent hang-ups."""

    #: How many hung-up uuids to remember (their rows linger < 0.2 s; any bound
    #: far above the hang-ups of a few seconds does).
    max_tombstones: int = 100_000
    _state: dict[str, str] = field(default_factory=dict)
    _ended: collections.OrderedDict[str, None] = field(default_factory=collections.OrderedDict)

    def observe(self, event: base.PbxEvent) -> None:
        uid = event.call_id
        if not uid:
            return
        if isinstance(event, base.HungUp | base.OriginateFailed):
            self._state.pop(uid, None)
            self._ended[uid] = None
            self._ended.move_to_end(uid)
            while len(self._ended) > self.max_tombstones:
                self._ended.popitem(last=False)
        elif isinstance(event, base.Answered):
            self._state[uid] = "answered"
        elif isinstance(event, base.Ringing):
            if _RANK[self._state.get(uid, "other")] < _RANK["ringing"]:
                self._state[uid] = "ringing"
        elif isinstance(event, base.ChannelCreated):
            self._state.setdefault(uid, "other")

    def ended(self, call_id: str) -> bool:
        return call_id in self._ended

    def answered(self, call_id: str) -> bool:
        """The events said this leg answered (and it has not hung up since)."""
        return self._state.get(call_id) == "answered"

    def merge(self, snapshot: list[base.LiveChannel]) -> list[base.LiveChannel]:
        """``snapshot`` corrected by what the events already said."""
        merged: list[base.LiveChannel] = []
        for row in snapshot:
            if row.call_id in self._ended:
                continue  # a lagging row of a leg we saw hang up
            seen = self._state.get(row.call_id)
            if seen is not None and _RANK[seen] > _RANK[row.state]:
                row = replace(row, state=seen)  # type: ignore[arg-type]
            merged.append(row)
        return merged

    def forget_missing(self, merged: list[base.LiveChannel], keep: set[str]) -> None:
        """After a resync: legs neither in the (merged) snapshot nor seen since it began
        (``keep``) are gone; their hang-up was lost while the link was down."""
        alive = {row.call_id for row in merged} | keep
        for uid in [u for u in self._state if u not in alive]:
            del self._state[uid]
