"""Reading calls: live ones from memory, the rest from the registry.

A live call is answered from the live table; one that just ended from the
mirror's in-memory cache (readable while Redis is away); anything else from
the Redis registry (a call another engine owns) or the store of recently
ended calls. Every read is bounded by a timeout.
"""

from __future__ import annotations

import asyncio

from engine.calls.errors import CallNotFound
from engine.calls.live import LiveCalls
from engine.calls.mirror import RegistryMirror
from engine.calls.model import Call
from engine.store.redis.registry import CallRegistry

STORE_READ_TIMEOUT_S = 2.0


class CallLookup:
    def __init__(self, live: LiveCalls, registry: CallRegistry, mirror: RegistryMirror) -> None:
        self._live = live
        self._registry = registry
        self._mirror = mirror

    async def get(self, call_id: str) -> Call:
        if call := self._live.get(call_id):
            return call
        if call := self._mirror.recent_ended(call_id):
            return call
        fields = await asyncio.wait_for(self._registry.get(call_id), STORE_READ_TIMEOUT_S)
        if fields and "json" in fields:
            return Call.from_json(fields["json"])
        if ended := await asyncio.wait_for(
            self._mirror.ended_store.get(call_id), STORE_READ_TIMEOUT_S
        ):
            return ended
        raise CallNotFound(f"no call with id {call_id!r}", details={"call_id": call_id})

    async def list_live(self) -> list[Call]:
        """Every instance's live calls (the registry), this engine's own from
        memory: the registry is written in the background, so a call just
        placed (or just ended) here may not be there yet."""
        rows = await asyncio.wait_for(self._registry.all(), STORE_READ_TIMEOUT_S)
        calls = {c.call_id: c for c in (Call.from_json(f["json"]) for f in rows if "json" in f)}
        for call_id in list(calls):
            if self._mirror.recent_ended(call_id) is not None:
                del calls[call_id]
        calls.update(self._live.calls)
        return sorted(calls.values(), key=lambda c: c.created_at)
