"""Idempotency keys: the first request with a key wins, later ones learn its value."""

from __future__ import annotations

import redis.asyncio as aioredis

from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate
from engine.store.redis.scripts import DELETE_IF_EQUAL

# SET key value NX EX ttl, but return the existing value when the key is taken.
# Redis 7 can do this with SET ... NX GET; Redis 6.2 (the embedded server)
# rejects NX together with GET, so a script keeps both versions on one path.
_CLAIM = """
local existing = redis.call('GET', KEYS[1])
if existing then
  return existing
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""


class IdempotencyStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_s: int = 86400) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s: expected >= 1 second, got {ttl_s}")
        self._r = redis
        self._prefix = check_prefix(prefix)
        self.ttl_s = ttl_s
        self._claim = redis.register_script(_CLAIM)
        self._release_if = redis.register_script(DELETE_IF_EQUAL)

    def _key(self, key: str) -> str:
        return f"{self._prefix}idem:{key}"

    async def claim(self, key: str, value: str) -> str | None:
        """Claim ``key`` for ``value``. None if we got it, else the earlier claimant's value."""
        if not key:
            raise ValueError("idempotency key must not be empty")
        try:
            existing = await self._claim(keys=[self._key(key)], args=[value, self.ttl_s])
        except REDIS_ERRORS as err:
            raise translate(err, "claiming an idempotency key") from err
        return None if existing is None else str(existing)

    async def get(self, key: str) -> str | None:
        try:
            value = await self._r.get(self._key(key))
        except REDIS_ERRORS as err:
            raise translate(err, "reading an idempotency key") from err
        return None if value is None else str(value)

    async def release(self, key: str, value: str | None = None) -> bool:
        """Forget ``key`` so a retry may claim it again (e.g. the request was not carried out).

        With ``value`` given, only release if the key still holds that value.
        Returns True if a key was deleted.
        """
        try:
            if value is None:
                deleted = await self._r.delete(self._key(key))
            else:
                deleted = await self._release_if(keys=[self._key(key)], args=[value])
        except REDIS_ERRORS as err:
            raise translate(err, "releasing an idempotency key") from err
        return bool(deleted)
