"""Who owns a lease, read through a short cache: the question the API asks before it
forwards a command (engine/api/forward.py).

The API asks it only for an object the local engine does not hold itself (a call not in its
live table, a campaign whose runner has no token here, an agent or queue), and then at most
once per ``cache_s`` per lease: a deployment of one engine, or a burst of commands on one
object, costs no Redis round per request. A stale answer is harmless: a forward to an engine
that lost the lease meanwhile is answered by that engine with ``owner-moved`` (503, retry),
and a forward that fails drops the cached answer (:meth:`LeaseOwners.forget`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from engine.core.running_time import within
from engine.store.redis.locks import LeaseHolder

DEFAULT_CACHE_S = 1.0


class OwnerDirectory(Protocol):
    """What forwarding needs to know about ownership."""

    instance: str

    async def owner_of(self, lease_name: str) -> str | None:
        """The engine instance holding ``lease_name``, or None when nobody does."""
        ...

    def forget(self, lease_name: str) -> None:
        """Drop what is cached about ``lease_name``."""
        ...


class HolderReader(Protocol):
    async def holder(self, name: str) -> LeaseHolder | None: ...


class LeaseOwners:
    """:class:`OwnerDirectory` over :meth:`Leases.holder`, cached for ``cache_s``.

    ``held(name)`` (optional) says whether this engine holds ``name`` itself, from its own
    memory (the lease keeper's set of held leases): then no Redis read at all."""

    def __init__(
        self,
        leases: HolderReader,
        instance: str,
        *,
        cache_s: float = DEFAULT_CACHE_S,
        timeout_s: float = 2.0,
        held: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self.instance = instance
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._held = held
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}
        # One read in flight per lease: a burst of requests on a cold entry waits for it.
        self._reading: dict[str, asyncio.Future[str | None]] = {}
        self.reads = 0  # Redis reads made (tests and the bench look at it)

    async def owner_of(self, lease_name: str) -> str | None:
        if self._held is not None and self._held(lease_name):
            return self.instance
        now = self._clock()
        cached = self._cache.get(lease_name)
        if cached is not None and cached[1] > now:
            return cached[0]
        pending = self._reading.get(lease_name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._reading[lease_name] = future
        try:
            self.reads += 1
            # Running time (engine/core/running_time.py): a stalled loop is not a slow Redis.
            holder = await within(self._leases.holder(lease_name), self.timeout_s)
            owner = None if holder is None else holder.owner
            self._cache[lease_name] = (owner, self._clock() + self.cache_s)
            future.set_result(owner)
            return owner
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as err:
            future.set_exception(err)
            # Nobody else may be waiting: mark it retrieved so asyncio does not log it.
            future.exception()
            raise
        finally:
            del self._reading[lease_name]

    def forget(self, lease_name: str) -> None:
        self._cache.pop(lease_name, None)
