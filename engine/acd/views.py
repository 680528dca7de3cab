"""Read-only views of the ACD for the API: one agent, one queue with its live KPIs."""

from __future__ import annotations

from typing import Any

from engine.acd.entries import Phase
from engine.acd.kpi import AgentTime, kpis_of
from engine.acd.model import QueueSpec
from engine.acd.state import AcdState
from engine.agents.model import BUSY_STATES, AgentConfig, AgentState, AgentStatus


def agent_view(state: AcdState, agent_id: str) -> dict[str, Any]:
    rec = state.agent(agent_id)
    st, cfg, now = rec.status, rec.config, state.now()
    return {
        "id": cfg.id,
        "name": cfg.name,
        "team": cfg.team,
        "skills": dict(cfg.skills),
        "endpoints": dict(cfg.endpoints),
        "state": st.state.value,
        "since": st.since,
        "time_in_state_s": round(st.time_in_state(now), 3),
        "pause_reason": st.pause_reason,
        "call_id": st.call_id,
        "queue": st.queue,
        "wrap_up_until": st.wrap_up_until,
        "missed_in_row": st.missed_in_row,
        "max_no_answer": cfg.max_no_answer,
        "logged_in_at": st.logged_in_at,
        "calls_handled": st.calls_handled,
        "talk_s": round(st.talk_s, 3),
        "occupancy_pct": round(100.0 * st.occupancy(now), 3),
        # The queues whose calls it takes (its roster after a supervisor's move, else every
        # queue its skills fit) and a supervisor's pause or logout waiting for its call.
        "queues": sorted(q.name for q in state.queues.values() if serves(cfg, q)),
        "pending_supervisor_action": _pending(state, agent_id),
    }


def _pending(state: AcdState, agent_id: str) -> dict[str, Any] | None:
    p = state.pending.get(agent_id)
    if p is None:
        return None
    return {"action": p.action, "reason": p.reason, "actor": p.actor, "note": p.note}


def serves(cfg: AgentConfig, q: QueueSpec) -> bool:
    if cfg.queues is not None and q.name not in cfg.queues:
        return False
    return all(cfg.skills.get(s, 0) >= lvl for s, lvl in q.skills.items())


def queue_view(state: AcdState, name: str) -> dict[str, Any]:
    q = state.queue(name)
    now = state.now()
    live = state.sorted_entries(name)
    callers = [
        {
            "position": i + 1,
            "call_id": e.call_id,
            "entry_id": e.entry_id,
            "state": e.phase.value,
            "priority": e.priority,
            "wait_s": round(now - e.entered_at, 3),
            "tags": list(e.tags),
            "intent": e.intent,
            "overflow_stage": e.stage,
            "strategy": e.strategy,
            "agents": sorted(o.agent_id for o in e.open_offers())
            if e.phase is Phase.RINGING
            else ([e.agent_id] if e.agent_id else []),
        }
        for i, e in enumerate(x for x in live if x.phase in (Phase.WAITING, Phase.RINGING))
    ]
    talking = [e for e in live if e.phase not in (Phase.WAITING, Phase.RINGING)]
    serving = [a for a in state.agents.values() if serves(a.config, q)]
    by_state: dict[str, list[str]] = {s.value: [] for s in AgentState}
    for a in sorted(serving, key=lambda a: a.config.id):
        by_state[a.status.state.value].append(a.config.id)
    kpis = kpis_of(
        state.kpi[name].sums(now),
        (e.entered_at for e in live if e.phase in (Phase.WAITING, Phase.RINGING)),
        (agent_time(a.status, now) for a in serving if a.status.logged_in_at),
        now,
    )
    return {
        "name": q.name,
        "strategy": q.strategy.value,
        "strategies": [s.value for s in q.strategies],
        "strategy_split": q.strategy_split,
        "skills": dict(q.skills),
        "ring_timeout_s": q.ring_timeout_s,
        "wrap_up_s": q.wrap_up_s,
        "max_wait_s": q.max_wait_s,
        "service_level_s": q.service_level_s,
        "moh": q.moh,
        "waiting": callers,
        "connected": [
            {"call_id": e.call_id, "entry_id": e.entry_id, "agent_id": e.agent_id} for e in talking
        ],
        "agents": by_state,
        "kpis": kpis.to_dict(),
    }


def agent_time(st: AgentStatus, now: float) -> AgentTime:
    busy, avail = st.busy_s, st.available_s
    if st.state in BUSY_STATES:
        busy += st.time_in_state(now)
    elif st.state is AgentState.AVAILABLE:
        avail += st.time_in_state(now)
    return AgentTime(busy, avail)
