"""Where each engine's API answers: one key per engine instance, kept alive by a heartbeat.

Several engines share one Redis. An engine that receives a command for an object another
engine owns forwards it there (engine/api/forward.py), so it must know the owner's API
address. Each engine publishes its own::

    {p}engine:{instance}:addr   "http://10.0.0.5:8080", PX ttl
    {p}engines                  set of every instance that ever published (``instances``)

and refreshes it every ``ttl / 3``. An engine that dies stops refreshing, and its key is
gone within ``ttl``: a forward to it then fails fast as "owner unreachable" (503) instead of
waiting on a dead address. At a clean stop the key is deleted at once.

The engines also share one secret, ``{p}cluster:peer-key`` (random, created by the first
engine that finds none, never expiring): the key of the seal a forwarding engine puts on a
hop (engine/auth/hop.py), so the owner can tell a request another engine already counted
against its rate limit from a client's forgery. Each engine reads it with every heartbeat;
after a Redis data loss the first engine to beat makes a new one and the others follow
within a beat (until then their seals fail and the owner counts the request: safe).

This is deliberately separate from the ownership leases (engine/store/redis/locks.py): an
address says where to reach an engine, a lease says what it owns. Reads are cached for
``cache_s`` (an address changes only when an engine restarts elsewhere), so forwarding costs
no Redis round per request.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from engine.core.running_time import within
from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate
from engine.store.redis.scripts import DELETE_IF_EQUAL
from engine.telemetry.logging import get_logger

log = get_logger("engine.store.redis.engines")

DEFAULT_TTL_MS = 5000
DEFAULT_CACHE_S = 2.0
WITHDRAW_TIMEOUT_S = 0.5

# The shared peer key: the one there, or ours if there is none (atomic: two engines starting
# together agree on one key).
_PEER_KEY = """
local key = redis.call('GET', KEYS[1])
if not key then
  redis.call('SET', KEYS[1], ARGV[1])
  key = ARGV[1]
end
return key
"""


class EngineDirectory:
    """Publish this engine's API address; look up another engine's."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        instance: str,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        cache_s: float = DEFAULT_CACHE_S,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_ms < 300:
            raise ValueError(f"ttl_ms: expected >= 300, got {ttl_ms}")
        self._r = redis
        self._prefix = check_prefix(prefix)
        self.instance = instance
        self.ttl_ms = ttl_ms
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._withdraw = redis.register_script(DELETE_IF_EQUAL)
        self._peer_key = redis.register_script(_PEER_KEY)
        self._names = f"{self._prefix}engines"
        self.peer_key: bytes | None = None  # None until read from Redis
        self.address: str | None = None
        self.withdrawn = False
        self._writing = asyncio.Lock()

    def key(self, instance: str) -> str:
        return f"{self._prefix}engine:{instance}:addr"

    async def publish(self, address: str) -> None:
        """Write (or refresh) this engine's address with the TTL (not after a withdraw)."""
        # One write at a time, and withdraw waits for the one in flight: a refresh must not
        # land after the withdraw's delete and bring the address back for a whole TTL.
        async with self._writing:
            if self.withdrawn:
                return
            self.address = address
            try:
                async with asyncio.timeout(self.timeout_s):
                    async with self._r.pipeline(transaction=False) as pipe:
                        pipe.set(self.key(self.instance), address, px=self.ttl_ms)
                        pipe.sadd(self._names, self.instance)
                        await pipe.execute()
            except REDIS_ERRORS as err:
                raise translate(err, "publishing this engine's API address") from err

    async def instances(self) -> dict[str, str]:
        """Every engine with a live address (instance -> API base address), this one
        included. Names whose address expired (engines gone for good) are dropped."""
        try:
            async with asyncio.timeout(self.timeout_s):
                names = sorted(str(n) for n in await self._r.smembers(self._names))
                if not names:
                    return {}
                async with self._r.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.get(self.key(name))
                    values = await pipe.execute()
                gone = [n for n, v in zip(names, values, strict=True) if v is None]
                if gone:
                    await self._r.srem(self._names, *gone)
        except REDIS_ERRORS as err:
            raise translate(err, "listing the engines") from err
        return {n: str(v) for n, v in zip(names, values, strict=True) if v is not None}

    async def load_peer_key(self) -> bytes:
        """Read (or create) the key engines seal hops with; kept in :attr:`peer_key`."""
        try:
            async with asyncio.timeout(self.timeout_s):
                value = await self._peer_key(
                    keys=[f"{self._prefix}cluster:peer-key"], args=[secrets.token_hex(32)]
                )
        except REDIS_ERRORS as err:
            raise translate(err, "reading the engines' shared peer key") from err
        key = value.encode() if isinstance(value, str) else bytes(value)
        if key != self.peer_key:
            if self.peer_key is not None:
                log.info("the engines' peer key changed (Redis lost it?); following it")
            self.peer_key = key
        return key

    async def run(self, address: str, stopped: Callable[[], bool]) -> None:
        """Heartbeat: refresh the address and read the peer key every ``ttl / 3`` until
        ``stopped()``.

        A failed refresh is logged and retried at the next beat: Redis away for less
        than two beats costs nothing, longer makes peers see this engine as unreachable
        (their forwards answer 503 with Retry-After), which is the truth."""
        interval = self.ttl_ms / 3000
        while not stopped() and not self.withdrawn:
            try:
                await self.publish(address)
            except Exception as err:
                log.warning("engine address not refreshed", error=str(err))
            try:
                await self.load_peer_key()
            except Exception as err:
                # The last key read stays in use; a stale one only makes owners count hops.
                log.warning("peer key not read", error=str(err))
            await asyncio.sleep(interval)

    async def withdraw(self) -> None:
        """Delete our address at a clean stop (peers stop forwarding here at once)."""
        self.withdrawn = True  # the heartbeat must not write it back
        try:
            # Short: a stop must not wait on an unreachable Redis for this (the TTL removes it).
            async with asyncio.timeout(min(self.timeout_s, WITHDRAW_TIMEOUT_S)):
                async with self._writing:
                    if self.address is None:
                        return
                    await self._withdraw(keys=[self.key(self.instance)], args=[self.address])
        except REDIS_ERRORS as err:
            # The TTL removes it anyway.
            log.warning("engine address not withdrawn", error=str(err))

    async def address_of(self, instance: str) -> str | None:
        """The API base address (``http(s)://host:port``) of ``instance``; None if it has
        none (not running, or its heartbeat stopped more than a TTL ago)."""
        if instance == self.instance and self.address is not None:
            return self.address
        now = self._clock()
        cached = self._cache.get(instance)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            # Running time (engine/core/running_time.py): a stalled loop is not a slow Redis.
            value = await within(self._r.get(self.key(instance)), self.timeout_s)
        except REDIS_ERRORS as err:
            raise translate(err, f"reading the API address of engine {instance}") from err
        address = None if value is None else str(value)
        self._cache[instance] = (address, now + self.cache_s)
        return address

    def forget(self, instance: str) -> None:
        """Drop a cached address (a forward to it just failed)."""
        self._cache.pop(instance, None)
