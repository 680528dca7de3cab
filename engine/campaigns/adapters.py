"""The runner's ports over the engine's real parts: switch channel lists and Redis leases."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

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


class CampaignLeases:
    """``LeasePort`` over :class:`Leases`, with the campaign lease's TTL and a timeout."""

    def __init__(self, leases: Leases, *, ttl_ms: int = 5000, timeout_s: float = 5.0) -> None:
        self._leases = leases
        self._ttl_ms = ttl_ms
        self._timeout_s = timeout_s

    async def acquire(self, name: str) -> int | None:
        return await asyncio.wait_for(self._leases.acquire(name, self._ttl_ms), self._timeout_s)

    async def renew(self, name: str, token: int) -> bool:
        return await asyncio.wait_for(
            self._leases.renew(name, token, self._ttl_ms), self._timeout_s
        )

    async def release(self, name: str, token: int) -> None:
        await asyncio.wait_for(self._leases.release(name, token), self._timeout_s)
