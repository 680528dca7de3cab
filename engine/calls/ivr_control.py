"""The IVR's ``transfer`` and ``split`` steps, served by the calls service
(``engine.ivr.ports.CallControl``).

Transfer to a dialplan target: the channel is redirected there (AMI ``Redirect`` /
``uuid_transfer``); as with the ``queue`` step (engine/acd/ivr_entry.py), the
redirect ends the IVR session without the dialplan hanging the caller up.

Transfer to an endpoint or a number through a trunk group: the new leg is placed
first (``CallService.originate``, parked when answered) while the caller is still
in the IVR, so a target that does not answer leaves the caller in the flow (its
``on_error`` branch). Once it answers, the caller is parked and the two legs are
bridged: the same hand-off the ACD makes for an agent (docs/acd.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Protocol

from engine.calls.commands import OriginateCommand
from engine.calls.model import Call, CallState
from engine.core.errors import EngineError
from engine.ivr.ports import TransferRefused, TransferRequest
from engine.pbx.base import DialplanTarget, Park, PbxDriver, Then
from engine.telemetry.logging import get_logger

log = get_logger("engine.calls")


class Calls(Protocol):
    """What the IVR control needs of :class:`~engine.calls.service.CallService`."""

    def tracked(self) -> list[Call]: ...

    def watch(self, observer: Callable[[Call, Call], None]) -> None: ...

    def driver(self, name: str) -> PbxDriver: ...

    async def adopt_inbound(self, leg: str) -> Call | None: ...

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]: ...

    async def redirect(self, call_id: str, then: Then) -> Call: ...

    async def hangup(self, call_id: str, cause: int = 16) -> Call: ...

    async def annotate(self, call_id: str, values: Mapping[str, str]) -> Call: ...


class IvrCallControl:
    def __init__(self, calls: Calls) -> None:
        self._calls = calls
        self._waiters: dict[str, asyncio.Future[Call]] = {}
        calls.watch(self._changed)

    def _changed(self, before: Call, after: Call) -> None:
        # On the event path: only resolve a waiting transfer and return.
        fut = self._waiters.get(after.call_id)
        if fut is None or fut.done():
            return
        if after.state is CallState.ANSWERED or after.is_ended:
            fut.set_result(after)

    async def _call_of(self, leg: str) -> Call:
        found = [c for c in self._calls.tracked() if leg in (c.current_leg, c.call_id)]
        live = [c for c in found if not c.is_ended]
        if live:
            return live[0]
        adopted = await self._calls.adopt_inbound(leg)
        if adopted is None or adopted.is_ended:
            raise TransferRefused(f"channel {leg} is not live on any switch the engine controls")
        return adopted

    async def annotate(self, leg: str, values: Mapping[str, str]) -> None:
        call = await self._call_of(leg)
        try:
            await self._calls.annotate(call.call_id, values)
        except EngineError as err:
            raise TransferRefused(str(err)) from err

    async def transfer(self, request: TransferRequest) -> None:
        call = await self._call_of(request.leg)
        if call.state is not CallState.ANSWERED:
            raise TransferRefused(f"call {call.call_id} is {call.state.value}, not answered")
        if request.context:
            target = DialplanTarget(request.context, request.exten, request.priority)
            try:
                await self._calls.redirect(call.call_id, target)
            except EngineError as err:
                raise TransferRefused(f"the switch did not redirect the call: {err}") from err
            log.info("IVR call transferred", call_id=call.call_id, target=str(target))
            return
        leg = await self._place(call, request)
        try:
            await self._calls.redirect(call.call_id, Park())
            await self._calls.driver(call.switch).bridge(call.current_leg, leg.call_id)
        except EngineError as err:
            with contextlib.suppress(EngineError):
                await self._calls.hangup(leg.call_id)
            raise TransferRefused(f"could not connect the caller: {err}") from err
        log.info("IVR call transferred", call_id=call.call_id, leg=leg.call_id)

    async def _place(self, call: Call, request: TransferRequest) -> Call:
        """Ring the target; the answered leg, or TransferRefused (leg hung up)."""
        cmd = OriginateCommand(
            to=request.number or request.endpoint,
            then=Park(),
            switch=call.switch,
            endpoint=request.endpoint or None,
            trunk_group=request.trunk_group or None,
            timeout_s=request.timeout_s,
            caller_id_num=call.caller_id_num,
            variables={"ENGINE_TRANSFER_OF": call.call_id},
        )
        try:
            leg, _ = await self._calls.originate(cmd)
        except EngineError as err:
            raise TransferRefused(f"the target was not dialled: {err}") from err
        fut: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
        self._waiters[leg.call_id] = fut
        try:
            # The leg may have moved on before the waiter was registered.
            now = next((c for c in self._calls.tracked() if c.call_id == leg.call_id), leg)
            if now.state is CallState.ANSWERED or now.is_ended:
                fut.set_result(now)
            # Ring time plus slack for the switch's own originate timeout to fire.
            done = await asyncio.wait_for(fut, request.timeout_s + 5)
        except TimeoutError:
            done = leg
        finally:
            self._waiters.pop(leg.call_id, None)
        if done.state is not CallState.ANSWERED:
            with contextlib.suppress(EngineError):
                await self._calls.hangup(leg.call_id)
            raise TransferRefused(
                f"{request.number or request.endpoint} did not answer "
                f"({done.state.value}{', cause ' + str(done.cause) if done.cause else ''})"
            )
        return done
