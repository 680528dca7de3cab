"""The engine event stream: a Redis Stream whose entry ids are gapless sequence numbers.

Every event gets the id ``<seq>-0`` where ``seq`` is 1, 2, 3, ... across all
engine instances sharing the Redis. WebSocket clients remember the last seq
they saw and resume with ``read_after(seq)``. Keys (``p`` = prefix)::

    {p}{events}       the stream; field "data" holds the event as JSON
    {p}{events}:seq   the last assigned sequence number

The ``{events}`` hash tag puts both keys in one Redis Cluster slot, which a
script touching both requires.

History is capped at ``maxlen`` entries. A client that resumes from a seq
older than :meth:`EventStream.oldest_seq` has missed events and must be told
(:meth:`EventStream.missed_after` counts them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

import redis.asyncio as aioredis

from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate

# Assign the next seq and append, atomically (a script runs without
# interleaving, so concurrent publishers on several instances cannot get the
# same or out-of-order numbers).
#
# The counter is advanced only after XADD succeeded: a failing XADD (OOM,
# wrong type) leaves no hole. If the counter key was lost while the stream
# survived (eviction, manual DEL), we continue after the stream's last id
# instead of failing forever with "ID equal or smaller than the target".
_PUBLISH = """
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local top = tonumber(string.match(last[1][1], '^(%d+)'))
  if top >= seq then seq = top end
end
seq = seq + 1
if ARGV[3] == '1' then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'data', ARGV[1])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], seq .. '-0', 'data', ARGV[1])
end
redis.call('SET', KEYS[2], seq)
return seq
"""


def _seq_of(entry_id: object) -> int:
    # Entry ids are "<ms>-<n>"; ours are always "<seq>-0".
    ms, _, _ = str(entry_id).partition("-")
    return int(ms)


class EventStream:
    """Publish and replay engine events with monotonic, gapless sequence numbers."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        maxlen: int = 100_000,
        *,
        approximate_trim: bool = True,
    ) -> None:
        """``approximate_trim`` uses ``MAXLEN ~`` (Redis trims whole radix-tree
        nodes, cheaper; the stream may briefly hold somewhat more than
        ``maxlen``). Set False for an exact cap."""
        if maxlen < 1:
            raise ValueError(f"maxlen: expected >= 1, got {maxlen}")
        self._r = redis
        self._prefix = check_prefix(prefix)
        self.maxlen = maxlen
        self.approximate_trim = approximate_trim
        self.key = f"{prefix}{{events}}"
        self.seq_key = f"{prefix}{{events}}:seq"
        self._publish = redis.register_script(_PUBLISH)

    async def publish(self, event: Mapping[str, Any]) -> int:
        """Append ``event`` (JSON-serialisable mapping); return its sequence number."""
        try:
            payload = json.dumps(dict(event), separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"event is not JSON-serialisable: {err}") from err
        try:
            seq = await self._publish(
                keys=[self.key, self.seq_key],
                args=[payload, self.maxlen, "1" if self.approximate_trim else "0"],
            )
        except REDIS_ERRORS as err:
            raise translate(err, "publishing an event") from err
        return int(seq)

    async def read_after(
        self, seq: int, count: int = 100, block_ms: int | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Events with sequence number > ``seq``, oldest first, at most ``count``.

        With ``block_ms`` set, waits up to that long when nothing is available
        yet (0 waits forever). Entries trimmed away are silently absent; check
        :meth:`missed_after` to tell the client.
        """
        if seq < 0:
            raise ValueError(f"seq: expected >= 0, got {seq}")
        if count < 1:
            raise ValueError(f"count: expected >= 1, got {count}")
        try:
            # XREAD's id is exclusive: "<seq>-0" returns (seq+1)-0 onwards.
            reply = await self._r.xread({self.key: f"{seq}-0"}, count=count, block=block_ms)
        except REDIS_ERRORS as err:
            raise translate(err, "reading the event stream") from err
        out: list[tuple[int, dict[str, Any]]] = []
        # redis-py (legacy_responses, the default) shapes the reply as
        # [[key, [(id, {field: value}), ...]]] under RESP2 and RESP3 alike;
        # a BLOCK that times out gives an empty reply.
        streams = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or [])
        for _key, entries in streams:
            for entry_id, fields in entries:
                out.append((_seq_of(entry_id), _decode(entry_id, fields)))
        return out

    async def last_seq(self) -> int:
        """The last assigned sequence number (0 if nothing was ever published)."""
        try:
            value = await self._r.get(self.seq_key)
            if value is None:
                # Counter lost but stream present: same recovery as the script.
                last = await self._r.xrevrange(self.key, count=1)
                return _seq_of(last[0][0]) if last else 0
        except REDIS_ERRORS as err:
            raise translate(err, "reading the last event seq") from err
        return int(value)

    async def oldest_seq(self) -> int | None:
        """Sequence number of the oldest event still kept, or None if the stream is empty."""
        try:
            first = await self._r.xrange(self.key, count=1)
        except REDIS_ERRORS as err:
            raise translate(err, "reading the oldest event seq") from err
        return _seq_of(first[0][0]) if first else None

    async def missed_after(self, seq: int) -> int:
        """How many events after ``seq`` were trimmed and can no longer be replayed.

        0 means ``read_after(seq)`` will return everything the client missed.
        """
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.xrange(self.key, count=1)
                pipe.get(self.seq_key)
                first, last_text = await pipe.execute()
        except REDIS_ERRORS as err:
            raise translate(err, "checking event history") from err
        last = int(last_text) if last_text is not None else 0
        if first:
            oldest = _seq_of(first[0][0])
            return max(0, oldest - seq - 1)
        # Empty stream: everything up to last was trimmed (or never existed).
        return max(0, last - seq)


def _decode(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    raw = fields.get("data")
    if raw is None:
        return {"_undecodable": True, "_id": entry_id, "fields": dict(fields)}
    try:
        value = json.loads(raw)
    except ValueError:
        # Not ours (someone XADDed by hand); surface it rather than crash a reader.
        return {"_undecodable": True, "_id": entry_id, "raw": raw}
    if not isinstance(value, dict):
        return {"_undecodable": True, "_id": entry_id, "raw": raw}
    return value
