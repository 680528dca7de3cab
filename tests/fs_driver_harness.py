"""The FreeSWITCH driver connected to the fake ESL peer, with every event it reports kept.

Shared by the unit tests that drive ``FreeSwitchDriver`` against ``FakeFreeSwitch``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from engine.pbx import base
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from tests.fakes.fake_esl import FakeFreeSwitch


class Harness:
    def __init__(self, fs: FakeFreeSwitch, driver: FreeSwitchDriver) -> None:
        self.fs = fs
        self.driver = driver
        self.events: list[base.PbxEvent] = []
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for event in self.driver.events():
            self.events.append(event)

    def of(self, call_id: str) -> list[base.PbxEvent]:
        return [e for e in self.events if e.call_id == call_id]

    async def final(self, call_id: str, timeout_s: float = 5) -> base.PbxEvent:
        return await self.wait_for(
            lambda e: e.call_id == call_id and isinstance(e, base.HungUp | base.OriginateFailed),
            timeout_s,
        )

    async def wait_for(
        self, pred: Callable[[base.PbxEvent], bool], timeout_s: float = 5
    ) -> base.PbxEvent:
        async def wait() -> base.PbxEvent:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(wait(), timeout_s)

    async def wait(self, kind: type[base.PbxEvent], call_id: str) -> base.PbxEvent:
        """The first ``kind`` event of ``call_id``; on a timeout, says which legs were seen."""
        try:
            return await self.wait_for(lambda e: isinstance(e, kind) and e.call_id == call_id)
        except TimeoutError:
            seen = sorted({e.call_id for e in self.events if e.call_id})
            raise AssertionError(f"no {kind.__name__} for {call_id}; legs seen: {seen}") from None

    async def close(self) -> None:
        self._task.cancel()
        await self.driver.stop()


@contextlib.asynccontextmanager
async def driver_on_fake(time_scale: float = 0.02) -> AsyncIterator[Harness]:
    """A started driver, its link up, against a fresh fake FreeSWITCH."""
    async with FakeFreeSwitch(time_scale=time_scale) as fs:
        driver = FreeSwitchDriver("fs1", fs.host, fs.port, fs.password, backoff_initial=0.05)
        await driver.start()
        assert await driver.wait_up() == base.LinkState.UP
        harness = Harness(fs, driver)
        try:
            yield harness
        finally:
            await harness.close()
