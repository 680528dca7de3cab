"""Live call registry: one hash per call plus a set of live call ids.

Shared by all engine instances, so any instance's API can list and read every
live call. Keys (``p`` = prefix)::

    {p}call:{call_id}   hash of str -> str; always contains "call_id"
    {p}calls            set of live call ids
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis

from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate
from engine.store.redis.rounds import Command, RedisRounds


class CallRegistry:
    def __init__(
        self, redis: aioredis.Redis, prefix: str, *, rounds: RedisRounds | None = None
    ) -> None:
        """With ``rounds``, :meth:`apply` shares the round trips of the other
        background writers (engine/store/redis/rounds.py)."""
        self._r = redis
        self._rounds = rounds
        self._prefix = check_prefix(prefix)
        self._ids_key = f"{prefix}calls"

    def _key(self, call_id: str) -> str:
        return f"{self._prefix}call:{call_id}"

    async def put(
        self, call_id: str, fields: Mapping[str, str], *, ttl_s: int | None = None
    ) -> None:
        """Merge ``fields`` into the call's hash and mark it live.

        Fields not named keep their old value (HSET semantics). ``ttl_s`` makes
        the entry expire if it is not refreshed, so a crashed instance's calls
        do not stay "live" forever.
        """
        if not call_id:
            raise ValueError("call_id must not be empty")
        mapping = dict(fields)
        for k, v in mapping.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"registry field {k!r}: keys and values must be str")
        if mapping.get("call_id", call_id) != call_id:
            raise ValueError(f"field call_id={mapping['call_id']!r} disagrees with {call_id!r}")
        mapping["call_id"] = call_id
        key = self._key(call_id)
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=cast(Mapping[Any, Any], mapping))
                if ttl_s is not None:
                    pipe.expire(key, ttl_s)
                pipe.sadd(self._ids_key, call_id)
                await pipe.execute()
        except REDIS_ERRORS as err:
            raise translate(err, f"registering call {call_id}") from err

    async def apply(
        self,
        puts: Mapping[str, Mapping[str, str]],
        removes: Sequence[str] = (),
        *,
        ttl_s: int | None = None,
        extra: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        """Write many calls and remove others in ONE round trip. ``extra``
        adds ``SET key value EX ttl`` commands (the ended calls' copies).

        Alone: one MULTI pipeline. Through rounds: the same commands in the
        round's pipeline, not a transaction. The order keeps readers right
        without one: a call's hash is written before its id joins the set,
        an ended call's copy before its hash is deleted, the hash before its
        id leaves the set (``ids``/``all`` prune an id whose hash is gone)."""
        if not puts and not removes and not extra:
            return
        commands: list[Command] = []
        for call_id, fields in puts.items():
            key = self._key(call_id)
            flat: list[str] = []
            for name, value in fields.items():
                if name != "call_id":
                    flat += (name, value)
            commands.append(("HSET", key, "call_id", call_id, *flat))
            if ttl_s is not None:
                commands.append(("EXPIRE", key, ttl_s))
        if puts:
            commands.append(("SADD", self._ids_key, *puts))
        # The ended copies before the removes: a reader finds a call that
        # just ended either live or ended, never in neither place.
        for key, value, ex in extra:
            commands.append(("SET", key, value, "EX", ex))
        for call_id in removes:
            commands.append(("DEL", self._key(call_id)))
        if removes:
            commands.append(("SREM", self._ids_key, *removes))
        doing = f"writing {len(puts)} and removing {len(removes)} calls"
        try:
            if self._rounds is not None:
                for reply in await self._rounds.execute(commands):
                    if isinstance(reply, BaseException):
                        raise reply
                return
            async with self._r.pipeline(transaction=True) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                await pipe.execute()
        except REDIS_ERRORS as err:
            raise translate(err, doing) from err

    async def get(self, call_id: str) -> dict[str, str] | None:
        try:
            data = cast(dict[str, str], await self._r.hgetall(self._key(call_id)))
        except REDIS_ERRORS as err:
            raise translate(err, f"reading call {call_id}") from err
        return data or None

    async def remove(self, call_id: str) -> None:
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(call_id))
                pipe.srem(self._ids_key, call_id)
                await pipe.execute()
        except REDIS_ERRORS as err:
            raise translate(err, f"removing call {call_id}") from err

    async def ids(self) -> list[str]:
        """Live call ids, sorted (set members whose hash expired are pruned)."""
        try:
            members = sorted(str(m) for m in await self._r.smembers(self._ids_key))
            if not members:
                return []
            async with self._r.pipeline(transaction=False) as pipe:
                for call_id in members:
                    pipe.exists(self._key(call_id))
                exists: list[int] = await pipe.execute()
            stale = [cid for cid, n in zip(members, exists, strict=True) if not n]
            if stale:
                await self._r.srem(self._ids_key, *stale)
        except REDIS_ERRORS as err:
            raise translate(err, "listing live call ids") from err
        return [cid for cid, n in zip(members, exists, strict=True) if n]

    async def all(self) -> list[dict[str, str]]:
        """Every live call's fields, sorted by call id."""
        try:
            members = sorted(str(m) for m in await self._r.smembers(self._ids_key))
            if not members:
                return []
            async with self._r.pipeline(transaction=False) as pipe:
                for call_id in members:
                    pipe.hgetall(self._key(call_id))
                rows: list[dict[str, str]] = await pipe.execute()
            # An id whose hash is gone expired (ttl_s) or lost a race with
            # remove(); drop it from the set so it stops costing a lookup.
            stale = [cid for cid, row in zip(members, rows, strict=True) if not row]
            if stale:
                await self._r.srem(self._ids_key, *stale)
        except REDIS_ERRORS as err:
            raise translate(err, "listing live calls") from err
        return [row for row in rows if row]
