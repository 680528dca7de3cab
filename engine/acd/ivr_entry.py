"""The IVR's ``queue`` step, served by the ACD (``engine.ivr.queueing.QueueEntry``).

Handing a channel from an IVR session to the ACD (docs/ivr.md "queue"):

1. The data is checked first (:meth:`AcdService.check_entry`, no I/O), and the
   call must be one CallService tracks and answered: a refusal leaves the caller
   in the IVR, whose next steps run.
2. The channel is parked through the switch's control connection
   (``CallService.redirect(call, Park())``), while the IVR session is still open:
   - Asterisk: AMI ``Redirect`` to ``[engine-park]``. The redirect ends the
     ``AGI()`` application (Asterisk sends ``HANGUP`` on the FastAGI socket and
     closes it) and the channel goes on in ``[engine-park]``, never reaching the
     ``Hangup()`` that follows ``AGI()`` in ``[engine-ivr]``.
   - FreeSWITCH: ``uuid_park``. It moves the channel to CS_PARK with CF_TRANSFER,
     so when the ``socket`` application returns the dialplan does not go on to
     the ``hangup`` after it (mod_event_socket only resumes the dialplan after a
     ``resume``, which the engine never sends); closing the socket afterwards
     leaves the parked channel up.
   Only then may the session end without a hangup: had it closed first, the
   dialplan would have hung the caller up.
3. ``AcdService.enter``: hold music, then routing, like ``POST /v1/queues/{name}/calls``.
   Should that fail now (the caller hung up meanwhile), the parked call is hung
   up rather than left with no one in charge of it.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from engine.acd.service import AcdService
from engine.calls.model import Call, CallState
from engine.core.errors import EngineError
from engine.ivr.queueing import (
    QueueCatalog,
    QueueHandoffFailed,
    QueueRefused,
    QueueRequest,
    QueueTicket,
)
from engine.pbx.base import Park, Then
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")


class TrackedCalls(Protocol):
    """What the hand-off needs of the calls service (``CallService`` satisfies it)."""

    def tracked(self) -> list[Call]: ...

    async def redirect(self, call_id: str, then: Then) -> Call: ...

    async def hangup(self, call_id: str, cause: int = 16) -> Call: ...

    async def adopt_inbound(self, leg: str) -> Call | None: ...


class IvrQueueEntry:
    def __init__(self, acd: AcdService, calls: TrackedCalls) -> None:
        self._acd = acd
        self._calls = calls

    def catalog(self) -> QueueCatalog:
        return QueueCatalog(
            queues=frozenset(self._acd.queues),
            intents=dict(self._acd.intents),
            feature_sizes=self._acd.feature_sizes(),
        )

    async def _call_of(self, leg: str) -> Call:
        # The session knows its channel id; the ACD queues CallService calls.
        found = [c for c in self._calls.tracked() if leg in (c.current_leg, c.call_id)]
        live = [c for c in found if not c.is_ended]
        if live:
            return live[0]
        # A call that came in from a carrier: the engine takes charge of it now.
        adopted = await self._calls.adopt_inbound(leg)
        if adopted is None or adopted.is_ended:
            raise QueueRefused(f"channel {leg} is not live on any switch the engine controls")
        return adopted

    async def enter(self, request: QueueRequest) -> QueueTicket:
        call = await self._call_of(request.leg)
        try:
            q = self._acd.check_entry(
                queue=request.queue,
                tags=request.tags,
                intent=request.intent,
                features=request.features,
                customer=request.customer,
                priority=request.priority,
            )
        except EngineError as err:
            raise QueueRefused(str(err)) from err
        if call.state is not CallState.ANSWERED:
            raise QueueRefused(f"call {call.call_id} is {call.state.value}, not answered")
        try:
            await self._calls.redirect(call.call_id, Park())
        except EngineError as err:
            raise QueueRefused(f"the switch did not park call {call.call_id}: {err}") from err
        try:
            entry = await self._acd.enter(
                call.call_id,
                queue=q.name,
                tags=request.tags,
                intent=request.intent,
                features=request.features,
                customer=request.customer,
                priority=request.priority,
            )
        except EngineError as err:
            log.warning(
                "parked IVR call not queued; hanging up", call_id=call.call_id, error=str(err)
            )
            with contextlib.suppress(EngineError):
                await self._calls.hangup(call.call_id)
            raise QueueHandoffFailed(f"call {call.call_id} not queued: {err}") from err
        log.info(
            "IVR call queued",
            call_id=call.call_id,
            flow=request.flow,
            queue=entry.queue,
            entry_id=entry.entry_id,
        )
        return QueueTicket(call_id=call.call_id, entry_id=entry.entry_id, queue=entry.queue)
