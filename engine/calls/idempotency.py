"""``Idempotency-Key`` on originates: one call per key, whoever asks twice.

The call record is written to the registry *before* the key is claimed
(Redis ``SET NX``), so a concurrent request that finds the key taken can
always read the call the key points to. The same key with a different body
is refused (409 ``idempotency-key-reused``).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.calls.errors import IdempotencyKeyReused
from engine.calls.lookup import CallLookup
from engine.calls.mirror import RegistryMirror
from engine.calls.model import Call
from engine.store.redis.idempotency import IdempotencyStore


class OriginateKeys:
    def __init__(
        self, idempotency: IdempotencyStore, mirror: RegistryMirror, lookup: CallLookup
    ) -> None:
        self._idem = idempotency
        self._mirror = mirror
        self._lookup = lookup

    async def claim(
        self,
        key: str,
        call: Call,
        fingerprint: str,
        on_taken: Callable[[], None] | None = None,
    ) -> Call | None:
        """Claim ``key`` for ``call`` (not yet placed). Returns None when the
        key is now this call's, or the call an earlier request with the same
        key placed (``call`` is then dropped, and ``on_taken`` gives back what
        was reserved for it)."""
        await self._mirror.write_now(call)
        previous = await self._idem.claim(key, f"{call.call_id} {fingerprint}")
        if previous is None:
            return None
        await self._mirror.remove_now(call.call_id)
        if on_taken is not None:
            on_taken()
        prev_id, _, prev_fp = previous.partition(" ")
        if prev_fp != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different request",
                details={"idempotency_key": key, "call_id": prev_id},
            )
        return await self._lookup.get(prev_id)

    async def release(self, key: str) -> None:
        """Nothing reached the switch: a retry with the same key may place the call."""
        await self._idem.release(key)
