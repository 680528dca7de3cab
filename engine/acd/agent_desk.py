"""Agent state changes: the pure FSM's transition applied, mirrored, stored and announced."""

from __future__ import annotations

import uuid

from engine.acd.model import view_of
from engine.acd.records import AcdRecords
from engine.acd.routing import Router
from engine.acd.state import AcdState
from engine.agents.fsm import AgentFsm, AgentInput, AgentTransition, Login, Logout
from engine.agents.model import AgentState
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")


class AgentDesk:
    def __init__(
        self, *, state: AcdState, fsm: AgentFsm, router: Router, records: AcdRecords
    ) -> None:
        self._s = state
        self._fsm = fsm
        self._router = router
        self._records = records

    def step(self, agent_id: str, inp: AgentInput, now: float) -> AgentTransition:
        rec = self._s.agent(agent_id)
        tr = self._fsm.step(rec.config, rec.status, inp, now)
        rec.status = tr.after
        after = tr.after.state
        if after in (AgentState.AVAILABLE, AgentState.PAUSED, AgentState.LOGGED_OUT):
            rec.leg, rec.entry_id = "", ""
        if isinstance(inp, Login):
            rec.session_id = uuid.uuid4().hex
            self._records.session(rec.session_id, agent_id, now, None)
        closed = self._router.upsert_agent(view_of(rec.config, tr.after))
        if closed:  # the service closes offers before stepping; a leftover is a bug
            log.warning("router held an offer of an agent made available", agent_id=agent_id)
        self._records.save_agent(rec)
        if tr.before.state is AgentState.WRAP_UP and after is not AgentState.WRAP_UP:
            wrapped = self._s.wrapping.pop(agent_id, None)
            if wrapped is not None:
                wrapped.wrap_up_s = tr.time_in_previous_state_s
                self._records.save_entry_row(wrapped)
        if tr.state_changed:
            self._records.announce(rec, tr)
        if isinstance(inp, Logout):
            self._records.session(rec.session_id, agent_id, tr.before.logged_in_at or now, now)
        return tr
