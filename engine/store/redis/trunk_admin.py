"""Which trunks an operator drained, shared by every engine of a deployment.

``POST /v1/trunks/{name}/drain`` is an operator's decision about a carrier trunk, not about
one engine: every engine that can place calls on the trunk must honour it, including one
that takes the trunk's switch over later or restarts. So the admin state lives in Redis::

    {p}trunks:drained   set of trunk names

The engine that is asked writes it and applies it at once; every engine reads the set about
once a second (``TrunkService.sync_admin``). Like the rest of the live state in Redis, it is
lost with Redis's data (docs/trunks.md "Several engines" says what that means).
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate


class TrunkAdmin:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, timeout_s: float = 2.0) -> None:
        self._r = redis
        self._key = f"{check_prefix(prefix)}trunks:drained"
        self._timeout_s = timeout_s

    async def set_drained(self, trunk: str, drained: bool) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                if drained:
                    await self._r.sadd(self._key, trunk)
                else:
                    await self._r.srem(self._key, trunk)
        except REDIS_ERRORS as err:
            what = "draining" if drained else "enabling"
            raise translate(err, f"{what} trunk {trunk} for every engine") from err

    async def drained(self) -> set[str]:
        try:
            async with asyncio.timeout(self._timeout_s):
                members = await self._r.smembers(self._key)
        except REDIS_ERRORS as err:
            raise translate(err, "reading the drained trunks") from err
        return {m if isinstance(m, str) else bytes(m).decode() for m in members}
