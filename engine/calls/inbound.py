"""Inbound channels the engine takes charge of.

A call that arrives from a carrier into the dialplan's IVR hand-off is not a
call the engine placed, so CallService does not track it: its events are
ignored as "a leg the engine does not own". When something takes charge of
such a channel (the IVR's ``queue`` step handing it to the ACD), it is
adopted here: from then on it is a live call like any other (registry, events,
sweeper, CDR at the end, adoption after a restart).

Why not track every inbound channel from its ``ChannelCreated``: on a switch
that also carries our outbound calls' far ends (the sandbox's loopback
carrier, a PBX that dials back into itself) most inbound channels belong to
someone else. Only the one being handed over is taken, after asking the
switches which of them has it (its id alone does not say).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from engine.calls.committer import StateCommitter
from engine.calls.live import LiveCalls
from engine.calls.model import Call, CallState
from engine.pbx.base import LinkState, LiveChannel, PbxDriver
from engine.telemetry.logging import get_logger

log = get_logger("engine.calls")

#: How long to wait for a switch's channel list.
LIST_TIMEOUT_S = 5.0


class InboundCalls:
    def __init__(
        self,
        live: LiveCalls,
        committer: StateCommitter,
        *,
        drivers: Mapping[str, PbxDriver],
        now: Callable[[], float],
    ) -> None:
        self._live = live
        self._commit = committer
        self._drivers = drivers
        self._now = now

    async def adopt(self, leg: str) -> Call | None:
        """The live call for channel ``leg``, adopting it if the engine does not
        track it yet; None if no switch that is up has that channel."""
        tracked = self._live.get(self._live.owner(leg))
        if tracked is not None:
            return tracked
        found = await self._find(leg)
        if found is None:
            return None
        switch, channel = found
        async with self._live.lock(leg):
            tracked = self._live.get(leg)
            if tracked is not None:  # adopted meanwhile
                return tracked
            now = self._now()
            answered = channel.state == "answered"
            call = Call(
                call_id=leg,
                switch=switch,
                state=CallState.ANSWERED if answered else CallState.RINGING,
                to="",
                then={"kind": "park"},
                created_at=now,
                direction="inbound",
                channel=channel.channel,
                ringing_at=now,
                answered_at=now if answered else None,
            )
            self._live.put(call)
            self._commit.save(call)
            self._commit.publish_state(call, None)
        log.info("inbound call adopted", call_id=leg, switch=switch, state=call.state.value)
        return call

    async def _find(self, leg: str) -> tuple[str, LiveChannel] | None:
        for name, driver in sorted(self._drivers.items()):
            if driver.state is not LinkState.UP:
                continue
            try:
                channels = await asyncio.wait_for(driver.live_calls(), LIST_TIMEOUT_S)
            except Exception as err:  # a switch that cannot answer does not have it for us
                error = f"{type(err).__name__}: {err}"
                log.warning("channel list failed", switch=name, error=error)
                continue
            for channel in channels:
                if channel.call_id == leg:
                    return name, channel
        return None
