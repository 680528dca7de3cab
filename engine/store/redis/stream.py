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

With a :class:`~engine.store.redis.seq_floor.SeqFloor` the sequence survives
Redis losing its data: it continues upward (with a jump) instead of
restarting at 1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis

from engine.core import jsontext
from engine.store.errors import StoreUnavailable
from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate
from engine.store.redis.rounds import RedisRounds, run_script
from engine.store.redis.seq_floor import SeqFloor

# Redis stream ids are two unsigned 64-bit numbers, but the sequence goes
# through Lua (doubles) and JSON clients (often doubles too): accept no more
# than a signed 64-bit integer at the edges, and validate before Redis does.
MAX_SEQ = 2**63 - 1
_T = TypeVar("_T")

# Assign the next seqs and append a batch, atomically (a script runs without
# interleaving, so concurrent publishers on several instances cannot get the
# same or out-of-order numbers), in one round trip. A failed try leaves none
# of the batch (a connection lost before the script ran), so retrying a batch
# cannot duplicate part of it.
#
# ARGV[3] is the highest seq this engine has seen issued, ARGV[4] the durable
# floor (see seq_floor.py). A counter that is missing, or below what we have
# already seen (Redis lost its data, or came back from an old snapshot), is
# re-seeded from the floor, so the sequence never goes back. If only the
# counter was lost while the stream survived (eviction, manual DEL), we also
# continue after the stream's last id instead of failing forever with "ID
# equal or smaller than the target". The counter is set after the XADDs.
# ARGV[1] maxlen, ARGV[2] approximate trim, ARGV[5..] the payloads. Returns
# the first seq of the batch.
_PUBLISH_MANY = """
local cur = redis.call('GET', KEYS[2])
local seq = tonumber(cur or '0')
local seen = tonumber(ARGV[3])
if cur == false or seq < seen then
  local floor = tonumber(ARGV[4])
  if floor > seq then seq = floor end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local top = tonumber(string.match(last[1][1], '^(%d+)'))
  if top >= seq then seq = top end
end
local first = seq + 1
for i = 5, #ARGV do
  seq = seq + 1
  if ARGV[2] == '1' then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], seq .. '-0', 'data', ARGV[i])
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], seq .. '-0', 'data', ARGV[i])
  end
end
redis.call('SET', KEYS[2], seq)
return first
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
        floor: SeqFloor | None = None,
        command_timeout_s: float = 5.0,
        rounds: RedisRounds | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        """``approximate_trim`` uses ``MAXLEN ~`` (Redis trims whole radix-tree
        nodes, cheaper; the stream may briefly hold somewhat more than
        ``maxlen``). Set False for an exact cap.

        ``floor`` keeps the sequence going upward across Redis data loss.
        ``command_timeout_s`` bounds every command (a blocking read gets its
        block time on top). With ``rounds``, publishes share the round trips of
        the other background writers (engine/store/redis/rounds.py).

        ``wait_replicas`` > 0 (a replicated master, e.g. under Sentinel): a
        publish returns only once that many replicas acknowledged it (Redis
        ``WAIT``, sent in the same round), so the outbox acknowledges events
        a failover cannot lose. If fewer acknowledge within
        ``wait_timeout_ms``, the publish fails and the lane retries it: a
        failover that lost the batch gets it again, and a master that keeps
        it ends up with the batch twice (two sequence numbers, the outbox's
        at-least-once contract, docs/storage.md "Redis Sentinel")."""
        if maxlen < 1:
            raise ValueError(f"maxlen: expected >= 1, got {maxlen}")
        if wait_replicas < 0 or wait_timeout_ms < 1:
            raise ValueError("wait_replicas: expected >= 0, wait_timeout_ms: expected >= 1")
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        # The events of the last batch the master took but too few replicas
        # acknowledged, each with its seq, in order. Its retry checks the stream first.
        self._unconfirmed: list[tuple[str, int]] = []
        self._r = redis
        self._prefix = check_prefix(prefix)
        self.maxlen = maxlen
        self.approximate_trim = approximate_trim
        self.key = f"{prefix}{{events}}"
        self.seq_key = f"{prefix}{{events}}:seq"
        self._publish_many = redis.register_script(_PUBLISH_MANY)
        self.floor = floor
        self.command_timeout_s = command_timeout_s
        self._rounds = rounds

    async def _timed(self, call: Awaitable[_T], extra_s: float = 0.0) -> _T:
        # asyncio.timeout, not wait_for: wait_for wraps the call in a new task
        # (Python 3.11), a cost paid on every publish.
        async with asyncio.timeout(self.command_timeout_s + extra_s):
            return await call

    def observe(self, seq: int) -> None:
        """Record a seq seen issued (by us or another instance) in the durable floor."""
        if self.floor is not None:
            self.floor.observe(seq)

    async def close(self) -> None:
        """Let a pending floor write finish."""
        if self.floor is not None:
            await self.floor.flush()

    async def publish(self, event: Mapping[str, Any]) -> int:
        """Append ``event`` (JSON-serialisable mapping); return its sequence number."""
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append a batch in one atomic round trip; return their sequence numbers."""
        if not events:
            return []
        try:
            payloads = [jsontext.dumps(dict(e)) for e in events]
        except (TypeError, ValueError) as err:
            raise ValueError(f"event is not JSON-serialisable: {err}") from err
        return await self.publish_encoded(payloads)

    async def publish_encoded(self, payloads: Sequence[str]) -> list[int]:
        """:meth:`publish_many` of events already encoded as JSON objects
        (the outbox journal's own encoding: no second ``json.dumps``)."""
        if not payloads:
            return []
        payloads = list(payloads)
        seen, reseed = (self.floor.seen, self.floor.reseed) if self.floor else (0, 0)
        args: list[Any] = [self.maxlen, "1" if self.approximate_trim else "0", seen, reseed]
        keys = [self.key, self.seq_key]
        after = [("WAIT", self.wait_replicas, self.wait_timeout_ms)] if self.wait_replicas else []
        head = await self._still_on_stream(payloads) if after else []
        self._unconfirmed = head
        rest = payloads[len(head) :]
        if not rest:
            # All on the stream already: only the replicas' acknowledgement is missing.
            await self._await_replicas(len(payloads))
            self._unconfirmed = []
            self.observe(head[-1][1])
            return [seq for _, seq in head]
        try:
            if self._rounds is not None:
                # The WAIT goes in the script's round, on its connection (see _await_replicas).
                reply = await self._timed(
                    run_script(self._rounds, self._publish_many, keys, args + rest, then=after),
                    extra_s=self.wait_timeout_ms / 1000 if after else 0.0,
                )
                first, acked = (reply[0], reply[1]) if after else (reply, None)
            else:
                first = await self._timed(self._publish_many(keys=keys, args=args + rest))
        except REDIS_ERRORS as err:
            raise translate(err, f"publishing {len(rest)} events") from err
        fresh = list(zip(rest, range(int(first), int(first) + len(rest)), strict=True))
        if after:
            # On the master, maybe not (yet) on a replica: a failover now could lose it.
            # The lane retries; the retry finds the batch on the stream unless it was lost.
            # (A WAIT after the last write covers the earlier ones: replication is ordered.)
            self._unconfirmed = head + fresh
            if self._rounds is None:
                await self._await_replicas(len(payloads))
            elif not (isinstance(acked, int) and acked >= self.wait_replicas):
                raise StoreUnavailable(
                    f"published {len(rest)} events, but {acked!r} of "
                    f"{self.wait_replicas} replica(s) acknowledged them within "
                    f"{self.wait_timeout_ms} ms"
                )
            self._unconfirmed = []
        seqs = [seq for _, seq in head + fresh]
        self.observe(seqs[-1])
        return seqs

    async def leading_on_stream(self, payloads: Sequence[str], window: int) -> int:
        """How many of ``payloads``, from the first, the stream's newest ``window`` entries
        already hold (the same JSON text), in that order. For a batch an engine published
        and was killed before acknowledging: its journal replays it at the next start."""
        if not payloads:
            return 0
        try:
            entries = await self._timed(self._r.xrevrange(self.key, "+", "-", count=window))
        except REDIS_ERRORS as err:
            raise translate(err, "reading the stream's newest events") from err
        rows = cast(list[tuple[Any, dict[Any, Any]]], entries or [])
        held: list[str] = []
        for _, fields in reversed(rows):  # oldest first
            data = fields.get("data", fields.get(b"data"))
            held.append(data.decode() if isinstance(data, bytes) else str(data))
        # The batch went out in one script run: its events are consecutive on the stream
        # (other engines' events come before or after, never between).
        try:
            at = held.index(payloads[0])
        except ValueError:
            return 0
        count = 0
        for payload, data in zip(payloads, held[at:], strict=False):
            if payload != data:
                break
            count += 1
        return count

    async def _still_on_stream(self, payloads: list[str]) -> list[tuple[str, int]]:
        """The events of an unconfirmed try that start ``payloads`` and that the stream
        still holds at their seqs, in order up to the first one missing; [] when this is
        not that batch's retry."""
        unconfirmed = self._unconfirmed
        if not unconfirmed or payloads[: len(unconfirmed)] != [p for p, _ in unconfirmed]:
            return []
        try:
            entries = await self._timed(
                self._r.xrange(self.key, f"{unconfirmed[0][1]}-0", f"{unconfirmed[-1][1]}-0")
            )
        except REDIS_ERRORS as err:
            raise translate(err, "checking an unconfirmed publish") from err
        rows = cast(list[tuple[str, dict[str, str]]], entries or [])
        held = {_seq_of(entry_id): fields.get("data") for entry_id, fields in rows}
        kept: list[tuple[str, int]] = []
        for payload, seq in unconfirmed:
            if held.get(seq) != payload:
                # Lost with the old master: it and everything after go out again.
                break
            kept.append((payload, seq))
        return kept

    async def _await_replicas(self, count: int) -> None:
        # WAIT counts the replicas that have this connection's last write: a
        # connection that wrote nothing gets every replica at once. So a small
        # write goes first, on the same connection (one round, or one pipeline).
        commands: list[tuple[Any, ...]] = [
            ("SET", f"{self.key}:wait", "1"),
            ("WAIT", self.wait_replicas, self.wait_timeout_ms),
        ]
        try:
            if self._rounds is not None:
                replies = await self._timed(
                    self._rounds.execute(commands), extra_s=self.wait_timeout_ms / 1000
                )
            else:
                async with self._r.pipeline(transaction=False) as pipe:
                    for command in commands:
                        pipe.execute_command(*command)
                    replies = await self._timed(pipe.execute(), extra_s=self.wait_timeout_ms / 1000)
            acked = replies[1]
        except REDIS_ERRORS as err:
            raise translate(err, "waiting for replicas") from err
        if not (isinstance(acked, int) and acked >= self.wait_replicas):
            raise StoreUnavailable(
                f"{count} published events: {acked!r} of {self.wait_replicas} replica(s) "
                f"acknowledged them within {self.wait_timeout_ms} ms"
            )

    async def read_after(
        self, seq: int, count: int = 100, block_ms: int | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Events with sequence number > ``seq``, oldest first, at most ``count``.

        With ``block_ms`` set, waits up to that long when nothing is available
        yet (0 waits forever). Entries trimmed away are silently absent; check
        :meth:`missed_after` to tell the client.
        """
        if not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"seq: expected 0..{MAX_SEQ}, got {seq}")
        if count < 1:
            raise ValueError(f"count: expected >= 1, got {count}")
        try:
            # XREAD's id is exclusive: "<seq>-0" returns (seq+1)-0 onwards.
            reply = await self._timed(
                self._r.xread({self.key: f"{seq}-0"}, count=count, block=block_ms),
                extra_s=(block_ms or 0) / 1000,
            )
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
        """The last assigned sequence number (0 if nothing was ever published).

        Never below what this engine has seen issued: if Redis lost its data,
        the head is still where the sequence will continue from, not 0.
        """
        seen = self.floor.seen if self.floor else 0
        try:
            value = await self._timed(self._r.get(self.seq_key))
            if value is None:
                # Counter lost but stream present: same recovery as the script.
                last = await self._timed(self._r.xrevrange(self.key, count=1))
                return max(seen, _seq_of(last[0][0]) if last else 0)
        except REDIS_ERRORS as err:
            raise translate(err, "reading the last event seq") from err
        return max(seen, int(value))

    async def oldest_seq(self) -> int | None:
        """Sequence number of the oldest event still kept, or None if the stream is empty."""
        try:
            first = await self._timed(self._r.xrange(self.key, count=1))
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
                first, last_text = await self._timed(pipe.execute())
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
