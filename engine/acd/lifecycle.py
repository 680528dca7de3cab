"""A caller's stay in a queue: admitted, the agent or the caller leaving, re-queued, finished."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from engine.acd.actions import SwitchActions
from engine.acd.agent_desk import AgentDesk
from engine.acd.entries import Entry, Phase
from engine.acd.model import QueueSpec, Strategy, WaitingCall
from engine.acd.offers import Offers
from engine.acd.records import AcdRecords
from engine.acd.routing import Router
from engine.acd.state import AcdState
from engine.agents.fsm import CallEnded
from engine.agents.model import AgentState


def entry_strategy(entry: Entry, queue: QueueSpec) -> Strategy:
    """The strategy that routes the entry: its own, if its queue still runs it (a restart
    with a changed config may have dropped it), else the queue's first."""
    for st in queue.strategies:
        if st.value == entry.strategy:
            return st
    return queue.strategy


def waiting_call(entry: Entry, queue: QueueSpec) -> WaitingCall:
    """The router's view of an entry (keyed by ``entry_id``)."""
    return WaitingCall(
        call_id=entry.entry_id,
        queue=entry.queue,
        entered_at=entry.entered_at,
        priority=entry.priority,
        tags=entry.tags,
        intent=entry.intent,
        features=entry.features,
        customer=entry.customer,
        missed_by=entry.excluded,
        strategy=entry_strategy(entry, queue),
    )


def overflowed_event(entry: Entry, reason: str, flow: str | None, now: float) -> dict[str, Any]:
    """``QueueCallOverflowed``: the caller left the queue other than to an agent or by
    hanging up (max wait, an overflow rule, a redirect through the API)."""
    return {
        "type": "QueueCallOverflowed",
        "ts": now,
        "call_id": entry.call_id,
        "entry_id": entry.entry_id,
        "queue": entry.queue,
        "stage": entry.stage,
        "after_s": round(now - entry.entered_at, 3),
        "actions": [],
        "exit": reason,
        "flow": flow,
    }


