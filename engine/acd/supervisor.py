"""Supervisor controls, the side effects (docs/supervisor.md): listen / whisper / barge on an
agent's call, a supervisor's pause or logout of an agent, and moving an agent between queues.

The decisions are :mod:`engine.acd.supervision`'s (pure); this part carries them out: the
switch actions through the driver's ``spy`` / ``spy_mode`` / ``hangup``, the agent steps
through :class:`AgentDesk`, and the events and history through :class:`AcdRecords`.

The supervisor's leg is a switch action like hold music or a bridge, not a CallService call:
it has no CDR and is not in ``GET /v1/calls``. It is followed here from the driver's events
(its own id: Answered, HungUp) and ends with the agent's leg (ChanSpy ``E`` on Asterisk; on
FreeSWITCH eavesdrop returns when its target goes, and the engine hangs the leg up as well).
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from engine.acd.actions import SwitchActions
from engine.acd.agent_desk import AgentDesk
from engine.acd.eligibility import fits
from engine.acd.errors import SpyNotFound, SupervisorEndpointBusy
from engine.acd.model import view_of
from engine.acd.reconcile import LIST_GRACE_S
from engine.acd.records import AcdRecords
from engine.acd.routing import Router
from engine.acd.state import AcdState, PendingAction
from engine.acd.supervision import allowed_endpoints, applies_now, move_plan, serving, spy_plan
from engine.agents.errors import UnknownPauseReason
from engine.agents.fsm import Logout, Pause
from engine.core.errors import Conflict, EngineError, PbxError
from engine.pbx.base import (
    Answered,
    DialTarget,
    HungUp,
    OriginateFailed,
    PbxEvent,
    SpyMode,
    SpyRequest,
)
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")

#: How long the supervisor's phone rings before the switch gives up.
SPY_RING_S = 30.0
ENDED_KEPT = 200


class SpyNotConnected(Conflict):
    """A mode switch before the supervisor answered: the spy application is not running yet,
    so there is nothing to receive the digit."""

    error_id = "spy-not-connected"


@dataclass(slots=True)
class SpySession:
    spy_id: str  # the supervisor's leg
    agent_id: str
    switch: str
    spied_leg: str
    caller_call_id: str | None
    endpoint: str
    mode: SpyMode
    actor: str
    started_at: float
    state: str = "ringing"  # ringing | connected | ended
    answered_at: float | None = None
    ended_at: float | None = None
    cause: int | None = None

    def view(self) -> dict[str, Any]:
        return {
            "spy_id": self.spy_id,
            "agent_id": self.agent_id,
            "switch": self.switch,
            "agent_call_id": self.spied_leg,
            "call_id": self.caller_call_id,
            "endpoint": self.endpoint,
            "mode": self.mode.value,
            "state": self.state,
            "actor": self.actor,
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "cause": self.cause,
        }


class SupervisorDesk:
    def __init__(
        self,
        *,
        state: AcdState,
        router: Router,
        desk: AgentDesk,
        records: AcdRecords,
        actions: SwitchActions,
        decide: Callable[[], None],
    ) -> None:
        self._s = state
        self._router = router
        self._desk = desk
        self._records = records
        self._actions = actions
        self._decide = decide
        self.spies: dict[str, SpySession] = {}
        self.ended: deque[SpySession] = deque(maxlen=ENDED_KEPT)

    # ------------------------------------------------------------ listen / whisper / barge

    def spies_of(self, agent_id: str) -> list[SpySession]:
        return [s for s in self.spies.values() if s.agent_id == agent_id]

    async def spy(
        self, agent_id: str, mode: SpyMode, endpoint: str, actor: str
    ) -> tuple[SpySession, bool]:
        """Ring ``endpoint`` into ``mode`` on the agent's call; (session, created). The same
        endpoint already on this agent's call switches its mode instead (no second ring)."""
        rec = self._s.agent(agent_id)
        for session in self.spies_of(agent_id):
            if session.endpoint == endpoint or session.endpoint == _bare(endpoint):
                await self.set_mode(session, mode)
                return session, False
        kind = self._s.kinds.get(rec.switch, "")
        allowed = allowed_endpoints(
            rec.switch,
            kind,
            self._s.settings.supervisor_endpoints,
            (a.config.endpoints for a in self._s.agents.values()),
        )
        plan = spy_plan(
            status=rec.status,
            leg=rec.leg,
            switch=rec.switch,
            switch_kind=kind,
            endpoint=endpoint,
            mode=mode,
            allowed=allowed,
        )
        if (other := self._busy(plan.switch, plan.endpoint)) is not None:
            await self._drop_if_lost(other)
        if (other := self._busy(plan.switch, plan.endpoint)) is not None:
            # One phone, one session: a second ChanSpy / eavesdrop originate would ring a
            # phone that is already ringing or listening (call waiting, or busy).
            raise SupervisorEndpointBusy(
                f"the supervisor's phone ({plan.endpoint}) is already {other.state} on "
                f"agent {other.agent_id}'s call; end that first "
                f"(DELETE /v1/agents/{other.agent_id}/spy)",
                details={
                    "endpoint": plan.endpoint,
                    "switch": plan.switch,
                    "spy_id": other.spy_id,
                    "agent_id": other.agent_id,
                    "state": other.state,
                },
            )
        now = self._s.now()
        session = SpySession(
            spy_id=str(uuid.uuid4()),
            agent_id=agent_id,
            switch=plan.switch,
            spied_leg=plan.spied_leg,
            caller_call_id=plan.caller_call_id,
            endpoint=plan.endpoint,
            mode=mode,
            actor=actor,
            started_at=now,
        )
        # Known before the originate: the leg's first events can beat its reply.
        self.spies[session.spy_id] = session
        try:
            await self._actions.drivers[plan.switch].spy(
                SpyRequest(
                    call_id=session.spy_id,
                    target=DialTarget("endpoint", plan.endpoint),
                    spied_call_id=plan.spied_leg,
                    mode=mode,
                    timeout_s=SPY_RING_S,
                )
            )
        except BaseException:
            self.spies.pop(session.spy_id, None)
            raise
        self._announce(session, now)
        return session, True

    def _busy(self, switch: str, endpoint: str) -> SpySession | None:
        for session in self.spies.values():
            if session.switch == switch and session.endpoint == endpoint:
                return session
        return None

    async def _drop_if_lost(self, session: SpySession) -> None:
        """End ``session`` if its leg is no longer on the switch: its HungUp was lost (the link
        was away when it ended), and the phone would otherwise be refused as busy forever.
        Judged from the switch's channel list, like the reconcile loop, never for a leg
        younger than LIST_GRACE_S; when the list cannot be read the session stands."""
        now = self._s.now()
        if now - session.started_at < LIST_GRACE_S:
            return
        driver = self._actions.drivers.get(session.switch)
        if driver is None:
            return
        try:
            live = {c.call_id for c in await driver.live_calls()}
        except (EngineError, PbxError):
            return
        if session.spy_id not in live and self.spies.get(session.spy_id) is session:
            log.info("spy session's leg is gone", spy_id=session.spy_id, agent_id=session.agent_id)
            self._end(session, self._s.now(), None)

    def _end(self, session: SpySession, now: float, cause: int | None) -> None:
        self.spies.pop(session.spy_id, None)
        session.state, session.ended_at, session.cause = "ended", now, cause
        self.ended.append(session)
        self._announce(session, now)

    async def set_mode(self, session: SpySession, mode: SpyMode) -> None:
        if session.mode is mode:
            return
        if session.state != "connected":
            raise SpyNotConnected(
                f"the supervisor's phone ({session.endpoint}) has not answered yet; "
                "the mode can change once it has",
                details={"spy_id": session.spy_id, "state": session.state},
            )
        await self._actions.drivers[session.switch].spy_mode(session.spy_id, mode)
        session.mode = mode
        self._announce(session, self._s.now())

    async def stop(self, agent_id: str) -> list[SpySession]:
        """Hang up every supervisor's leg on the agent's call; their HungUp ends them."""
        self._s.agent(agent_id)
        sessions = self.spies_of(agent_id)
        if not sessions:
            raise SpyNotFound(f"nobody listens to agent {agent_id}", details={"agent_id": agent_id})
        for session in sessions:
            with contextlib.suppress(EngineError, PbxError):  # ended meanwhile
                await self._actions.drivers[session.switch].hangup(session.spy_id)
        return sessions

    def handle(self, event: PbxEvent) -> bool:
        """The supervisor legs' events (True when the event was one of them); the end of a
        spied leg ends its sessions."""
        session = self.spies.get(event.call_id)
        if session is None:
            if isinstance(event, HungUp):
                for s in [s for s in self.spies.values() if s.spied_leg == event.call_id]:
                    # Asterisk's ChanSpy E ends the leg by itself; eavesdrop's end when its
                    # target hangs up is not recorded, so the engine makes sure.
                    driver = self._actions.drivers.get(s.switch)
                    if driver is not None:
                        self._actions.spawn(_quiet(driver.hangup(s.spy_id)))
            return False
        now = self._s.now()
        if isinstance(event, Answered) and session.state == "ringing":
            session.state, session.answered_at = "connected", now
            self._announce(session, now)
        elif isinstance(event, HungUp | OriginateFailed):
            self._end(session, now, event.cause)
        return True

    def _announce(self, session: SpySession, at: float) -> None:
        self._records.publish({"type": "SupervisorSpy", "ts": at, **session.view()})

    # ------------------------------------------------------------ pause / logout / move

    def force(
        self, agent_id: str, action: str, reason: str, actor: str, note: str = ""
    ) -> dict[str, Any]:
        """A supervisor's pause (``reason``: a configured pause reason) or logout (``reason``:
        free text, for the audit trail). Ringing or talking agents get it when the call and
        its wrap-up are over; a second one replaces a waiting one."""
        rec = self._s.agent(agent_id)
        if action == "pause" and reason not in self._s.settings.pause_reasons:
            raise UnknownPauseReason(
                f"pause reason {reason!r} is not configured",
                details={"reason": reason, "allowed": list(self._s.settings.pause_reasons)},
            )
        now = self._s.now()
        applied = applies_now(rec.status.state)
        if applied:
            self._s.pending.pop(agent_id, None)
            self._desk.step(agent_id, Pause(reason) if action == "pause" else Logout(), now)
        else:
            self._s.pending[agent_id] = PendingAction(action, reason, actor, note)
        self._records.supervised(
            f"force-{action}",
            agent_id,
            actor,
            now,
            reason=reason,
            note=note,
            applied=applied,
            pending=not applied,
        )
        return {"applied": applied, "pending": None if applied else action}

    def pending_of(self, agent_id: str) -> PendingAction | None:
        return self._s.pending.get(agent_id)

    def queues_of(self, agent_id: str) -> frozenset[str]:
        rec = self._s.agent(agent_id)
        return serving(self._s.queues, _minimums(self._s), rec.config.skills, rec.config.queues)

    def move(self, agent_id: str, source: str, target: str, actor: str) -> frozenset[str]:
        """Move the agent from queue ``source`` to ``target`` (its roster; live, persisted,
        announced). Calls waiting in ``target`` may be offered to it at once."""
        rec = self._s.agent(agent_id)
        self._s.queue(source)
        self._s.queue(target)
        minimums = _minimums(self._s)
        roster = move_plan(
            agent_id=agent_id,
            source=source,
            target=target,
            current=self.queues_of(agent_id),
            fits_target=fits(rec.config.skills, minimums[target]),
        )
        rec.config = replace(rec.config, queues=roster)
        self._router.upsert_agent(view_of(rec.config, rec.status))
        self._records.save_agent(rec, self._s.wrapping.get(agent_id))
        now = self._s.now()
        self._records.membership(agent_id, roster, now, actor)
        self._records.supervised(
            "move", agent_id, actor, now, **{"from": source, "to": target, "queues": sorted(roster)}
        )
        self._decide()
        return roster


def _minimums(state: AcdState) -> dict[str, dict[str, int]]:
    return {name: dict(q.skills) for name, q in state.queues.items()}


def _bare(endpoint: str) -> str:
    return endpoint.partition("/")[2] or endpoint


async def _quiet(coro: Any) -> None:
    with contextlib.suppress(EngineError, PbxError):
        await coro
