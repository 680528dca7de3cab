"""Live engines: each announces itself with a heartbeat; one Redis sorted set holds them all.

Key (``p`` = prefix)::

    {p}cluster:members   sorted set: engine id -> the Redis server time (ms) its heartbeat expires

One script run per heartbeat: it drops members whose heartbeat expired, refreshes ours and
returns everyone still live. The expiry is stamped with the *Redis server's* clock (``TIME``),
so engines on hosts whose clocks disagree still agree on who is live. A sorted set rather than
one key per engine: reading the live set is one command, without ``SCAN``.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from engine.core.running_time import within
from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate

_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""

# Reads only (the doctor's view): members whose heartbeat has not expired.
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""

_LEAVE = "return redis.call('ZREM', KEYS[1], ARGV[1])"


class Membership:
    """Heartbeats of one engine (``me``), and the live set as Redis sees it."""

    def __init__(
        self, redis: aioredis.Redis, prefix: str, me: str, *, ttl_ms: int, timeout_s: float
    ) -> None:
        if ttl_ms < 1:
            raise ValueError(f"membership ttl_ms: expected >= 1, got {ttl_ms}")
        self._key = f"{check_prefix(prefix)}cluster:members"
        self.me = me
        self._ttl_ms = ttl_ms
        self._timeout_s = timeout_s
        self._beat = redis.register_script(_BEAT)
        self._live = redis.register_script(_LIVE)
        self._leave = redis.register_script(_LEAVE)

    async def beat(self) -> frozenset[str]:
        """Refresh our heartbeat; the live engines (us included)."""
        try:
            names = await within(
                self._beat(keys=[self._key], args=[self.me, self._ttl_ms]), self._timeout_s
            )
        except REDIS_ERRORS as err:
            raise translate(err, "sending the engine heartbeat") from err
        return frozenset(str(n) for n in names)

    async def live(self) -> frozenset[str]:
        """The live engines, read only (doctor): nothing announced, nothing pruned."""
        try:
            names = await within(self._live(keys=[self._key]), self._timeout_s)
        except REDIS_ERRORS as err:
            raise translate(err, "reading the live engines") from err
        return frozenset(str(n) for n in names)

    async def leave(self) -> None:
        """Say we are gone (a clean stop), so others need not wait for the TTL."""
        try:
            await within(self._leave(keys=[self._key], args=[self.me]), self._timeout_s)
        except REDIS_ERRORS as err:
            raise translate(err, "leaving the live engines") from err
