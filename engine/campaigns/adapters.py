"""The runner's ports over the engine's real parts: switch channel lists and Redis leases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from engine.core.running_time import within
from engine.pbx.base import LinkState, PbxDriver
from engine.store.redis.locks import Leases

LIST_TIMEOUT_S = 5.0


class DriverChannels:
    """Every live channel on every switch, or None when one cannot answer (recovery then holds
    the contacts it cannot decide about rather than guess)."""

    def __init__(self, drivers: Mapping[str, PbxDriver], *, wait_up_s: float = 15.0) -> None:
        self._drivers = drivers
        self._wait_up_s = wait_up_s

    async def live_channels(self) -> set[str] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_up_s
        # Just after a restart the links may still be connecting: give them a moment.
        while any(d.state is not LinkState.UP for d in self._drivers.values()):
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.1)
        out: set[str] = set()
        for driver in self._drivers.values():
            try:
                channels = await asyncio.wait_for(driver.live_calls(), LIST_TIMEOUT_S)
            except Exception:
                return None
            out.update(c.call_id for c in channels)
        return out


class LeasePolicy(Protocol):
    """The cluster's spread policy for leases this runner takes itself (engine/cluster)."""

    def may_take(self, name: str, free_for_s: float = 0.0) -> bool: ...

    def should_hand_back(self, name: str) -> bool: ...


class CampaignLeases:
    """``LeasePort`` over :class:`Leases`, with the campaign lease's TTL and a timeout.

    A lease held is valid until a local deadline, ``t0 + ttl - margin``, with ``t0`` the
    monotonic time before the request that took or renewed it: a runner that cannot renew
    (Redis away) or was frozen past it stops acting, whatever Redis says later. With a
    ``policy`` (several engines), a lease is taken only where the policy wants it, and
    handed back (renewal answers False) when its preferred engine has been live long enough.
    Timeouts count running time only (engine/core/running_time.py): a stalled loop does not
    fail a renewal whose reply came meanwhile (three in a row stopped the runner); the
    deadline, anchored at ``t0``, still counts the stall.
    """

    def __init__(
        self,
        leases: Leases,
        *,
        ttl_ms: int = 5000,
        timeout_s: float = 5.0,
        margin_ms: int = 1000,
        policy: LeasePolicy | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self._ttl_ms = ttl_ms
        # With several engines, a request never outlasts a third of the lease in running
        # time (it must end well before the lease could expire; a stall adds to it, but the
        # lease's deadline counts the stall); a lone engine keeps its storage timeout.
        self._timeout_s = min(timeout_s, ttl_ms / 3000) if policy is not None else timeout_s
        self._valid_s = (ttl_ms - margin_ms) / 1000
        self._policy = policy
        self._clock = monotonic
        self._deadlines: dict[str, float] = {}
        self._declined_since: dict[str, float] = {}

    def valid(self, name: str) -> bool:
        """Whether we may still act for ``name`` (no I/O). A lone engine (no ``policy``) goes
        on through a Redis outage until Redis says the lease is lost, as it always did."""
        if self._policy is None:
            return name in self._deadlines
        return self._clock() < self._deadlines.get(name, float("-inf"))

    async def acquire(self, name: str) -> int | None:
        t0 = self._clock()
        if self._policy is not None:
            since = self._declined_since.setdefault(name, t0)
            if not self._policy.may_take(name, t0 - since):
                return None  # another live engine should run it
        token = await within(self._leases.acquire(name, self._ttl_ms), self._timeout_s)
        if token is not None:
            self._declined_since.pop(name, None)
            self._deadlines[name] = t0 + self._valid_s
        return token

    async def renew(self, name: str, token: int) -> bool:
        if self._policy is not None and self._policy.should_hand_back(name):
            self._deadlines.pop(name, None)
            return False  # the runner stops and releases it; the preferred engine takes it
        t0 = self._clock()
        ok = await within(self._leases.renew(name, token, self._ttl_ms), self._timeout_s)
        if ok:
            self._deadlines[name] = t0 + self._valid_s
        else:
            self._deadlines.pop(name, None)
        return bool(ok)

    async def release(self, name: str, token: int) -> None:
        self._deadlines.pop(name, None)
        await within(self._leases.release(name, token), self._timeout_s)

    async def refence(self, name: str, token: int, floor: int) -> None:
        self._deadlines.pop(name, None)  # the hold with ``token`` is dropped
        await asyncio.wait_for(self._leases.refence(name, token, floor), self._timeout_s)
