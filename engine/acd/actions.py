"""The ACD's switch actions, run as tasks: decisions never await them.

Their failures come back as inputs (the service's ``async`` wrappers call back
into plain methods). The actions on one caller run in order (hold music,
bridge, redirect), each after the previous one: :meth:`SwitchActions.chain`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

from engine.acd.entries import Entry
from engine.calls.commands import OriginateCommand
from engine.calls.model import Call
from engine.core.errors import EngineError, PbxError
from engine.pbx.base import PbxDriver
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")


class CallPort(Protocol):
    """What the ACD needs of the calls service (``CallService`` satisfies it)."""

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]: ...

    async def get(self, call_id: str) -> Call: ...

    async def hangup(self, call_id: str, cause: int = 16) -> Call: ...


class SwitchActions:
    def __init__(self, *, calls: CallPort, drivers: Mapping[str, PbxDriver]) -> None:
        self.calls = calls
        self.drivers = dict(drivers)
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def hangup_call(self, call_id: str) -> None:
        with contextlib.suppress(EngineError):
            await self.calls.hangup(call_id)

    async def hangup_leg(self, switch: str, leg: str) -> None:
        """Hang up ``leg`` even if the calls service does not track it (yet).

        After a restart the ACD acts on a switch's channel list as soon as the
        link is up, which can be before the calls service has adopted the legs
        of that list: its hangup then refuses an unknown call, and an agent's
        phone rung before the crash would ring on (seen in a loaded full run,
        test_acd_live (f)). The switch itself can always end the channel.
        """
        try:
            await self.calls.hangup(leg)
            return
        except EngineError:
            pass
        driver = self.drivers.get(switch)
        if driver is not None:
            with contextlib.suppress(EngineError, PbxError):  # gone already, or the link is
                await driver.hangup(leg)

    async def moh(self, entry: Entry, moh_class: str) -> None:
        await self.drivers[entry.switch].moh_start(entry.leg, moh_class)

    async def bridge(self, entry: Entry, agent_leg: str) -> None:
        try:
            await self.drivers[entry.switch].bridge(entry.leg, agent_leg, keep_call=True)
        except Exception:
            # The caller left meanwhile (its HungUp ends the entry) or the switch
            # refused: the agent's phone must not stay up alone.
            await self.hangup_call(agent_leg)
            raise

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("acd switch action failed", error=repr(task.exception()))

    def chain(self, key: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` after the previous action on ``key`` (one caller's actions in order)."""
        previous = self._chains.get(key)

        async def after() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(previous)
            await coro

        task = asyncio.get_running_loop().create_task(after())
        self._chains[key] = task
        self._tasks.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            if self._chains.get(key) is t:
                del self._chains[key]
            self._done(t)

        task.add_done_callback(finished)

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait for the switch actions in flight (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
