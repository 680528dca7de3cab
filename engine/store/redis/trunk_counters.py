"""Trunk channel and CPS counters shared through Redis, so several engines on
one carrier respect one limit (docs/trunks.md "Shared limits").

Per trunk two keys:

- ``<prefix>trunk:{<name>}:holds``: a sorted set, one member per call that
  holds a channel of the trunk, scored with the hold's expiry (Redis time).
  The engine that placed the call refreshes its holds while the call lives,
  so the holds of a crashed engine expire by themselves and a restarted one
  reads the true ``in_use``.
- ``<prefix>trunk:{<name>}:tat``: the CPS bucket in GCRA form (the same
  algorithm as :mod:`engine.trunks.limits`): the theoretical arrival time of
  the next call.

Every decision runs inside one Lua script (check and take are atomic across
engines) and uses Redis's own clock (``TIME``): the engines' clocks are not
comparable, Redis's is one clock for all of them. Scripts return times as
offsets from that clock ("the bucket is ready in 0.084 s"), which the caller
adds to its own monotonic clock.

Every call has a timeout; failures raise :class:`StoreUnavailable` /
:class:`StoreError` (the trunks service decides what a failure means).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate
from engine.store.redis.rounds import RedisRounds, run_script

# Shared by every script: Redis time in seconds, holds expired before it dropped.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local tat = redis.call('GET', KEYS[2])
local function offset(v)
  if v then return string.format('%.6f', tonumber(v) - now) end
  return ''
end
"""

# KEYS: holds, tat. ARGV: holder, max_channels, rate, burst, hold_ttl_s.
# Returns {taken (0/1), in_use, tat offset ('' when the bucket is empty)}.
# A holder already present is refreshed and counts as taken (idempotent).
_ACQUIRE = (
    _PRELUDE
    + """
local ttl = tonumber(ARGV[5])
local n = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  return {1, n, offset(tat)}
end
if n >= tonumber(ARGV[2]) then return {0, n, offset(tat)} end
local rate = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local base = now
if tat then
  local v = tonumber(tat)
  if now < v - (burst - 1) / rate then return {0, n, offset(tat)} end
  if v > now then base = v end
end
local new = base + 1 / rate
redis.call('SET', KEYS[2], string.format('%.6f', new), 'PX', math.ceil((new - now) * 1000) + 1000)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
return {1, n + 1, offset(string.format('%.6f', new))}
"""
)

# KEYS: holds, tat. ARGV: holder. Returns {in_use, tat offset}.
_RELEASE = (
    _PRELUDE
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
return {redis.call('ZCARD', KEYS[1]), offset(tat)}
"""
)

# KEYS: holds, tat. ARGV: hold_ttl_s, holder... Re-adds (not only extends)
# this engine's holds, so they come back after Redis lost its data.
_REFRESH = (
    _PRELUDE
    + """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000) end
return {redis.call('ZCARD', KEYS[1]), offset(tat)}
"""
)


@dataclass(frozen=True, slots=True)
class Counts:
    """One trunk's shared counters. ``tat_in_s``: the CPS bucket's theoretical
    arrival time as an offset from now (``None``: the bucket is untouched)."""

    in_use: int
    tat_in_s: float | None
    taken: bool = True


def _counts(reply: list[object], *, with_taken: bool) -> Counts:
    items = [x.decode() if isinstance(x, bytes) else x for x in reply]
    if with_taken:
        taken, in_use, tat = items
    else:
        taken, (in_use, tat) = 1, items
    offset = str(tat)
    return Counts(
        in_use=int(str(in_use)),
        tat_in_s=float(offset) if offset else None,
        taken=bool(int(str(taken))),
    )


class TrunkCounters:
    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        *,
        hold_ttl_s: float = 60.0,
        timeout_s: float = 1.0,
        rounds: RedisRounds | None = None,
    ) -> None:
        """With ``rounds`` (engine/store/redis/rounds.py), a take goes out at
        once carrying the other writers' queued commands along, and a
        release rides the next round."""
        if hold_ttl_s <= 0 or timeout_s <= 0:
            raise ValueError("hold_ttl_s and timeout_s: expected > 0")
        self._r = redis
        self._prefix = check_prefix(prefix)
        self.hold_ttl_s = hold_ttl_s
        self.timeout_s = timeout_s
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._refresh = redis.register_script(_REFRESH)
        self._rounds = rounds

    def keys(self, trunk: str) -> list[str]:
        # One hash tag per trunk: both keys of a script live in one cluster slot.
        base = f"{self._prefix}trunk:{{{trunk}}}"
        return [f"{base}:holds", f"{base}:tat"]

    async def acquire(
        self, trunk: str, holder: str, *, max_channels: int, rate: float, burst: int
    ) -> Counts:
        """Take a channel and a CPS token for ``holder`` if both are free."""
        args: list[str | int | float] = [holder, max_channels, repr(rate), burst, self.hold_ttl_s]
        reply = await self._run(
            self._acquire, trunk, args, f"taking a channel of {trunk!r}", urgent=True
        )
        return _counts(reply, with_taken=True)

    async def release(self, trunk: str, holder: str) -> Counts:
        reply = await self._run(
            self._release, trunk, [holder], f"releasing {trunk!r}", in_round=True
        )
        return _counts(reply, with_taken=False)

    async def refresh(self, trunk: str, holders: Iterable[str] = ()) -> Counts:
        """Extend (or re-add) ``holders`` on ``trunk``; with none, only read."""
        args: list[str | int | float] = [self.hold_ttl_s, *holders]
        reply = await self._run(self._refresh, trunk, args, f"refreshing {trunk!r}")
        return _counts(reply, with_taken=False)

    async def _run(
        self,
        script: AsyncScript,
        trunk: str,
        args: list[str | int | float],
        doing: str,
        *,
        urgent: bool = False,
        in_round: bool = False,
    ) -> list[object]:
        rounds = self._rounds if (urgent or in_round) else None
        try:
            async with asyncio.timeout(self.timeout_s):
                if rounds is not None:
                    reply = await run_script(rounds, script, self.keys(trunk), args, urgent=urgent)
                else:
                    reply = await script(keys=self.keys(trunk), args=args)
        except REDIS_ERRORS as err:
            raise translate(err, doing) from err
        if not isinstance(reply, list):
            raise translate(TypeError(f"unexpected reply {reply!r}"), doing)
        return reply
