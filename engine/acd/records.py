"""Where the ACD writes: live state to Redis (through the mirror), history to
PostgreSQL (the ``acd`` outbox lane), events to the events lane.

None of these block a change: each is a ``put`` onto a background writer.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any, Protocol

from engine.acd.entries import Entry, Phase
from engine.acd.history import AcdHistory
from engine.acd.live_store import StoredAgent
from engine.acd.reservations import Reservation
from engine.acd.state import AgentRecord
from engine.agents.fsm import AgentTransition
from engine.agents.model import AgentState


class Publish(Protocol):
    def put(self, payload: dict[str, Any]) -> None: ...


class LiveSink(Protocol):
    """Where live state goes (``LiveMirror``: Redis in the background)."""

    def put(self, kind: str, ident: str, value: Any) -> None: ...


class AcdRecords:
    def __init__(self, *, events: Publish, history: AcdHistory, mirror: LiveSink) -> None:
        self._events = events
        self._history = history
        self._mirror = mirror

    def publish(self, data: dict[str, Any]) -> None:
        self._events.put(data)

    def session(self, session_id: str, agent_id: str, start: float, end: float | None) -> None:
        self._history.session(session_id, agent_id, start, end)

    def announce(self, rec: AgentRecord, tr: AgentTransition) -> None:
        st = tr.after
        row = {
            "change_id": uuid.uuid4().hex,
            "agent_id": st.agent_id,
            "session_id": rec.session_id,
            "at": tr.at,
            "state": st.state.value,
            "previous": tr.before.state.value,
            "pause_reason": st.pause_reason,
            "call_id": st.call_id or tr.before.call_id,
            "queue": st.queue or tr.before.queue,
            "time_in_previous_s": round(tr.time_in_previous_state_s, 6),
        }
        self._history.state(row)
        self.publish(
            {
                "type": "AgentStateChanged",
                "ts": tr.at,
                "agent_id": st.agent_id,
                "state": st.state.value,
                "previous": tr.before.state.value,
                "pause_reason": st.pause_reason,
                "call_id": row["call_id"],
                "queue": row["queue"],
                "wrap_up_until": st.wrap_up_until,
                "time_in_previous_s": row["time_in_previous_s"],
            }
        )

    def supervised(self, action: str, agent_id: str, actor: str, at: float, **fields: Any) -> None:
        """``AgentSupervised``: a supervisor's force-pause, force-logout or queue move (and a
        waiting pause or logout when it is applied)."""
        self.publish(
            {
                "type": "AgentSupervised",
                "ts": at,
                "action": action,
                "agent_id": agent_id,
                "actor": actor,
                **fields,
            }
        )

    def save_agent(self, rec: AgentRecord, wrapping: Entry | None = None) -> None:
        """The agent's live state into Redis; ``wrapping``: the entry it is in wrap-up after
        (kept with it while it is in wrap-up, so a restart resumes that wrap-up with its call)."""
        status = asdict(rec.status)
        status["state"] = rec.status.state.value
        self._mirror.put(
            "agent",
            rec.config.id,
            StoredAgent(
                rec.config.id,
                status,
                rec.session_id,
                rec.leg,
                rec.switch,
                sorted(rec.config.queues) if rec.config.queues is not None else None,
                wrapping.to_live()
                if wrapping is not None and rec.status.state is AgentState.WRAP_UP
                else None,
            ),
        )

    def membership(self, agent_id: str, queues: frozenset[str], at: float, actor: str) -> None:
        """An agent's roster after a supervisor's move: PostgreSQL (agent_queue_membership,
        migration 0012) through the acd lane; Redis has it with the agent's live state."""
        self._history.membership(agent_id, sorted(queues), at, actor)

    def save_entry(self, entry: Entry) -> None:
        self._mirror.put("entry", entry.entry_id, entry.to_live())

    def save_entry_row(self, entry: Entry) -> None:
        if entry.phase is Phase.ENDED:
            self._history.entry(entry.to_row())
        else:
            self.save_entry(entry)

    def entry_ended(self, entry: Entry) -> None:
        self._mirror.put("entry", entry.entry_id, None)
        self._history.entry(entry.to_row())

    def reservation(self, r: Reservation) -> None:
        self._mirror.put("resv", f"{r.call_id} {r.agent_id}", r)

    def drop_reservation(self, entry_id: str, agent_id: str) -> None:
        self._mirror.put("resv", f"{entry_id} {agent_id}", None)
