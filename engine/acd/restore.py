"""Restart safety: rebuild agents and entries from Redis at start, then confirm or
end each of them from its switch's channel list (the first ``Resynced``).

No agent stays reserved or on a call without a live call (docs/acd.md "Restart safety").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from engine.acd.entries import Entry, Phase
from engine.acd.kpi import KpiSums
from engine.acd.lifecycle import entry_strategy, waiting_call
from engine.acd.live_store import AcdLiveStore
from engine.acd.model import view_of
from engine.acd.parts import AcdParts
from engine.agents.fsm import CallEnded, OfferCancelled
from engine.agents.model import AgentState, AgentStatus
from engine.pbx.base import Resynced
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")

#: Reads a queue's KPI sums per bucket of end time (queue, since, until, bucket seconds,
#: service-level threshold, entry ids to leave out): ``AcdRepository.kpi_buckets``.
FinishedReader = Callable[
    [str, float, float, float, float, Sequence[str]], Awaitable[list[dict[str, Any]]]
]


class Restorer:
    def __init__(self, parts: AcdParts) -> None:
        self._s = parts.state
        self._router = parts.router
        self._desk = parts.desk
        self._life = parts.lifecycle
        self._records = parts.records
        self._actions = parts.actions
        self._decide = parts.decide

    async def restore(
        self, store: AcdLiveStore | None, *, tries: int = 1, retry_s: float = 1.0
    ) -> int:
        """Rebuild agents and entries from Redis at start (before the switches
        connect). Legs are confirmed on each switch's first ``Resynced``. The read is
        tried up to ``tries`` times, ``retry_s`` apart."""
        if store is None:
            return 0
        for attempt in range(1, tries + 1):
            try:
                snap = await store.snapshot()
                break
            except Exception as err:
                if attempt < tries:
                    log.warning(
                        "acd: live state not read from redis yet; will retry",
                        error=f"{type(err).__name__}: {err}",
                        retry_in_s=retry_s,
                    )
                    await asyncio.sleep(retry_s)
                    continue
                log.error(
                    "acd: live state not read from redis; agents start logged out",
                    error=str(err),
                )
                return 0
        else:
            return 0
        now = self._s.now()
        wraps: dict[str, dict[str, Any]] = {}
        for agent_id, stored in snap.agents.items():
            rec = self._s.agents.get(agent_id)
            if rec is None:
                continue  # no longer configured
            try:
                data = dict(stored.status)
                data["state"] = AgentState(data["state"])
                status = AgentStatus(**data)
            except (KeyError, TypeError, ValueError) as err:
                log.warning("acd: stored agent state unreadable", agent_id=agent_id, error=str(err))
                continue
            rec.status = status
            rec.session_id, rec.leg, rec.switch = stored.session_id, stored.leg, stored.switch
            if stored.queues is not None:
                # A supervisor's move survives a restart (docs/supervisor.md); queues no longer
                # configured are dropped from it.
                roster = frozenset(q for q in stored.queues if q in self._s.queues)
                rec.config = replace(rec.config, queues=roster)
            rec.confirmed = status.state not in (AgentState.RESERVED, AgentState.ON_CALL)
            if status.state is AgentState.WRAP_UP and stored.wrapping is not None:
                wraps[agent_id] = stored.wrapping
            else:
                # A link left from before would credit this agent's next wrap-up to it.
                self._s.wrapping.pop(agent_id, None)
            self._router.upsert_agent(view_of(rec.config, status))
        for data in snap.entries:
            try:
                entry = Entry.from_live(data)
            except (KeyError, TypeError, ValueError) as err:
                log.warning("acd: stored queue entry unreadable", error=str(err))
                continue
            if entry.queue not in self._s.queues or entry.switch not in self._actions.drivers:
                continue
            self._s.entries[entry.entry_id] = entry
            self._s.by_call[entry.call_id] = entry.entry_id
            self._s.legs[entry.leg] = (entry.entry_id, None)
        for rec in self._s.agents.values():
            if rec.status.state in (AgentState.RESERVED, AgentState.ON_CALL):
                rec.entry_id = next(
                    (
                        e.entry_id
                        for e in self._s.entries.values()
                        if e.call_id == rec.status.call_id
                    ),
                    "",
                )
        for agent_id, data in wraps.items():
            self._resume_wrap_up(agent_id, data)
        log.info("acd restored", agents=len(snap.agents), entries=len(self._s.entries), at=now)
        return len(snap.agents) + len(snap.entries)

    def _resume_wrap_up(self, agent_id: str, data: dict[str, Any]) -> None:
        """Link an agent restored in wrap-up to the entry of that wrap-up (its record keeps
        it, ``StoredAgent.wrapping``): when the wrap-up ends, the call's handle time reaches
        AHT and its row gets its wrap-up (``AcdState.wrap_up_over``). The wrap-up's end
        itself is the agent's stored ``wrap_up_until``: the timers end it then."""
        s = self._s
        entry_id = str(data.get("entry_id", ""))
        current = s.wrapping.get(agent_id)
        if current is not None and current.entry_id == entry_id:
            return  # ours already (a takeover's restore): rebuilt, it would count twice
        live = s.entries.get(entry_id)
        if live is not None:  # still live (the agent left, the caller had not): restored above
            s.wrapping[agent_id] = live
            return
        try:
            entry = Entry.from_live(data)
        except (KeyError, TypeError, ValueError) as err:
            log.warning("acd: stored wrap-up entry unreadable", agent_id=agent_id, error=str(err))
            return
        if (
            entry.phase is not Phase.ENDED
            or entry.ended_at is None
            or entry.queue not in s.queues
            or entry.call_id != s.agents[agent_id].status.call_id
        ):
            # Not ended and not restored (its switch is gone): its end is not known here.
            s.wrapping.pop(agent_id, None)
            return
        s.wrapping[agent_id] = entry
        s.restored_ended.add(entry.entry_id)

    async def restore_finished(self, read: FinishedReader) -> int:
        """The live KPIs' window (the last ``kpi_window_s``) read back from PostgreSQL at
        start, as sums per bucket: without it a restart showed every queue's service level,
        ASA, AHT and abandon rate as if the day began at the restart. Entries that ended here
        meanwhile, or are live again (restored), are left out: they count once. Returns how
        many entries were read back."""
        s = self._s
        if s.kpi_restored:
            return 0  # read back already: reading again would count the window twice
        s.kpi_restored = True
        return await self.read_windows(read, "the queue's KPIs start empty")

    async def read_windows(self, read: FinishedReader, unread: str) -> int:
        """Each queue's KPI window brought up to date from PostgreSQL: what ended since the
        queue's last read (the whole window at the first), leaving out the entries counted
        here since (``AcdState.ended_here``) and those live here (they count when they end).
        At start, and at a takeover: another engine ended the queue's entries meanwhile. A
        queue whose read fails keeps what it has (``unread`` says what that means) and is
        read from the same point next time. Returns how many entries were read back."""
        s = self._s
        count = 0
        for name, window in s.kpi.items():
            # Up to now only: what ends here while the read is out (time never goes back,
            # AcdState.now) is counted here already; what ended here before, by its id.
            now = s.now()
            since = window.since(now)
            last = s.kpi_read_until.get(name)
            if last is not None:
                since = max(since, last)
            ended = s.ended_here[name]
            exclude = sorted(
                {e.entry_id for e in s.entries.values() if e.queue == name}
                | {i for i, at in ended.items() if at >= since}
            )
            try:
                rows = await read(
                    name, since, now, window.bucket_s, s.queues[name].service_level_s, exclude
                )
            except Exception as err:
                log.error(
                    f"acd: finished entries not read back; {unread}", queue=name, error=str(err)
                )
                continue
            for r in rows:
                sums = KpiSums(
                    answered=int(r["answered"]),
                    answered_in_sl=int(r["answered_in_sl"]),
                    answered_wait_s=float(r["answered_wait_s"]),
                    abandoned=int(r["abandoned"]),
                    handled=int(r["handled"]),
                    handle_s=float(r["handle_s"]),
                )
                window.add(int(r["bucket"]), sums)
                count += sums.answered + sums.abandoned
            s.kpi_read_until[name] = now
            # Kept: those ended at or after ``now`` (while the read was out), for the next one.
            for i in [i for i, at in ended.items() if at < now]:
                del ended[i]
        if count:
            log.info("acd finished entries restored", entries=count)
        return count

    def resynced(self, event: Resynced) -> None:
        """A switch's channel list after (re)connect: confirm or end what was restored."""
        now = self._s.now()
        live = {c.call_id for c in event.live}
        answered = {c.call_id for c in event.live if c.state == "answered"}
        for entry_id, agent_id in self._s.unreached.pop(event.switch, set()):
            # Offers the link was away for: those agents may be offered the caller again.
            self._router.forgive(entry_id, agent_id)
        for entry in list(self._s.entries.values()):
            if entry.switch != event.switch or entry.confirmed:
                continue
            entry.confirmed = True
            if entry.leg not in live:
                outcome = "answered" if entry.answered_at is not None else "abandoned"
                for offer in entry.offers.values():
                    if offer.leg in live:
                        self._actions.spawn(self._actions.hangup_leg(entry.switch, offer.leg))
                self._release_restored_agents(entry, now)
                self._life.finish(entry, outcome, now)
                continue
            if entry.phase in (Phase.WAITING, Phase.RINGING):
                # Offers in flight at the crash are withdrawn; the caller keeps its place.
                for offer in entry.offers.values():
                    if offer.leg is not None and offer.leg in live:
                        self._actions.spawn(self._actions.hangup_leg(entry.switch, offer.leg))
                self._release_restored_agents(entry, now)
                entry.offers.clear()
                entry.phase = Phase.WAITING
                self._s.entries.pop(entry.entry_id)
                self._admit_restored(entry)
            elif entry.phase is Phase.CONNECTED:
                agent = self._s.agents.get(entry.agent_id or "")
                if agent is not None and entry.agent_leg in answered:
                    agent.confirmed = True
                    agent.leg = entry.agent_leg
                    self._s.legs[entry.agent_leg] = (entry.entry_id, entry.agent_id)
                else:
                    if agent is not None:
                        agent.confirmed = True
                    self._life.agent_left(entry, now)
            elif entry.phase is Phase.AGENT_LEFT:
                self._life.after_agent_left(entry, now)
        for rec in self._s.agents.values():
            if rec.confirmed or (rec.switch and rec.switch != event.switch):
                continue
            rec.confirmed = True
            st = rec.status
            if st.state in (AgentState.RESERVED, AgentState.ON_CALL) and (
                rec.entry_id not in self._s.entries or rec.leg not in live
            ):
                log.warning("acd: agent freed after restart", agent_id=rec.config.id)
                assert st.call_id is not None
                if st.state is AgentState.RESERVED:
                    self._desk.step(rec.config.id, OfferCancelled(st.call_id), now)
                else:
                    self._desk.step(rec.config.id, CallEnded(st.call_id), now)
        self._decide()

    def _release_restored_agents(self, entry: Entry, now: float) -> None:
        for rec in self._s.agents.values():
            if rec.entry_id != entry.entry_id:
                continue
            rec.confirmed = True
            st = rec.status
            if st.call_id is None:
                continue
            if st.state is AgentState.RESERVED:
                self._desk.step(rec.config.id, OfferCancelled(st.call_id), now)
            elif st.state is AgentState.ON_CALL:
                self._desk.step(rec.config.id, CallEnded(st.call_id), now)

    def _admit_restored(self, entry: Entry) -> None:
        entry.confirmed = True
        q = self._s.queues[entry.queue]
        # Recorded as what routes it from now on (the A/B report groups by it).
        entry.strategy = entry_strategy(entry, q).value
        self._s.entries[entry.entry_id] = entry
        self._router.add_call(waiting_call(entry, q))
        self._records.save_entry(entry)
        self._actions.chain(entry.leg, self._actions.moh(entry, q.moh))
