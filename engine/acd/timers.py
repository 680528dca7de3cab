"""The ACD's timer loop: reservations past expiry, due wrap-ups, re-queues, timed overflow."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from engine.acd.entries import Phase
from engine.acd.parts import AcdParts
from engine.agents.fsm import WrapUpElapsed
from engine.agents.model import AgentState
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")

# After the agent hangs up, the caller is re-queued unless its own hangup
# arrives within this time. The two legs' ends are separate events in no fixed
# order (FreeSWITCH: the agent's HANGUP comes before the caller's UNBRIDGE
# whichever leg left first), so only a short wait tells "the agent left" from
# "the caller left and the switch ended the agent's leg".
REQUEUE_SETTLE_S = 0.5


class Timers:
    def __init__(self, parts: AcdParts) -> None:
        self._s = parts.state
        self._router = parts.router
        self._desk = parts.desk
        self._offers = parts.offers
        self._life = parts.lifecycle
        self._actions = parts.actions
        self._decide = parts.decide

    def tick(self) -> None:
        """Reservations past expiry, due wrap-ups, re-queues, timed overflow."""
        if not self._s.entries and not self._s.agents:
            return  # nothing can be due (an engine without an ACD ticks for nothing)
        now = self._s.now()
        for r in self._router.expired_reservations(now):
            entry = self._s.entries.get(r.call_id)
            offer = entry.offers.get(r.agent_id) if entry is not None else None
            if entry is None or offer is None or not offer.open:
                self._router.expire(r.call_id, r.agent_id, now)
                continue
            log.warning("offer expired", agent_id=r.agent_id, call_id=entry.call_id)
            self._offers.missed(entry, offer, now, expired=True)
        for rec in self._s.agents.values():
            st = rec.status
            if (
                st.state is AgentState.WRAP_UP
                and st.wrap_up_until is not None
                and now >= st.wrap_up_until
            ):
                self._desk.step(rec.config.id, WrapUpElapsed(), now)
        for entry in list(self._s.entries.values()):
            if (
                entry.phase is Phase.AGENT_LEFT
                and entry.agent_left_at is not None
                and now - entry.agent_left_at >= REQUEUE_SETTLE_S
            ):
                self._life.after_agent_left(entry, now)
        self._decide()

    async def run(self, reconcile: Callable[[], Coroutine[Any, Any, int]]) -> None:
        """The timer loop, starting ``reconcile`` every ``reconcile_s``, until closed.

        It ticks every ``tick_s`` while the ACD holds an agent or an entry. While it holds
        neither, a tick has nothing to do (see ``tick``), so the loop sleeps until one is
        added (``AcdState.held``, set by the agents' and entries' dicts on any insertion),
        the close, or the next reconcile, whichever comes first: an engine without an ACD
        no longer wakes 20 times a second for nothing (docs/bench-cpu.md, seventh
        round). The reconcile cadence is the same either way."""
        loop = asyncio.get_running_loop()
        s = self._s
        next_reconcile = loop.time() + s.settings.reconcile_s
        while not s.closed:
            try:
                self.tick()
            except Exception:
                log.exception("acd tick failed")
            if loop.time() >= next_reconcile:
                next_reconcile = loop.time() + s.settings.reconcile_s
                self._actions.spawn(reconcile())
            if s.entries or s.agents:
                await asyncio.sleep(s.settings.tick_s)
                continue
            s.held.clear()  # nothing is held now, and nothing can be added until we await
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_reconcile):
                    await s.held.wait()
