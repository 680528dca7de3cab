"""The offer/bridge flow: ring an agent, and what its answer, miss or withdrawal does.

An offer reserves the agent (the FSM's ``reserved``), places the agent's leg
through ``CallService.originate`` (parked on answer) and, on answer, bridges it
to the caller with ``keep_call`` (the caller stays up if the agent leaves).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.acd.actions import SwitchActions
from engine.acd.agent_desk import AgentDesk
from engine.acd.endpoints import call_variables, dialable
from engine.acd.entries import Entry, OfferLeg, Phase
from engine.acd.model import view_of
from engine.acd.records import AcdRecords
from engine.acd.reservations import Outcome, Reservation
from engine.acd.routing import Router
from engine.acd.state import AcdState
from engine.agents.fsm import (
    Offer,
    OfferAnswered,
    OfferCancelled,
    OfferMissed,
    OfferUnreachable,
)
from engine.agents.model import AgentState
from engine.calls.commands import OriginateCommand
from engine.calls.errors import SwitchActionFailed, SwitchUnavailable
from engine.core.errors import PbxUnavailable
from engine.pbx.base import HungUp, OriginateFailed, Park, PbxEvent
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")

#: Q.850 causes of an agent leg that say its phone could not be reached at all (it never
#: rang), as opposed to a phone that rang and was not answered (19), was busy (17) or
#: refused (21): 3 NO_ROUTE_DESTINATION, 20 SUBSCRIBER_ABSENT (FreeSWITCH's
#: USER_NOT_REGISTERED for a user/ endpoint with no registration), 27
#: DESTINATION_OUT_OF_ORDER, 38 NETWORK_OUT_OF_ORDER (the Asterisk driver's translation of
#: OriginateResponse Reason 0: a PJSIP endpoint without a reachable contact, or none at all).
UNREACHABLE_CAUSES = frozenset({3, 20, 27, 38})
#: Causes a phone that was reached gives (busy, no user response, no answer, rejected).
_REACHED_CAUSES = frozenset({17, 18, 19, 21})


def phone_unreachable(event: HungUp | OriginateFailed) -> bool:
    """Whether an agent leg's end says the phone could not be reached (not a missed ring).

    ``OriginateFailed`` means no channel was ever created (both drivers emit it only then:
    the switch could not even place the leg, e.g. no contact for the endpoint), so it is
    unreachable unless its cause is one only a reached phone gives. A ``HungUp`` leg existed;
    only the causes above say the phone itself was not there."""
    if isinstance(event, OriginateFailed):
        return event.cause not in _REACHED_CAUSES
    return event.cause in UNREACHABLE_CAUSES


class Offers:
    def __init__(
        self,
        *,
        state: AcdState,
        router: Router,
        desk: AgentDesk,
        records: AcdRecords,
        actions: SwitchActions,
        decide: Callable[[], None],
        replay: Callable[[PbxEvent], None],
    ) -> None:
        self._s = state
        self._router = router
        self._desk = desk
        self._records = records
        self._actions = actions
        self._decide = decide  # route again (the dispatcher)
        self._replay = replay  # an event stashed before its leg was known (the follower)

    def offer(self, entry: Entry, agent_id: str, expires_at: float, now: float) -> None:
        rec = self._s.agents[agent_id]
        q = self._s.queues[entry.queue]
        kind = self._s.kinds.get(entry.switch, "")
        endpoint = dialable(rec.config, entry.switch, kind)
        if endpoint is None:
            # The agent has no phone on the caller's switch: never offered this
            # caller again (the router's "missed" set); not the agent's fault.
            self._router.offer_missed(entry.entry_id, agent_id, now)
            self._router.upsert_agent(view_of(rec.config, rec.status))
            if not entry.open_offers():
                entry.phase = Phase.WAITING
            self._s.retry = True
            return
        self._desk.step(agent_id, Offer(entry.call_id, entry.queue, q.wrap_up_s, expires_at), now)
        rec.entry_id, rec.switch = entry.entry_id, entry.switch
        offer = OfferLeg(agent_id, now)
        entry.offers[agent_id] = offer
        entry.phase = Phase.RINGING
        entry.offers_made += 1
        if entry.first_offer_at is None:
            entry.first_offer_at = now
        self._records.reservation(
            Reservation(entry.entry_id, agent_id, entry.queue, now, expires_at)
        )
        self._records.publish(
            {
                "type": "QueueCallOffered",
                "ts": now,
                "call_id": entry.call_id,
                "entry_id": entry.entry_id,
                "queue": entry.queue,
                "agent_id": agent_id,
                "priority": entry.priority,
                "tags": list(entry.tags),
                "intent": entry.intent,
                "customer": dict(entry.customer),
                "wait_s": round(now - entry.entered_at, 3),
            }
        )
        self._records.save_entry(entry)
        cmd = OriginateCommand(
            to=endpoint,
            then=Park(),
            switch=entry.switch,
            endpoint=endpoint,
            timeout_s=q.ring_timeout_s,
            variables=call_variables(
                call_id=entry.call_id,
                entry_id=entry.entry_id,
                queue=entry.queue,
                priority=entry.priority,
                tags=entry.tags,
                intent=entry.intent,
                customer=entry.customer,
            ),
        )
        self._s.originating += 1
        self._actions.spawn(self._ring(entry, offer, cmd))

    async def _ring(self, entry: Entry, offer: OfferLeg, cmd: OriginateCommand) -> None:
        try:
            call, _ = await self._actions.calls.originate(cmd)
        except Exception as err:
            self._s.originating -= 1
            log.warning(
                "agent not rung", agent_id=offer.agent_id, call_id=entry.call_id, error=str(err)
            )
            if isinstance(err, PbxUnavailable | SwitchUnavailable):
                # The link was away: the agent was never rung. Kept out of this caller's
                # offers only until the switch is back (no retry loop meanwhile).
                self._s.unreached.setdefault(entry.switch, set()).add(
                    (entry.entry_id, offer.agent_id)
                )
            elif isinstance(err, SwitchActionFailed) and offer.open:
                # The switch was reached and refused to dial this agent's endpoint: the
                # phone cannot be rung, the same as an originate that fails at once.
                self.missed(entry, offer, self._s.now(), expired=False, unreachable=True)
                return
            self._offer_failed(entry, offer)
            return
        self._s.originating -= 1
        self._leg_placed(entry, offer, call.call_id)

    def _leg_placed(self, entry: Entry, offer: OfferLeg, leg: str) -> None:
        offer.leg = leg
        self._s.legs[leg] = (entry.entry_id, offer.agent_id)
        if offer.open:
            rec = self._s.agents[offer.agent_id]
            rec.leg = leg
            self._records.save_agent(rec, self._s.wrapping.get(offer.agent_id))
            self._records.save_entry(entry)
        else:
            # Withdrawn while the originate was in flight (caller gone, another
            # agent answered a ring-all): the phone must stop ringing.
            self._actions.spawn(self._actions.hangup_call(leg))
        for event in self._s.stash.pop(leg, []):
            self._replay(event)
        if self._s.originating == 0:
            self._s.stash.clear()

    def _offer_failed(self, entry: Entry, offer: OfferLeg) -> None:
        if not offer.open:
            return
        now = self._s.now()
        offer.open = False
        self._router.offer_missed(entry.entry_id, offer.agent_id, now)
        self._records.drop_reservation(entry.entry_id, offer.agent_id)
        rec = self._s.agents[offer.agent_id]
        if rec.status.state is AgentState.RESERVED and rec.status.call_id == entry.call_id:
            # The link was away or the engine refused (draining, outbox, ownership): not the
            # agent's fault (not counted, keeps its idle place).
            self._desk.step(offer.agent_id, OfferCancelled(entry.call_id), now)
        self.back_to_waiting(entry)
        self._decide()

    def back_to_waiting(self, entry: Entry) -> None:
        if entry.phase is Phase.RINGING and not entry.open_offers():
            entry.phase = Phase.WAITING
            self._records.save_entry(entry)

    def answered(self, entry: Entry, offer: OfferLeg, leg: str, now: float) -> None:
        closed = self._router.offer_answered(entry.entry_id, offer.agent_id, now)
        offer.open = False
        offer.leg = leg
        self._records.drop_reservation(entry.entry_id, offer.agent_id)
        for c in closed:
            if c.outcome is Outcome.CANCELLED:
                self.withdraw(entry, c.reservation.agent_id, now)
        rec = self._s.agents[offer.agent_id]
        rec.leg = leg
        self._desk.step(offer.agent_id, OfferAnswered(entry.call_id), now)
        entry.phase = Phase.CONNECTED
        entry.agent_id, entry.agent_leg = offer.agent_id, leg
        entry.answered_at = now
        entry.outcome = "connected"
        self._records.publish(
            {
                "type": "QueueCallConnected",
                "ts": now,
                "call_id": entry.call_id,
                "entry_id": entry.entry_id,
                "queue": entry.queue,
                "agent_id": offer.agent_id,
                "agent_call_id": leg,
                "wait_s": round(now - entry.entered_at, 3),
            }
        )
        self._records.save_entry(entry)
        self._actions.chain(entry.leg, self._actions.bridge(entry, leg))
        self._decide()  # agents freed from a ring-all take the next callers

    def withdraw(self, entry: Entry, agent_id: str, now: float) -> None:
        """The engine takes an offer back (caller gone, another agent answered)."""
        offer = entry.offers.get(agent_id)
        if offer is None:
            return
        offer.open = False
        self._records.drop_reservation(entry.entry_id, agent_id)
        if offer.leg is not None:
            self._actions.spawn(self._actions.hangup_call(offer.leg))
        rec = self._s.agents[agent_id]
        if rec.status.state is AgentState.RESERVED and rec.status.call_id == entry.call_id:
            self._desk.step(agent_id, OfferCancelled(entry.call_id), now)

    def missed(
        self,
        entry: Entry,
        offer: OfferLeg,
        now: float,
        *,
        expired: bool,
        unreachable: bool = False,
    ) -> None:
        """The agent did not take the offer: no answer, busy, rejected, or (``unreachable``)
        its phone could not be reached at all. Either counts toward ``max_no_answer``."""
        offer.open = False
        if expired:
            self._router.expire(entry.entry_id, offer.agent_id, now)
            if offer.leg is not None:
                self._actions.spawn(self._actions.hangup_call(offer.leg))
        else:
            self._router.offer_missed(entry.entry_id, offer.agent_id, now)
        self._records.drop_reservation(entry.entry_id, offer.agent_id)
        entry.missed += 1
        rec = self._s.agents[offer.agent_id]
        if rec.status.state is AgentState.RESERVED and rec.status.call_id == entry.call_id:
            failed = OfferUnreachable if unreachable else OfferMissed
            self._desk.step(offer.agent_id, failed(entry.call_id), now)
        self.back_to_waiting(entry)
        self._decide()
