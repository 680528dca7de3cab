"""The ACD service: the only place in agents/acd with side effects.

Decisions are the pure core's (:class:`engine.agents.fsm.AgentFsm`,
:class:`engine.acd.routing.Router`); this service feeds them what happens and
carries out what they return (docs/acd.md "The service"):

- **Who owns what.** The caller's call and every agent leg are CallService
  calls: the agent legs are placed through ``CallService.originate`` (so they
  have a CDR, the live registry, the sweeper and adoption after a restart,
  like any call). The ACD never changes a call's state; it subscribes to each
  driver's event stream on its own (``driver.events()``: every subscriber sees
  every event) and follows only the legs it registered: its callers' legs and
  its agent legs. Switch actions CallService has no command for (hold music,
  the bridge, a redirect to an IVR flow) go straight to the driver.
- **One writer, no awaits in decisions.** Every state change happens in a
  plain (not ``async``) method, so two events can never interleave inside
  one change. Switch actions run as tasks; their failures come back as
  inputs. The actions on one caller run in order (hold music, bridge,
  redirect), each after the previous one.
- **Storage never blocks a change.** Live state goes to Redis through
  :class:`LiveMirror` (background, coalescing); history goes to PostgreSQL
  through the ``acd`` outbox lane; events go through the events lane.
- **Timers.** :meth:`tick` (every ``tick_s``) ends reservations past their
  expiry, ends wrap-ups that are due (the FSM refuses an early end), re-queues
  callers whose agent left, and runs the router for timed overflow.
  :meth:`reconcile_once` (every ``reconcile_s``) frees reservations whose call
  is gone, from Redis and the switches' channel lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from engine.acd.endpoints import call_variables, check_call_data, dialable, endpoint_problems
from engine.acd.entries import Entry, OfferLeg, Phase
from engine.acd.errors import (
    CallNotAnswered,
    InvalidQueueCall,
    NoQueueForIntent,
    QueueNotFound,
    UnknownAgent,
)
from engine.acd.history import AcdHistory
from engine.acd.kpi import AgentTime, FinishedEntry, queue_kpis
from engine.acd.live_store import AcdLiveStore, StoredAgent
from engine.acd.model import (
    DEFAULT_PRIORITIES,
    DEFAULT_PRIORITY,
    QueueSpec,
    WaitingCall,
    priority_for,
    queue_for_intent,
    view_of,
)
from engine.acd.reservations import Outcome, Reservation, stale_reservations
from engine.acd.routing import CallAlreadyQueued, Decision, Router
from engine.acd.scoring import Scorer
from engine.agents.fsm import (
    AgentFsm,
    AgentInput,
    AgentTransition,
    CallEnded,
    Login,
    Logout,
    Offer,
    OfferAnswered,
    OfferCancelled,
    OfferMissed,
    Pause,
    Ready,
    WrapUpElapsed,
)
from engine.agents.model import BUSY_STATES, AgentConfig, AgentState, AgentStatus
from engine.calls.commands import OriginateCommand
from engine.calls.errors import CallAlreadyEnded
from engine.calls.model import Call, CallState
from engine.core import clock
from engine.core.errors import ConfigError, EngineError
from engine.pbx.base import (
    Answered,
    HungUp,
    IvrTarget,
    LinkState,
    OriginateFailed,
    Park,
    PbxDriver,
    PbxEvent,
    Resynced,
    Unbridged,
)
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd")

# After the agent hangs up, the caller is re-queued unless its own hangup
# arrives within this time. The two legs' ends are separate events in no fixed
# order (FreeSWITCH: the agent's HANGUP comes before the caller's UNBRIDGE
# whichever leg left first), so only a short wait tells "the agent left" from
# "the caller left and the switch ended the agent's leg".
REQUEUE_SETTLE_S = 0.5
# Legs younger than this are not judged from a channel list: FreeSWITCH's
# `show channels` lags its events by up to ~200 ms (measured), Asterisk's
# CoreShowChannels can miss a channel still being set up.
LIST_GRACE_S = 3.0
FINISHED_KEPT = 5000  # finished entries kept per queue for the live KPIs
STASH_MAX = 2000


class CallPort(Protocol):
    """What the ACD needs of the calls service (``CallService`` satisfies it)."""

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]: ...

    async def get(self, call_id: str) -> Call: ...

    async def hangup(self, call_id: str, cause: int = 16) -> Call: ...


class Publish(Protocol):
    def put(self, payload: dict[str, Any]) -> None: ...


class LiveSink(Protocol):
    """Where live state goes (``LiveMirror``: Redis in the background)."""

    def put(self, kind: str, ident: str, value: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class AcdSettings:
    pause_reasons: tuple[str, ...] = ("break", "lunch", "training")
    priorities: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    default_priority: int = DEFAULT_PRIORITY
    intents: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    tick_s: float = 0.05
    reconcile_s: float = 2.0
    kpi_window_s: float = 24 * 3600.0
    storage_timeout_s: float = 2.0


@dataclass(slots=True)
class _Agent:
    config: AgentConfig
    status: AgentStatus
    session_id: str = ""
    leg: str = ""  # the agent's leg while reserved / on a call
    switch: str = ""
    entry_id: str = ""  # the entry it is offered, talking to, or wrapping up
    confirmed: bool = True  # False after a restart until its switch's channel list is seen


class AcdService:
    def __init__(
        self,
        *,
        agents: Sequence[AgentConfig],
        queues: Sequence[QueueSpec],
        settings: AcdSettings,
        calls: CallPort,
        drivers: Mapping[str, PbxDriver],
        events: Publish,
        history: AcdHistory,
        mirror: LiveSink,
        store: AcdLiveStore | None = None,
        scorer: Scorer | None = None,
        now: Callable[[], float] = clock.now,
    ) -> None:
        kinds = {name: d.kind for name, d in drivers.items()}
        problems = endpoint_problems(agents, kinds)
        if problems:
            raise ConfigError("engine.toml", problems)
        self._settings = settings
        self._queues = {q.name: q for q in queues}
        self._calls = calls
        self._drivers = dict(drivers)
        self._kinds = kinds
        self._events = events
        self._history = history
        self._mirror = mirror
        self._store = store
        self._clock = now
        self._last_now = float("-inf")
        self._fsm = AgentFsm(settings.pause_reasons)
        self._router = Router(queues, scorer=scorer, seed=settings.seed)
        self._agents: dict[str, _Agent] = {}
        for cfg in agents:
            status = AgentStatus(agent_id=cfg.id, since=self._now())
            self._agents[cfg.id] = _Agent(cfg, status)
            self._router.upsert_agent(view_of(cfg, status))
        self._entries: dict[str, Entry] = {}  # entry_id -> live entry
        self._by_call: dict[str, str] = {}  # caller call id -> entry id
        self._legs: dict[str, tuple[str, str | None]] = {}  # leg -> (entry id, agent id | None)
        self._finished: dict[str, deque[Entry]] = {
            q: deque(maxlen=FINISHED_KEPT) for q in self._queues
        }
        self._wrapping: dict[str, Entry] = {}  # agent id -> the entry whose wrap-up it is in
        # Events of legs not known yet, while an agent originate is in flight:
        # its first events can come before CallService.originate returns the id.
        self._originating = 0
        self._stash: OrderedDict[str, list[PbxEvent]] = OrderedDict()
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._retry = False

    # ================================================================ clock

    def _now(self) -> float:
        # The router refuses time going backwards; the wall clock may (NTP).
        now = max(self._clock(), self._last_now)
        self._last_now = now
        return now

    # ============================================================== queries

    @property
    def queues(self) -> Mapping[str, QueueSpec]:
        return self._queues

    def agent_ids(self) -> list[str]:
        return sorted(self._agents)

    def status(self, agent_id: str) -> AgentStatus:
        return self._agent(agent_id).status

    def entry_of(self, call_id: str) -> Entry | None:
        entry_id = self._by_call.get(call_id)
        return self._entries.get(entry_id) if entry_id else None

    def entries(self, queue: str | None = None) -> list[Entry]:
        out = [e for e in self._entries.values() if queue is None or e.queue == queue]
        return sorted(out, key=lambda e: (-e.priority, e.entered_at, e.entry_id))

    def finished(self, queue: str) -> list[Entry]:
        return list(self._finished.get(queue, ()))

    def _agent(self, agent_id: str) -> _Agent:
        rec = self._agents.get(agent_id)
        if rec is None:
            raise UnknownAgent(
                f"no agent with id {agent_id!r}",
                details={"agent_id": agent_id, "known": sorted(self._agents)[:50]},
            )
        return rec

    def _queue(self, name: str) -> QueueSpec:
        q = self._queues.get(name)
        if q is None:
            raise QueueNotFound(
                f"no queue named {name!r}", details={"queue": name, "known": sorted(self._queues)}
            )
        return q

    def agent_view(self, agent_id: str) -> dict[str, Any]:
        rec = self._agent(agent_id)
        st, cfg, now = rec.status, rec.config, self._now()
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
        }

    def _serves(self, cfg: AgentConfig, q: QueueSpec) -> bool:
        return all(cfg.skills.get(s, 0) >= lvl for s, lvl in q.skills.items())

    def queue_view(self, name: str) -> dict[str, Any]:
        q = self._queue(name)
        now = self._now()
        live = self.entries(name)
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
                "agents": sorted(o.agent_id for o in e.open_offers())
                if e.phase is Phase.RINGING
                else ([e.agent_id] if e.agent_id else []),
            }
            for i, e in enumerate(x for x in live if x.phase in (Phase.WAITING, Phase.RINGING))
        ]
        talking = [e for e in live if e.phase not in (Phase.WAITING, Phase.RINGING)]
        serving = [a for a in self._agents.values() if self._serves(a.config, q)]
        by_state: dict[str, list[str]] = {s.value: [] for s in AgentState}
        for a in sorted(serving, key=lambda a: a.config.id):
            by_state[a.status.state.value].append(a.config.id)
        kpis = queue_kpis(
            (self._finished_of(e) for e in self._finished[name]),
            (e.entered_at for e in live if e.phase in (Phase.WAITING, Phase.RINGING)),
            (self._agent_time(a.status, now) for a in serving if a.status.logged_in_at),
            now,
            q.service_level_s,
            self._settings.kpi_window_s,
        )
        return {
            "name": q.name,
            "strategy": q.strategy.value,
            "skills": dict(q.skills),
            "ring_timeout_s": q.ring_timeout_s,
            "wrap_up_s": q.wrap_up_s,
            "max_wait_s": q.max_wait_s,
            "service_level_s": q.service_level_s,
            "moh": q.moh,
            "waiting": callers,
            "connected": [
                {"call_id": e.call_id, "entry_id": e.entry_id, "agent_id": e.agent_id}
                for e in talking
            ],
            "agents": by_state,
            "kpis": kpis.to_dict(),
        }

    @staticmethod
    def _finished_of(e: Entry) -> FinishedEntry:
        return FinishedEntry(
            entered_at=e.entered_at,
            ended_at=e.ended_at if e.ended_at is not None else e.entered_at,
            outcome=e.outcome,
            wait_s=e.wait_s or 0.0,
            talk_s=e.talk_s or 0.0,
            wrap_up_s=e.wrap_up_s,
        )

    @staticmethod
    def _agent_time(st: AgentStatus, now: float) -> AgentTime:
        busy, avail = st.busy_s, st.available_s
        if st.state in BUSY_STATES:
            busy += st.time_in_state(now)
        elif st.state is AgentState.AVAILABLE:
            avail += st.time_in_state(now)
        return AgentTime(busy, avail)

    # ====================================================== agent commands

    def login(self, agent_id: str) -> dict[str, Any]:
        self._step(agent_id, Login(), self._now())
        self._decide()
        return self.agent_view(agent_id)

    def logout(self, agent_id: str) -> dict[str, Any]:
        self._step(agent_id, Logout(), self._now())
        return self.agent_view(agent_id)

    def ready(self, agent_id: str) -> dict[str, Any]:
        self._step(agent_id, Ready(), self._now())
        self._decide()
        return self.agent_view(agent_id)

    def pause(self, agent_id: str, reason: str) -> dict[str, Any]:
        self._step(agent_id, Pause(reason), self._now())
        return self.agent_view(agent_id)

    def _step(self, agent_id: str, inp: AgentInput, now: float) -> AgentTransition:
        rec = self._agent(agent_id)
        tr = self._fsm.step(rec.config, rec.status, inp, now)
        rec.status = tr.after
        after = tr.after.state
        if after in (AgentState.AVAILABLE, AgentState.PAUSED, AgentState.LOGGED_OUT):
            rec.leg, rec.entry_id = "", ""
        if isinstance(inp, Login):
            rec.session_id = uuid.uuid4().hex
            self._history.session(rec.session_id, agent_id, now, None)
        closed = self._router.upsert_agent(view_of(rec.config, tr.after))
        if closed:  # the service closes offers before stepping; a leftover is a bug
            log.warning("router held an offer of an agent made available", agent_id=agent_id)
        self._save_agent(rec)
        if tr.before.state is AgentState.WRAP_UP and after is not AgentState.WRAP_UP:
            wrapped = self._wrapping.pop(agent_id, None)
            if wrapped is not None:
                wrapped.wrap_up_s = tr.time_in_previous_state_s
                self._save_entry_row(wrapped)
        if tr.state_changed:
            self._announce(rec, tr)
        if isinstance(inp, Logout):
            self._history.session(rec.session_id, agent_id, tr.before.logged_in_at or now, now)
        return tr

    def _announce(self, rec: _Agent, tr: AgentTransition) -> None:
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
        self._publish(
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

    def _save_agent(self, rec: _Agent) -> None:
        status = asdict(rec.status)
        status["state"] = rec.status.state.value
        self._mirror.put(
            "agent",
            rec.config.id,
            StoredAgent(rec.config.id, status, rec.session_id, rec.leg, rec.switch),
        )

    # ======================================================= queue a call

    async def enter(
        self,
        call_id: str,
        *,
        queue: str | None = None,
        tags: Iterable[str] = (),
        intent: str | None = None,
        features: Sequence[float] | None = None,
        customer: Mapping[str, str] | None = None,
    ) -> Entry:
        """A live, answered call enters a queue (the API, or an IVR ``queue`` step).

        ``queue`` wins; without it the intent's queue (``[acd] intents``).
        """
        tags = tuple(tags)
        customer = dict(customer or {})
        problems = check_call_data(tags, intent, customer)
        if features is not None:
            dims = {len(a.config.capability) for a in self._agents.values() if a.config.capability}
            if dims and len(features) not in dims:
                problems.append(
                    f"features: {len(features)} numbers, expected {min(dims)} (the length of "
                    "the agents' capability vectors)"
                )
        if problems:
            raise InvalidQueueCall("; ".join(problems), details={"problems": problems})
        name = queue if queue is not None else queue_for_intent(intent, self._settings.intents)
        if name is None:
            raise NoQueueForIntent(
                f"intent {intent!r} maps to no queue ([acd] intents) and no queue was given",
                details={"intent": intent, "intents": dict(self._settings.intents)},
            )
        q = self._queue(name)
        if call_id in self._by_call:
            raise CallAlreadyQueued(
                f"call {call_id} is already in queue {self.entry_of(call_id).queue}",  # type: ignore[union-attr]
                details={"call_id": call_id},
            )
        call = await self._calls.get(call_id)
        if call.is_ended:
            raise CallAlreadyEnded(
                f"call {call_id!r} has already ended", details={"call_id": call_id}
            )
        if call.state is not CallState.ANSWERED:
            raise CallNotAnswered(
                f"call {call_id} is {call.state.value}; only an answered call that is not bridged "
                "can wait in a queue",
                details={"call_id": call_id, "state": call.state.value},
            )
        if call_id in self._by_call:  # entered meanwhile (the await above)
            raise CallAlreadyQueued(
                f"call {call_id} is already queued", details={"call_id": call_id}
            )
        now = self._now()
        entry = Entry(
            entry_id=uuid.uuid4().hex,
            call_id=call_id,
            leg=call.current_leg,
            switch=call.switch,
            queue=q.name,
            priority=priority_for(tags, self._settings.priorities, self._settings.default_priority),
            entered_at=now,
            tags=tags,
            intent=intent,
            features=tuple(float(f) for f in features) if features is not None else None,
            customer=customer,
        )
        self._admit(entry)
        return entry

    def _admit(self, entry: Entry) -> None:
        q = self._queues[entry.queue]
        self._entries[entry.entry_id] = entry
        self._by_call[entry.call_id] = entry.entry_id
        self._legs[entry.leg] = (entry.entry_id, None)
        self._router.add_call(
            WaitingCall(
                call_id=entry.entry_id,
                queue=entry.queue,
                entered_at=entry.entered_at,
                priority=entry.priority,
                tags=entry.tags,
                intent=entry.intent,
                features=entry.features,
                customer=entry.customer,
            )
        )
        self._publish(
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
        self._save_entry(entry)
        # Hold music first (docs/freeswitch.md: the order the switches need):
        # the bridge later runs after it on the same chain.
        self._chain(entry.leg, self._moh(entry, q.moh))
        self._decide()

    async def _moh(self, entry: Entry, moh_class: str) -> None:
        await self._drivers[entry.switch].moh_start(entry.leg, moh_class)

    # ============================================================ routing

    def _decide(self) -> None:
        # An offer that could not be made (the agent has no phone on the
        # caller's switch) puts the caller back; route again. Bounded: each
        # such offer marks that agent as never offered that caller again.
        for _ in range(len(self._agents) + 1):
            self._retry = False
            now = self._now()
            decision: Decision = self._router.decide(now)
            for ov in decision.overflowed:
                self._overflowed(ov.call_id, ov.stage, ov.after_s, now)
            for ex in decision.exits:
                self._exit(ex.call_id, ex.reason, ex.flow, now)
            for a in decision.assignments:
                entry = self._entries[a.call_id]  # the router only holds live entries
                for agent_id in a.agent_ids:
                    self._offer(entry, agent_id, a.expires_at, now)
            if not self._retry:
                return

    def _overflowed(self, entry_id: str, stage: int, after_s: float, now: float) -> None:
        entry = self._entries.get(entry_id)
        if entry is None:
            return
        entry.stage = stage
        rules = [r for r in self._queues[entry.queue].overflow if r.after_s == after_s]
        actions: list[dict[str, Any]] = []
        for r in rules:
            if r.relax_skills:
                actions.append({"relax_skills": dict(r.relax_skills)})
            elif r.add_queue:
                actions.append({"add_queue": r.add_queue})
        self._publish(
            {
                "type": "QueueCallOverflowed",
                "ts": now,
                "call_id": entry.call_id,
                "entry_id": entry.entry_id,
                "queue": entry.queue,
                "stage": stage,
                "after_s": after_s,
                "actions": actions,
                "exit": None,
                "flow": None,
            }
        )
        self._save_entry(entry)

    def _exit(self, entry_id: str, reason: str, flow: str | None, now: float) -> None:
        entry = self._entries.get(entry_id)
        if entry is None:
            return
        entry.exit_flow = flow
        self._publish(
            {
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
        )
        self._finish(entry, reason, now)
        driver = self._drivers[entry.switch]
        if flow is not None:
            # The caller leaves the queue for the IVR flow (voicemail, callback...).
            self._chain(entry.leg, driver.redirect(entry.leg, IvrTarget(flow)))
        else:
            # max-wait with no IVR to go to: the caller is hung up (normal clearing).
            self._chain(entry.leg, self._hangup_call(entry.call_id))

    # ============================================================== offers

    def _offer(self, entry: Entry, agent_id: str, expires_at: float, now: float) -> None:
        rec = self._agents[agent_id]
        q = self._queues[entry.queue]
        kind = self._kinds.get(entry.switch, "")
        endpoint = dialable(rec.config, entry.switch, kind)
        if endpoint is None:
            # The agent has no phone on the caller's switch: never offered this
            # caller again (the router's "missed" set); not the agent's fault.
            self._router.offer_missed(entry.entry_id, agent_id, now)
            self._router.upsert_agent(view_of(rec.config, rec.status))
            if not entry.open_offers():
                entry.phase = Phase.WAITING
            self._retry = True
            return
        self._step(agent_id, Offer(entry.call_id, entry.queue, q.wrap_up_s, expires_at), now)
        rec.entry_id, rec.switch = entry.entry_id, entry.switch
        offer = OfferLeg(agent_id, now)
        entry.offers[agent_id] = offer
        entry.phase = Phase.RINGING
        entry.offers_made += 1
        if entry.first_offer_at is None:
            entry.first_offer_at = now
        self._mirror.put(
            "resv",
            f"{entry.entry_id} {agent_id}",
            Reservation(entry.entry_id, agent_id, entry.queue, now, expires_at),
        )
        self._publish(
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
        self._save_entry(entry)
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
        self._originating += 1
        self._spawn(self._ring(entry, offer, cmd))

    async def _ring(self, entry: Entry, offer: OfferLeg, cmd: OriginateCommand) -> None:
        try:
            call, _ = await self._calls.originate(cmd)
        except Exception as err:
            self._originating -= 1
            log.warning(
                "agent not rung", agent_id=offer.agent_id, call_id=entry.call_id, error=str(err)
            )
            self._offer_failed(entry, offer)
            return
        self._originating -= 1
        self._leg_placed(entry, offer, call.call_id)

    def _leg_placed(self, entry: Entry, offer: OfferLeg, leg: str) -> None:
        offer.leg = leg
        self._legs[leg] = (entry.entry_id, offer.agent_id)
        if offer.open:
            rec = self._agents[offer.agent_id]
            rec.leg = leg
            self._save_agent(rec)
            self._save_entry(entry)
        else:
            # Withdrawn while the originate was in flight (caller gone, another
            # agent answered a ring-all): the phone must stop ringing.
            self._spawn(self._hangup_call(leg))
        for event in self._stash.pop(leg, []):
            self.handle(event)
        if self._originating == 0:
            self._stash.clear()

    def _offer_failed(self, entry: Entry, offer: OfferLeg) -> None:
        if not offer.open:
            return
        now = self._now()
        offer.open = False
        self._router.offer_missed(entry.entry_id, offer.agent_id, now)
        self._drop_reservation(entry, offer.agent_id)
        rec = self._agents[offer.agent_id]
        if rec.status.state is AgentState.RESERVED and rec.status.call_id == entry.call_id:
            # The switch refused or was away: not the agent's fault (not counted).
            self._step(offer.agent_id, OfferCancelled(entry.call_id), now)
        self._back_to_waiting(entry)
        self._decide()

    def _drop_reservation(self, entry: Entry, agent_id: str) -> None:
        self._mirror.put("resv", f"{entry.entry_id} {agent_id}", None)

    def _back_to_waiting(self, entry: Entry) -> None:
        if entry.phase is Phase.RINGING and not entry.open_offers():
            entry.phase = Phase.WAITING
            self._save_entry(entry)

    # ============================================================== events

    async def consume(self, driver: PbxDriver) -> None:
        """Follow one driver's events (its own subscription) until closed."""
        events = aiter(driver.events())
        while not self._closed:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            try:
                self.handle(event)
            except Exception:
                # One bad event must never stop the ACD from following calls.
                log.exception(
                    "acd event handling failed", switch=driver.name, event_type=event.type
                )

    def handle(self, event: PbxEvent) -> None:
        if isinstance(event, Resynced):
            driver = self._drivers.get(event.switch)
            if driver is not None and driver.state is not LinkState.UP:
                # Both drivers publish Resynced while their link is still "syncing",
                # when every action is refused (PbxUnavailable, nothing sent). What a
                # resync does (hang up the phones of offers in flight at a crash, hold
                # music again, new offers) must wait for the link to be up, or the
                # phones ring on, the caller waits in silence and its agents are
                # never offered it again (seen live on Asterisk, test_acd_live (f)).
                self._spawn(self._resynced_when_up(event, driver))
                return
            self._resynced(event)
            return
        ref = self._legs.get(event.call_id)
        if ref is None:
            if self._originating > 0 and isinstance(event, Answered | HungUp | OriginateFailed):
                self._stash.setdefault(event.call_id, []).append(event)
                while len(self._stash) > STASH_MAX:
                    self._stash.popitem(last=False)
            return
        entry_id, agent_id = ref
        entry = self._entries.get(entry_id)
        if entry is None:
            if isinstance(event, HungUp | OriginateFailed):
                self._legs.pop(event.call_id, None)
            elif isinstance(event, Answered) and agent_id is not None:
                self._spawn(self._hangup_call(event.call_id))  # the caller is gone
            return
        if agent_id is None:
            self._caller_event(entry, event)
        else:
            self._agent_event(entry, agent_id, event)

    def _caller_event(self, entry: Entry, event: PbxEvent) -> None:
        if isinstance(event, HungUp):
            self._legs.pop(event.call_id, None)
            self._caller_gone(entry, self._now())
        elif isinstance(event, Unbridged):
            log.info("caller unbridged", call_id=entry.call_id, entry_id=entry.entry_id)

    def _agent_event(self, entry: Entry, agent_id: str, event: PbxEvent) -> None:
        now = self._now()
        offer = entry.offers.get(agent_id)
        if isinstance(event, Answered):
            if offer is None or not offer.open or entry.phase is not Phase.RINGING:
                # A late answer of a withdrawn offer: that phone must not stay up.
                self._spawn(self._hangup_call(event.call_id))
                return
            self._answered(entry, offer, event.call_id, now)
        elif isinstance(event, HungUp | OriginateFailed):
            self._legs.pop(event.call_id, None)
            if offer is not None and offer.open and entry.phase is Phase.RINGING:
                self._missed(entry, offer, now, expired=False)
            elif entry.agent_id == agent_id and entry.phase is Phase.CONNECTED:
                self._agent_left(entry, now)

    def _answered(self, entry: Entry, offer: OfferLeg, leg: str, now: float) -> None:
        closed = self._router.offer_answered(entry.entry_id, offer.agent_id, now)
        offer.open = False
        offer.leg = leg
        self._drop_reservation(entry, offer.agent_id)
        for c in closed:
            if c.outcome is Outcome.CANCELLED:
                self._withdraw(entry, c.reservation.agent_id, now)
        rec = self._agents[offer.agent_id]
        rec.leg = leg
        self._step(offer.agent_id, OfferAnswered(entry.call_id), now)
        entry.phase = Phase.CONNECTED
        entry.agent_id, entry.agent_leg = offer.agent_id, leg
        entry.answered_at = now
        entry.outcome = "connected"
        self._publish(
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
        self._save_entry(entry)
        self._chain(entry.leg, self._bridge(entry, leg))
        self._decide()  # agents freed from a ring-all take the next callers

    async def _bridge(self, entry: Entry, agent_leg: str) -> None:
        try:
            await self._drivers[entry.switch].bridge(entry.leg, agent_leg, keep_call=True)
        except Exception:
            # The caller left meanwhile (its HungUp ends the entry) or the switch
            # refused: the agent's phone must not stay up alone.
            await self._hangup_call(agent_leg)
            raise

    def _withdraw(self, entry: Entry, agent_id: str, now: float) -> None:
        """The engine takes an offer back (caller gone, another agent answered)."""
        offer = entry.offers.get(agent_id)
        if offer is None:
            return
        offer.open = False
        self._drop_reservation(entry, agent_id)
        if offer.leg is not None:
            self._spawn(self._hangup_call(offer.leg))
        rec = self._agents[agent_id]
        if rec.status.state is AgentState.RESERVED and rec.status.call_id == entry.call_id:
            self._step(agent_id, OfferCancelled(entry.call_id), now)

    def _missed(self, entry: Entry, offer: OfferLeg, now: float, *, expired: bool) -> None:
        offer.open = False
        if expired:
            self._router.expire(entry.entry_id, offer.agent_id, now)
            if offer.leg is not None:
                self._spawn(self._hangup_call(offer.leg))
        else:
            self._router.offer_missed(entry.entry_id, offer.agent_id, now)
        self._drop_reservation(entry, offer.agent_id)
        entry.missed += 1
        rec = self._agents[offer.agent_id]
        if rec.status.state is AgentState.RESERVED and rec.status.call_id == entry.call_id:
            self._step(offer.agent_id, OfferMissed(entry.call_id), now)
        self._back_to_waiting(entry)
        self._decide()

    def _agent_left(self, entry: Entry, now: float) -> None:
        entry.phase = Phase.AGENT_LEFT
        entry.agent_left_at = now
        if entry.answered_at is not None:
            entry.talk_s = now - entry.answered_at
        self._call_ended(entry, now)
        self._save_entry(entry)

    def _call_ended(self, entry: Entry, now: float) -> None:
        if entry.agent_id is None:
            return
        rec = self._agents[entry.agent_id]
        if rec.status.state is AgentState.ON_CALL and rec.status.call_id == entry.call_id:
            self._wrapping[entry.agent_id] = entry
            tr = self._step(entry.agent_id, CallEnded(entry.call_id), now)
            if tr.after.state is AgentState.AVAILABLE:  # no wrap-up in this queue
                self._wrapping.pop(entry.agent_id, None)
                entry.wrap_up_s = 0.0
            self._decide()

    def _caller_gone(self, entry: Entry, now: float) -> None:
        if entry.phase in (Phase.WAITING, Phase.RINGING):
            was = entry.phase.value
            self._router.remove_call(entry.entry_id, now)
            for offer in list(entry.offers.values()):
                if offer.open:
                    self._withdraw(entry, offer.agent_id, now)
            self._finish(entry, "abandoned", now)
            self._publish(
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
            if entry.agent_leg is not None and entry.agent_leg in self._legs:
                # The switch ends the agent's leg with the bridge; this is the net.
                self._spawn(self._hangup_call(entry.agent_leg))
            self._finish(entry, "answered", now)
        elif entry.phase is Phase.AGENT_LEFT:
            self._finish(entry, "answered", now)

    def _requeue(self, entry: Entry, now: float) -> None:
        """The agent hung up and the caller stayed (keep_call): it waits again."""
        self._finish(entry, "answered", now)
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
        )
        self._admit(fresh)

    def _finish(self, entry: Entry, outcome: str, now: float) -> None:
        entry.phase = Phase.ENDED
        entry.outcome = outcome
        entry.ended_at = now
        self._entries.pop(entry.entry_id, None)
        if self._by_call.get(entry.call_id) == entry.entry_id:
            del self._by_call[entry.call_id]
        if self._legs.get(entry.leg, ("", None))[0] == entry.entry_id:
            del self._legs[entry.leg]
        self._mirror.put("entry", entry.entry_id, None)
        self._history.entry(entry.to_row())
        self._finished[entry.queue].append(entry)

    def _save_entry(self, entry: Entry) -> None:
        self._mirror.put("entry", entry.entry_id, entry.to_live())

    def _save_entry_row(self, entry: Entry) -> None:
        if entry.phase is Phase.ENDED:
            self._history.entry(entry.to_row())
        else:
            self._save_entry(entry)

    # =============================================================== timers

    def tick(self) -> None:
        """Reservations past expiry, due wrap-ups, re-queues, timed overflow."""
        now = self._now()
        for r in self._router.expired_reservations(now):
            entry = self._entries.get(r.call_id)
            offer = entry.offers.get(r.agent_id) if entry is not None else None
            if entry is None or offer is None or not offer.open:
                self._router.expire(r.call_id, r.agent_id, now)
                continue
            log.warning("offer expired", agent_id=r.agent_id, call_id=entry.call_id)
            self._missed(entry, offer, now, expired=True)
        for rec in self._agents.values():
            st = rec.status
            if (
                st.state is AgentState.WRAP_UP
                and st.wrap_up_until is not None
                and now >= st.wrap_up_until
            ):
                self._step(rec.config.id, WrapUpElapsed(), now)
        for entry in list(self._entries.values()):
            if (
                entry.phase is Phase.AGENT_LEFT
                and entry.agent_left_at is not None
                and now - entry.agent_left_at >= REQUEUE_SETTLE_S
            ):
                self._requeue(entry, now)
        self._decide()

    async def run(self) -> None:
        """The timer loop and the reconcile loop, until :meth:`close`."""
        loop = asyncio.get_running_loop()
        next_reconcile = loop.time() + self._settings.reconcile_s
        while not self._closed:
            try:
                self.tick()
            except Exception:
                log.exception("acd tick failed")
            if loop.time() >= next_reconcile:
                next_reconcile = loop.time() + self._settings.reconcile_s
                self._spawn(self.reconcile_once())
            await asyncio.sleep(self._settings.tick_s)

    async def reconcile_once(self) -> int:
        """Free what no live call backs: reservations in Redis, and entries and
        agents whose legs the switches no longer list. Returns how many were freed."""
        live: set[str] = set()
        for name, driver in self._drivers.items():
            if driver.state is not LinkState.UP:
                return 0  # judged only on a full view of every switch
            try:
                async with asyncio.timeout(self._settings.storage_timeout_s):
                    live |= {c.call_id for c in await driver.live_calls()}
            except Exception as err:
                log.warning("acd reconcile: no channel list", switch=name, error=str(err))
                return 0
        stored: list[Reservation] = []
        if self._store is not None:
            try:
                stored = await self._store.reservations()
            except Exception as err:
                log.warning("acd reconcile: redis reservations not read", error=str(err))
        return self._reconcile(live, stored, self._now())

    def _reconcile(self, live: set[str], stored: Iterable[Reservation], now: float) -> int:
        freed = 0
        live_entries = {
            e.entry_id
            for e in self._entries.values()
            if e.leg in live or now - e.entered_at < LIST_GRACE_S
        }
        held = {(r.call_id, r.agent_id) for r in self._router.reservations()}
        for r, outcome in stale_reservations(
            [*stored, *self._router.reservations()], live_entries, now
        ):
            if (r.call_id, r.agent_id) in held and r.call_id in self._entries:
                entry = self._entries[r.call_id]
                if outcome is Outcome.CANCELLED:
                    log.warning("acd reconcile: caller gone", call_id=entry.call_id)
                    self._caller_gone(entry, now)
                    freed += 1
                # EXPIRED ones are the tick's.
            elif (r.call_id, r.agent_id) not in held:
                # In Redis only (a crashed engine's, or a lost delete): drop it,
                # and free the agent if it still holds that offer.
                self._mirror.put("resv", f"{r.call_id} {r.agent_id}", None)
                rec = self._agents.get(r.agent_id)
                if (
                    rec is not None
                    and rec.entry_id == r.call_id
                    and r.call_id not in self._entries
                    and rec.status.state is AgentState.RESERVED
                    and rec.status.call_id
                ):
                    self._step(r.agent_id, OfferCancelled(rec.status.call_id), now)
                    freed += 1
        for entry in list(self._entries.values()):
            if entry.entry_id in live_entries:
                continue
            log.warning("acd reconcile: caller leg gone", call_id=entry.call_id)
            self._caller_gone(entry, now)
            freed += 1
        for rec in self._agents.values():
            freed += self._free_if_orphan(rec, live, now)
        if freed:
            self._decide()
        return freed

    def _free_if_orphan(self, rec: _Agent, live: set[str], now: float) -> int:
        """An agent reserved or on a call that no live entry and no live leg backs."""
        st = rec.status
        if st.state not in (AgentState.RESERVED, AgentState.ON_CALL) or not rec.confirmed:
            return 0
        entry = self._entries.get(rec.entry_id)
        if entry is not None and (st.state is AgentState.RESERVED or rec.leg in live):
            return 0
        if now - st.since < LIST_GRACE_S:
            return 0
        assert st.call_id is not None
        log.warning("acd: agent freed, no live call", agent_id=rec.config.id, state=st.state.value)
        if st.state is AgentState.RESERVED:
            self._step(rec.config.id, OfferCancelled(st.call_id), now)
        else:
            if entry is not None:
                self._agent_left(entry, now)
            else:
                self._step(rec.config.id, CallEnded(st.call_id), now)
        return 1

    # ========================================================= restart safety

    async def restore(self) -> int:
        """Rebuild agents and entries from Redis at start (before the switches
        connect). Legs are confirmed on each switch's first ``Resynced``."""
        if self._store is None:
            return 0
        try:
            snap = await self._store.snapshot()
        except Exception as err:
            log.error(
                "acd: live state not read from redis; agents start logged out", error=str(err)
            )
            return 0
        now = self._now()
        for agent_id, stored in snap.agents.items():
            rec = self._agents.get(agent_id)
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
            rec.confirmed = status.state not in (AgentState.RESERVED, AgentState.ON_CALL)
            self._router.upsert_agent(view_of(rec.config, status))
        for data in snap.entries:
            try:
                entry = Entry.from_live(data)
            except (KeyError, TypeError, ValueError) as err:
                log.warning("acd: stored queue entry unreadable", error=str(err))
                continue
            if entry.queue not in self._queues or entry.switch not in self._drivers:
                continue
            self._entries[entry.entry_id] = entry
            self._by_call[entry.call_id] = entry.entry_id
            self._legs[entry.leg] = (entry.entry_id, None)
        for rec in self._agents.values():
            if rec.status.state in (AgentState.RESERVED, AgentState.ON_CALL):
                rec.entry_id = next(
                    (e.entry_id for e in self._entries.values() if e.call_id == rec.status.call_id),
                    "",
                )
        log.info("acd restored", agents=len(snap.agents), entries=len(self._entries), at=now)
        return len(snap.agents) + len(snap.entries)

    async def _resynced_when_up(self, event: Resynced, driver: PbxDriver) -> None:
        while driver.state is not LinkState.UP:
            if self._closed:
                return
            await asyncio.sleep(self._settings.tick_s)
        self._resynced(event)

    def _resynced(self, event: Resynced) -> None:
        """A switch's channel list after (re)connect: confirm or end what was restored."""
        now = self._now()
        live = {c.call_id for c in event.live}
        answered = {c.call_id for c in event.live if c.state == "answered"}
        for entry in list(self._entries.values()):
            if entry.switch != event.switch or entry.confirmed:
                continue
            entry.confirmed = True
            if entry.leg not in live:
                outcome = "answered" if entry.answered_at is not None else "abandoned"
                for offer in entry.offers.values():
                    if offer.leg in live:
                        self._spawn(self._hangup_call(offer.leg))
                self._release_restored_agents(entry, now)
                self._finish(entry, outcome, now)
                continue
            if entry.phase in (Phase.WAITING, Phase.RINGING):
                # Offers in flight at the crash are withdrawn; the caller keeps its place.
                for offer in entry.offers.values():
                    if offer.leg is not None and offer.leg in live:
                        self._spawn(self._hangup_call(offer.leg))
                self._release_restored_agents(entry, now)
                entry.offers.clear()
                entry.phase = Phase.WAITING
                self._entries.pop(entry.entry_id)
                self._admit_restored(entry)
            elif entry.phase is Phase.CONNECTED:
                agent = self._agents.get(entry.agent_id or "")
                if agent is not None and entry.agent_leg in answered:
                    agent.confirmed = True
                    agent.leg = entry.agent_leg
                    self._legs[entry.agent_leg] = (entry.entry_id, entry.agent_id)
                else:
                    if agent is not None:
                        agent.confirmed = True
                    self._agent_left(entry, now)
            elif entry.phase is Phase.AGENT_LEFT:
                self._requeue(entry, now)
        for rec in self._agents.values():
            if rec.confirmed or (rec.switch and rec.switch != event.switch):
                continue
            rec.confirmed = True
            st = rec.status
            if st.state in (AgentState.RESERVED, AgentState.ON_CALL) and (
                rec.entry_id not in self._entries or rec.leg not in live
            ):
                log.warning("acd: agent freed after restart", agent_id=rec.config.id)
                assert st.call_id is not None
                if st.state is AgentState.RESERVED:
                    self._step(rec.config.id, OfferCancelled(st.call_id), now)
                else:
                    self._step(rec.config.id, CallEnded(st.call_id), now)
        self._decide()

    def _release_restored_agents(self, entry: Entry, now: float) -> None:
        for rec in self._agents.values():
            if rec.entry_id != entry.entry_id:
                continue
            rec.confirmed = True
            st = rec.status
            if st.call_id is None:
                continue
            if st.state is AgentState.RESERVED:
                self._step(rec.config.id, OfferCancelled(st.call_id), now)
            elif st.state is AgentState.ON_CALL:
                self._step(rec.config.id, CallEnded(st.call_id), now)

    def _admit_restored(self, entry: Entry) -> None:
        entry.confirmed = True
        self._entries[entry.entry_id] = entry
        self._router.add_call(
            WaitingCall(
                call_id=entry.entry_id,
                queue=entry.queue,
                entered_at=entry.entered_at,
                priority=entry.priority,
                tags=entry.tags,
                intent=entry.intent,
                features=entry.features,
                customer=entry.customer,
            )
        )
        self._save_entry(entry)
        self._chain(entry.leg, self._moh(entry, self._queues[entry.queue].moh))

    # ============================================================ plumbing

    def _publish(self, data: dict[str, Any]) -> None:
        self._events.put(data)

    async def _hangup_call(self, call_id: str) -> None:
        with contextlib.suppress(EngineError):
            await self._calls.hangup(call_id)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("acd switch action failed", error=repr(task.exception()))

    def _chain(self, key: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` after the previous action on ``key`` (one caller's actions in order)."""
        previous = self._chains.get(key)

        async def after() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(previous)
            await coro

        task = asyncio.get_running_loop().create_task(after())
        self._chains[key] = task
        self._tasks.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            if self._chains.get(key) is t:
                del self._chains[key]
            self._done(t)

        task.add_done_callback(finished)

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait for the switch actions in flight (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    def close(self) -> None:
        self._closed = True