class EntryLifecycle:
    def __init__(
        self,
        *,
        state: AcdState,
        router: Router,
        desk: AgentDesk,
        offers: Offers,
        records: AcdRecords,
        actions: SwitchActions,
        decide: Callable[[], None],
    ) -> None:
        self._s = state
        self._router = router
        self._desk = desk
        self._offers = offers
        self._records = records
        self._actions = actions
        self._decide = decide

    def admit(self, entry: Entry) -> None:
        q = self._s.queues[entry.queue]
        self._s.entries[entry.entry_id] = entry
        self._s.by_call[entry.call_id] = entry.entry_id
        self._s.legs[entry.leg] = (entry.entry_id, None)
        self._router.add_call(waiting_call(entry, q))
        self._records.publish(
            {
                "type": "QueueCallEntered",
                "ts": entry.entered_at,
                "call_id": entry.call_id,
                "entry_id": entry.entry_id,
                "queue": entry.queue,
                "priority": entry.priority,
                "tags": list(entry.tags),
                "intent": entry.intent,
                "requeued_from": entry.requeued_from,
            }
        )
        self._records.save_entry(entry)
        # Hold music first (docs/freeswitch.md: the order the switches need):
        # the bridge later runs after it on the same chain.
        self._actions.chain(entry.leg, self._actions.moh(entry, q.moh))
        self._decide()

    def agent_left(self, entry: Entry, now: float) -> None:
        entry.phase = Phase.AGENT_LEFT
        entry.agent_left_at = now
        if entry.answered_at is not None:
            entry.talk_s = now - entry.answered_at
        self._call_ended(entry, now)
        self._records.save_entry(entry)

    def _call_ended(self, entry: Entry, now: float) -> None:
        if entry.agent_id is None:
            return
        rec = self._s.agents[entry.agent_id]
        if rec.status.state is AgentState.ON_CALL and rec.status.call_id == entry.call_id:
            self._s.wrapping[entry.agent_id] = entry
            tr = self._desk.step(entry.agent_id, CallEnded(entry.call_id), now)
            if tr.after.state is AgentState.AVAILABLE:  # no wrap-up in this queue
                self._s.wrapping.pop(entry.agent_id, None)
                self._s.wrap_up_over(entry, 0.0)
            self._decide()

    def caller_gone(self, entry: Entry, now: float) -> None:
        if entry.phase in (Phase.WAITING, Phase.RINGING):
            was = entry.phase.value
            self._leave_queue(entry, "abandoned", now)
            self._records.publish(
                {
                    "type": "QueueCallAbandoned",
                    "ts": now,
                    "call_id": entry.call_id,
                    "entry_id": entry.entry_id,
                    "queue": entry.queue,
                    "while": was,
                    "wait_s": round(now - entry.entered_at, 3),
                    "offers": entry.offers_made,
                }
            )
            self._decide()
        elif entry.phase is Phase.CONNECTED:
            if entry.answered_at is not None:
                entry.talk_s = now - entry.answered_at
            self._call_ended(entry, now)
            if entry.agent_leg is not None and entry.agent_leg in self._s.legs:
                # The switch ends the agent's leg with the bridge; this is the net.
                self._actions.spawn(self._actions.hangup_call(entry.agent_leg))
            self.finish(entry, "answered", now)
        elif entry.phase is Phase.AGENT_LEFT:
            self.finish(entry, "answered", now)

    def _leave_queue(self, entry: Entry, outcome: str, now: float) -> None:
        """A waiting or ringing caller leaves: no longer routed, its open offers withdrawn."""
        self._router.remove_call(entry.entry_id, now)
        for offer in list(entry.offers.values()):
            if offer.open:
                self._offers.withdraw(entry, offer.agent_id, now)
        self.finish(entry, outcome, now)

    def redirected(self, entry: Entry, now: float) -> None:
        """The caller's call was sent elsewhere through the API: out of the queue, never
        offered, bridged or hung up by it again (AcdService.release)."""
        if entry.phase in (Phase.WAITING, Phase.RINGING):
            self._leave_queue(entry, "redirected", now)
            # An exit, as an overflow to an IVR flow is: live views stop counting the caller.
            self._records.publish(overflowed_event(entry, "redirected", None, now))
            self._decide()
        else:
            # Talking (the agent's leg is hung up, the agent wraps up) or the agent had left.
            self.caller_gone(entry, now)

    def after_agent_left(self, entry: Entry, now: float) -> None:
        """The agent hung up first and the caller is still there (keep_call):
        what the queue's ``after_agent_hangup`` says. "hangup": the
        conversation is over, the caller's call ends too; "requeue": it waits
        again as a new entry."""
        q = self._s.queues.get(entry.queue)
        if q is not None and q.after_agent_hangup == "requeue":
            self.requeue(entry, now)
            return
        self.finish(entry, "answered", now)
        self._actions.spawn(self._actions.hangup_call(entry.call_id))

    def requeue(self, entry: Entry, now: float) -> None:
        """The agent hung up and the caller stayed (keep_call): it waits again."""
        self.finish(entry, "answered", now)
        fresh = Entry(
            entry_id=uuid.uuid4().hex,
            call_id=entry.call_id,
            leg=entry.leg,
            switch=entry.switch,
            queue=entry.queue,
            priority=entry.priority,
            entered_at=now,
            tags=entry.tags,
            intent=entry.intent,
            features=entry.features,
            customer=dict(entry.customer),
            requeued_from=entry.entry_id,
            strategy=entry.strategy,
        )
        self.admit(fresh)

    def finish(self, entry: Entry, outcome: str, now: float) -> None:
        entry.phase = Phase.ENDED
        entry.outcome = outcome
        entry.ended_at = now
        self._s.entries.pop(entry.entry_id, None)
        if self._s.by_call.get(entry.call_id) == entry.entry_id:
            del self._s.by_call[entry.call_id]
        if self._s.legs.get(entry.leg, ("", None))[0] == entry.entry_id:
            del self._s.legs[entry.leg]
        self._records.entry_ended(entry)
        self._s.entry_ended(entry)
        if entry.agent_id is not None and self._s.wrapping.get(entry.agent_id) is entry:
            # Its agent is still in wrap-up after it: the agent's record keeps the ended entry
            # (Redis drops it now), so a restart resumes the wrap-up with its call.
            self._records.save_agent(self._s.agents[entry.agent_id], entry)
        totals = self._s.totals[entry.queue]
        totals.outcomes[outcome] = totals.outcomes.get(outcome, 0) + 1
        if outcome == "answered":
            wait = entry.wait_s or 0.0
            totals.answered_wait_s += wait
            if wait <= self._s.queues[entry.queue].service_level_s:
                totals.answered_within_sl += 1
