"""Reconcile: free what no live call backs (reservations in Redis, and entries and
agents whose legs the switches no longer list)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from engine.acd.live_store import AcdLiveStore
from engine.acd.parts import AcdParts
from engine.acd.reservations import Outcome, Reservation, stale_reservations
from engine.acd.state import AgentRecord
from engine.agents.fsm import CallEnded, OfferCancelled
from engine.agents.model import AgentState
from engine.pbx.base import LinkState
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")

# Legs younger than this are not judged from a channel list: FreeSWITCH's
# `show channels` lags its events by up to ~200 ms (measured), Asterisk's
# CoreShowChannels can miss a channel still being set up.
LIST_GRACE_S = 3.0


class Reconciler:
    def __init__(self, parts: AcdParts) -> None:
        self._s = parts.state
        self._router = parts.router
        self._desk = parts.desk
        self._life = parts.lifecycle
        self._records = parts.records
        self._actions = parts.actions
        self._decide = parts.decide

    async def reconcile_once(self, store: AcdLiveStore | None) -> int:
        """Free what no live call backs. Returns how many were freed.

        The switches' channel lists are asked for only when something could
        be freed: a channel list is one event per live channel on the AMI
        link, and asking every ``reconcile_s`` with nothing in the ACD cost
        Asterisk and the engine a share of their CPU per call
        (docs/bench-cpu.md)."""
        stored: list[Reservation] = []
        if store is not None:
            try:
                stored = await store.reservations()
            except Exception as err:
                log.warning("acd reconcile: redis reservations not read", error=str(err))
        if not stored and not self._anything_held():
            return 0
        live: set[str] = set()
        for name, driver in self._actions.drivers.items():
            if driver.state is not LinkState.UP:
                return 0  # judged only on a full view of every switch
            try:
                async with asyncio.timeout(self._s.settings.storage_timeout_s):
                    live |= {c.call_id for c in await driver.live_calls()}
            except Exception as err:
                log.warning("acd reconcile: no channel list", switch=name, error=str(err))
                return 0
        return self.reconcile(live, stored, self._s.now())

    def _anything_held(self) -> bool:
        """A live entry, a reservation or an agent on (or offered) a call:
        what :meth:`reconcile` could free."""
        if self._s.entries or self._router.reservations():
            return True
        busy = (AgentState.RESERVED, AgentState.ON_CALL)
        return any(rec.status.state in busy for rec in self._s.agents.values())

    def reconcile(self, live: set[str], stored: Iterable[Reservation], now: float) -> int:
        freed = 0
        live_entries = {
            e.entry_id
            for e in self._s.entries.values()
            if e.leg in live or now - e.entered_at < LIST_GRACE_S
        }
        held = {(r.call_id, r.agent_id) for r in self._router.reservations()}
        for r, outcome in stale_reservations(
            [*stored, *self._router.reservations()], live_entries, now
        ):
            if (r.call_id, r.agent_id) in held and r.call_id in self._s.entries:
                entry = self._s.entries[r.call_id]
                if outcome is Outcome.CANCELLED:
                    log.warning("acd reconcile: caller gone", call_id=entry.call_id)
                    self._life.caller_gone(entry, now)
                    freed += 1
                # EXPIRED ones are the tick's.
            elif (r.call_id, r.agent_id) not in held:
                # In Redis only (a crashed engine's, or a lost delete): drop it,
                # and free the agent if it still holds that offer.
                self._records.drop_reservation(r.call_id, r.agent_id)
                rec = self._s.agents.get(r.agent_id)
                if (
                    rec is not None
                    and rec.entry_id == r.call_id
                    and r.call_id not in self._s.entries
                    and rec.status.state is AgentState.RESERVED
                    and rec.status.call_id
                ):
                    self._desk.step(r.agent_id, OfferCancelled(rec.status.call_id), now)
                    freed += 1
        for entry in list(self._s.entries.values()):
            if entry.entry_id in live_entries:
                continue
            log.warning("acd reconcile: caller leg gone", call_id=entry.call_id)
            self._life.caller_gone(entry, now)
            freed += 1
        for rec in self._s.agents.values():
            freed += self._free_if_orphan(rec, live, now)
        if freed:
            self._decide()
        return freed

    def _free_if_orphan(self, rec: AgentRecord, live: set[str], now: float) -> int:
        """An agent reserved or on a call that no live entry and no live leg backs."""
        st = rec.status
        if st.state not in (AgentState.RESERVED, AgentState.ON_CALL) or not rec.confirmed:
            return 0
        entry = self._s.entries.get(rec.entry_id)
        if entry is not None and (st.state is AgentState.RESERVED or rec.leg in live):
            return 0
        if now - st.since < LIST_GRACE_S:
            return 0
        assert st.call_id is not None
        log.warning("acd: agent freed, no live call", agent_id=rec.config.id, state=st.state.value)
        if st.state is AgentState.RESERVED:
            self._desk.step(rec.config.id, OfferCancelled(st.call_id), now)
        else:
            if entry is not None:
                self._life.agent_left(entry, now)
            else:
                self._desk.step(rec.config.id, CallEnded(st.call_id), now)
        return 1
