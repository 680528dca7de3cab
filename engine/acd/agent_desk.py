"""Agent state changes: the pure FSM's transition applied, mirrored, stored and announced."""

from __future__ import annotations

import uuid

from engine.acd.model import view_of
from engine.acd.records import AcdRecords
from engine.acd.routing import Router
from engine.acd.state import AcdState
from engine.acd.supervision import pending_outcome
from engine.agents.fsm import AgentFsm, AgentInput, AgentTransition, Login, Logout, Pause
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
        self._records.save_agent(rec, self._s.wrapping.get(agent_id))
        if tr.before.state is AgentState.WRAP_UP and after is not AgentState.WRAP_UP:
            wrapped = self._s.wrapping.pop(agent_id, None)
            if wrapped is not None:
                self._s.wrap_up_over(wrapped, tr.time_in_previous_state_s)
                self._records.save_entry_row(wrapped)
        if tr.state_changed:
            self._records.announce(rec, tr)
        if isinstance(inp, Logout):
            self._records.session(rec.session_id, agent_id, tr.before.logged_in_at or now, now)
        self._pending(agent_id, after, now)
        return tr

    def _pending(self, agent_id: str, state: AgentState, now: float) -> None:
        """A supervisor's pause or logout that waited for the agent's call: applied in the
        same change that freed the agent, so the router never offers it a call first."""
        pending = self._s.pending.get(agent_id)
        if pending is None:
            return
        outcome = pending_outcome(state)
        if outcome == "wait":
            return
        del self._s.pending[agent_id]  # before stepping: the step below comes back here
        if outcome == "drop":
            return
        self.step(agent_id, Pause(pending.reason) if pending.action == "pause" else Logout(), now)
        self._records.supervised(
            f"force-{pending.action}",
            agent_id,
            pending.actor,
            now,
            reason=pending.reason,
            note=pending.note,
            applied=True,
            pending=False,
        )
