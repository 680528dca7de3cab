"""Leases with fencing tokens: one owner per campaign/queue across engine instances.

A lease is a key holding ``"<owner> <token>"`` with a TTL. Acquiring it
takes a new fencing token from a per-lease counter, so tokens strictly
increase across owners. The holder passes its token along with every write
it makes on behalf of the lease (e.g. into a PostgreSQL row's ``fence``
column with ``WHERE fence <= $token``): if it paused past the TTL and
someone else took over, its stale writes carry a smaller token and are
rejected. That is what makes a TTL lease safe without consensus.

Keys (``p`` = prefix)::

    {p}lease:{name}        "<owner> <token>", PX ttl
    {p}lease:{name}:fence  last token handed out (never expires)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate
from engine.store.redis.scripts import DELETE_IF_EQUAL

# Acquire if free, or re-acquire if we already hold it (keeps our token).
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local owner, token = string.match(cur, '^(.*) (%d+)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return false
end
-- Free. Our previous token is reused if nobody took the lease since (the counter has not
-- moved past it): nothing was done under a newer token, so writes stamped with ours stay good.
local token
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
  token = tonumber(ARGV[3])
else
  token = redis.call('INCR', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
"""

# A store (PostgreSQL's fences) holds a larger token than this counter can hand out: Redis
# lost its data (restarted empty, or a failover to a replica that had not seen the INCR).
# Raise the counter to that floor and give up our stale hold, so the next acquire gets a
# token above everything any store has seen. Returns the counter.
_REFENCE = """
local floor = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur < floor then
  redis.call('SET', KEYS[2], floor)
  cur = floor
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return cur
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def lease_key(prefix: str, name: str) -> str:
    """The key of lease ``name`` (a store that checks a holder in a script reads it)."""
    if not name:
        raise ValueError("lease name must not be empty")
    # Hash tag: the lease and its fence counter in one cluster slot, as the script needs.
    return f"{check_prefix(prefix)}lease:{{{name}}}"


@dataclass(frozen=True)
class LeaseHolder:
    owner: str
    token: int


class Leases:
    """Acquire, renew and release named leases for one ``owner`` (an engine instance id)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, owner: str) -> None:
        if not owner or " " in owner:
            raise ValueError(f"lease owner {owner!r}: expected a non-empty id without spaces")
        self._r = redis
        self._prefix = check_prefix(prefix)
        self.owner = owner
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(DELETE_IF_EQUAL)
        self._refence = redis.register_script(_REFENCE)

    def _keys(self, name: str) -> list[str]:
        base = lease_key(self._prefix, name)
        return [base, f"{base}:fence"]

    async def acquire(self, name: str, ttl_ms: int, previous: int | None = None) -> int | None:
        """Take lease ``name`` for ``ttl_ms``; return the fencing token, or None if held.

        Calling it again while we hold the lease extends it and returns the
        same token. ``previous``: the token we last held it with; taken again with it
        when nobody else took the lease meanwhile (a lease that lapsed in a Redis blip).
        """
        if ttl_ms < 1:
            raise ValueError(f"ttl_ms: expected >= 1, got {ttl_ms}")
        again = "" if previous is None else str(previous)
        try:
            token = await self._acquire(keys=self._keys(name), args=[self.owner, ttl_ms, again])
        except REDIS_ERRORS as err:
            raise translate(err, f"acquiring lease {name}") from err
        return None if token is None else int(token)

    async def renew(self, name: str, token: int, ttl_ms: int) -> bool:
        """Extend our lease; False if we lost it (expired and/or taken by another owner)."""
        try:
            ok = await self._renew(
                keys=self._keys(name)[:1], args=[f"{self.owner} {token}", ttl_ms]
            )
        except REDIS_ERRORS as err:
            raise translate(err, f"renewing lease {name}") from err
        return bool(ok)

    async def refence(self, name: str, token: int, floor: int) -> int:
        """A store refused ``token`` because it saw ``floor``: raise the token counter to at
        least ``floor`` and drop our hold with ``token``, so the next :meth:`acquire` hands
        out a token no store refuses. Returns the counter."""
        try:
            value = await self._refence(
                keys=self._keys(name), args=[f"{self.owner} {token}", floor]
            )
        except REDIS_ERRORS as err:
            raise translate(err, f"raising the fence of lease {name}") from err
        return int(value)

    async def release(self, name: str, token: int) -> bool:
        """Give the lease up if we still hold it with ``token``."""
        try:
            ok = await self._release(keys=self._keys(name)[:1], args=[f"{self.owner} {token}"])
        except REDIS_ERRORS as err:
            raise translate(err, f"releasing lease {name}") from err
        return bool(ok)

    async def holder(self, name: str) -> LeaseHolder | None:
        try:
            value = await self._r.get(self._keys(name)[0])
        except REDIS_ERRORS as err:
            raise translate(err, f"reading lease {name}") from err
        return _parse(value)

    async def holders(self, names: Sequence[str]) -> dict[str, LeaseHolder | None]:
        """Every lease's holder in one round trip (a pipeline, not MGET: the keys' hash
        tags put them in different cluster slots)."""
        if not names:
            return {}
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(self._keys(name)[0])
                values = await pipe.execute()
        except REDIS_ERRORS as err:
            raise translate(err, f"reading {len(names)} leases") from err
        return {name: _parse(v) for name, v in zip(names, values, strict=True)}


def _parse(value: object) -> LeaseHolder | None:
    if value is None:
        return None
    owner, _, token = str(value).rpartition(" ")
    return LeaseHolder(owner, int(token))
