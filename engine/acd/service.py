"""The ACD service: the only place in agents/acd with side effects.

This module is the facade (the API's and the app's entry point); the work is
done by small parts it composes, each in its own module (docs/acd.md
"Module map"): ``state`` (what they share), ``records`` (Redis, PostgreSQL,
events), ``actions`` (switch actions as tasks), ``agent_desk`` (FSM steps),
``dispatch`` (running the router), ``offers`` (ring, answer, miss, bridge),
``lifecycle`` (admit, agent/caller leaving, re-queue, finish), ``following``
(switch events), ``timers``, ``reconcile`` and ``restore`` (restart safety).

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
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from engine.acd import views
from engine.acd.actions import CallPort, SwitchActions
from engine.acd.agent_desk import AgentDesk
from engine.acd.dispatch import Dispatcher
from engine.acd.endpoints import check_call_data, endpoint_problems
from engine.acd.entries import Entry, Phase
from engine.acd.errors import (
    CallNotAnswered,
    InvalidQueueCall,
    NoQueueForIntent,
    QueueNotOwned,
)
from engine.acd.following import EventFollower
from engine.acd.history import AcdHistory
from engine.acd.lifecycle import EntryLifecycle
from engine.acd.live_store import AcdLiveStore
from engine.acd.metrics import QueueMetrics
from engine.acd.model import QueueSpec, priority_for, queue_for_intent, view_of
from engine.acd.offers import Offers
from engine.acd.parts import AcdParts
from engine.acd.reconcile import Reconciler
from engine.acd.records import AcdRecords, LiveSink, Publish
from engine.acd.reservations import Reservation
from engine.acd.restore import FinishedReader, Restorer
from engine.acd.routing import CallAlreadyQueued, Router
from engine.acd.scoring import Scorer
from engine.acd.state import AcdSettings, AcdState, AgentRecord
from engine.acd.strategy_split import StrategySplitter
from engine.acd.supervisor import SpySession, SupervisorDesk
from engine.acd.timers import Timers
from engine.agents.fsm import AgentFsm, Login, Logout, Pause, Ready
from engine.agents.model import AgentConfig, AgentStatus
from engine.calls.errors import CallAlreadyEnded
from engine.calls.model import CallState
from engine.core import clock
from engine.core.errors import ConfigError
from engine.pbx.base import LiveChannel, PbxDriver, PbxEvent, Resynced, SpyMode
from engine.telemetry.live import Source

MAX_PRIORITY = 99  # a priority given with the call (an IVR step's override)

__all__ = ["AcdService", "AcdSettings", "CallPort", "LiveSink", "Publish"]


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
        owns_queue: Callable[[str], bool] = lambda queue: True,
    ) -> None:
        # Several engines: only the owner of lease ``queue:<name>`` takes callers into that
        # queue and so dispatches them (a local read, no I/O; a lone engine owns them all).
        self._owns_queue = owns_queue
        kinds = {name: d.kind for name, d in drivers.items()}
        problems = endpoint_problems(agents, kinds)
        if problems:
            raise ConfigError("engine.toml", problems)
        self._store = store
        self._finished: FinishedReader | None = None
        self._catch_up: asyncio.Task[None] | None = None  # a takeover's KPI read (take_over)
        s = self._state = AcdState(settings=settings, queues=queues, kinds=kinds, now=now)
        router = self._router = Router(queues, scorer=scorer, seed=settings.seed)
        self._split = StrategySplitter(settings.seed)
        for cfg in agents:
            status = AgentStatus(agent_id=cfg.id, since=s.now())
            s.agents[cfg.id] = AgentRecord(cfg, status)
            router.upsert_agent(view_of(cfg, status))
        records = AcdRecords(events=events, history=history, mirror=mirror)
        actions = self._actions = SwitchActions(calls=calls, drivers=drivers)
        desk = self._desk = AgentDesk(
            state=s, fsm=AgentFsm(settings.pause_reasons), router=router, records=records
        )
        # The parts call back into the dispatcher (route again) and the follower
        # (replay a stashed event) through these two, built after them.
        offers = Offers(
            state=s,
            router=router,
            desk=desk,
            records=records,
            actions=actions,
            decide=self._decide,
            replay=self.handle,
        )
        life = self._life = EntryLifecycle(
            state=s,
            router=router,
            desk=desk,
            offers=offers,
            records=records,
            actions=actions,
            decide=self._decide,
        )
        self._dispatch = Dispatcher(
            state=s, router=router, offers=offers, lifecycle=life, records=records, actions=actions
        )
        parts = AcdParts(
            state=s,
            router=router,
            desk=desk,
            offers=offers,
            lifecycle=life,
            records=records,
            actions=actions,
            decide=self._decide,
        )
        self.supervisor = SupervisorDesk(
            state=s, router=router, desk=desk, records=records, actions=actions, decide=self._decide
        )
        self._restorer = Restorer(parts)
        self._reconciler = Reconciler(parts)
        self._timers = Timers(parts)
        self._follower = EventFollower(
            state=s,
            offers=offers,
            lifecycle=life,
            actions=actions,
            resynced=self._restorer.resynced,
            supervisor=self.supervisor.handle,
        )

    def _decide(self) -> None:
        self._dispatch.decide()

    # ============================================================== queries

    @property
    def queues(self) -> Mapping[str, QueueSpec]:
        return self._state.queues

    @property
    def intents(self) -> Mapping[str, str]:
        return self._state.settings.intents

    def agent_ids(self) -> list[str]:
        return sorted(self._state.agents)

    def status(self, agent_id: str) -> AgentStatus:
        return self._state.agent(agent_id).status

    def serves(self, queue: str) -> bool:
        """Whether this engine takes callers into ``queue`` now (a local read): it holds the
        queue's lease and has rebuilt the queue after taking it over (several engines; a lone
        engine serves every queue). A campaign runs only where its queue is served."""
        return self._owns_queue(queue)

    def entry_of(self, call_id: str) -> Entry | None:
        entry_id = self._state.by_call.get(call_id)
        return self._state.entries.get(entry_id) if entry_id else None

    def agent_of_call(self, call_id: str) -> str | None:
        """The agent a call belongs to: the agent's own leg, the caller it was offered or is
        talking to, or the call it is wrapping up (the API's agent-role checks)."""
        s = self._state
        leg = s.legs.get(call_id)
        if leg is not None and leg[1] is not None:
            return leg[1]
        entry = self.entry_of(call_id)
        if entry is not None and entry.agent_id is not None:
            return entry.agent_id
        for rec in s.agents.values():
            if rec.status.call_id == call_id:
                return rec.status.agent_id
        return None

    def withdraw(self, call_id: str) -> bool:
        """Take a caller out of its queue before an agent took it, as an abandon (the
        dialer's safe-harbour release; the caller's leg is the dialer's to end). False when
        it is not queued or an agent has it already."""
        entry = self.entry_of(call_id)
        if entry is None or entry.phase not in (Phase.WAITING, Phase.RINGING):
            return False
        self._life.caller_gone(entry, self._state.now())
        return True

    def release(self, call_id: str) -> bool:
        """The caller's call was redirected elsewhere (``POST /v1/calls/{id}/redirect``, e.g.
        an agent's blind transfer, or a supervisor sending a waiting caller to voicemail): it
        leaves its queue, and the queue never acts on it again. Waiting or ringing: its offers
        are withdrawn and the entry ends ``redirected``; talking to an agent (or the agent had
        left): the entry ends ``answered`` and the agent goes to wrap-up. The caller's call is
        never hung up by the queue (the queue's ``after_agent_hangup = "hangup"`` did that
        to a transferred caller once the agent's leg left the bridge). False when it is not
        queued."""
        entry = self.entry_of(call_id)
        if entry is None:
            return False
        self._life.redirected(entry, self._state.now())
        return True

    def agent_configs(self) -> list[AgentConfig]:
        return [rec.config for rec in self._state.agents.values()]

    def entries(self, queue: str | None = None) -> list[Entry]:
        return self._state.sorted_entries(queue)

    def metrics_source(self, cap: int) -> Source:
        """Per-queue metrics read at scrape time (engine/acd/metrics.py)."""
        m = QueueMetrics(self._state, cap)
        return Source("queues", m.families, m.prepare, m.budget)

    def agent_view(self, agent_id: str) -> dict[str, Any]:
        return views.agent_view(self._state, agent_id)

    def queue_view(self, name: str) -> dict[str, Any]:
        return views.queue_view(self._state, name)

    # ====================================================== agent commands

    def login(self, agent_id: str) -> dict[str, Any]:
        self._desk.step(agent_id, Login(), self._state.now())
        self._decide()
        return self.agent_view(agent_id)

    def logout(self, agent_id: str) -> dict[str, Any]:
        self._desk.step(agent_id, Logout(), self._state.now())
        return self.agent_view(agent_id)

    def ready(self, agent_id: str) -> dict[str, Any]:
        self._desk.step(agent_id, Ready(), self._state.now())
        self._decide()
        return self.agent_view(agent_id)

    def pause(self, agent_id: str, reason: str) -> dict[str, Any]:
        self._desk.step(agent_id, Pause(reason), self._state.now())
        return self.agent_view(agent_id)

    # ================================================== supervisor controls

    async def spy(
        self, agent_id: str, mode: SpyMode, endpoint: str, actor: str
    ) -> tuple[SpySession, bool]:
        """Listen / whisper / barge on the agent's call (docs/supervisor.md)."""
        return await self.supervisor.spy(agent_id, mode, endpoint, actor)

    async def stop_spy(self, agent_id: str) -> list[SpySession]:
        return await self.supervisor.stop(agent_id)

    def force(
        self, agent_id: str, action: str, reason: str, actor: str, note: str = ""
    ) -> dict[str, Any]:
        """A supervisor's pause or logout, now or when the agent's call is over."""
        result = self.supervisor.force(agent_id, action, reason, actor, note)
        return {**self.agent_view(agent_id), "supervisor_action": {"action": action, **result}}

    def move(self, agent_id: str, source: str, target: str, actor: str) -> dict[str, Any]:
        """Move the agent between queues (its roster; live, persisted, announced)."""
        self.supervisor.move(agent_id, source, target, actor)
        return self.agent_view(agent_id)

    # ======================================================= queue a call

    def check_entry(
        self,
        *,
        queue: str | None = None,
        tags: Sequence[str] = (),
        intent: str | None = None,
        features: Sequence[float] | None = None,
        customer: Mapping[str, str] | None = None,
        priority: int | None = None,
    ) -> QueueSpec:
        """The queue a call with this data would enter; raises what :meth:`enter`
        would for the data (no I/O: the IVR checks before it lets the call go)."""
        s = self._state
        problems = check_call_data(tags, intent, dict(customer or {}))
        if features is not None:
            dims = {len(a.config.capability) for a in s.agents.values() if a.config.capability}
            if dims and len(features) not in dims:
                problems.append(
                    f"features: {len(features)} numbers, expected {min(dims)} (the length of "
                    "the agents' capability vectors)"
                )
        if priority is not None and not 1 <= priority <= MAX_PRIORITY:
            problems.append(f"priority: expected 1-{MAX_PRIORITY} (got {priority})")
        if problems:
            raise InvalidQueueCall("; ".join(problems), details={"problems": problems})
        name = queue if queue is not None else queue_for_intent(intent, s.settings.intents)
        if name is None:
            raise NoQueueForIntent(
                f"intent {intent!r} maps to no queue ([acd] intents) and no queue was given",
                details={"intent": intent, "intents": dict(s.settings.intents)},
            )
        return s.queue(name)

    def feature_sizes(self) -> frozenset[int]:
        """The lengths of the agents' capability vectors (what ``features`` must match)."""
        return frozenset(
            len(a.config.capability) for a in self._state.agents.values() if a.config.capability
        )

    async def enter(
        self,
        call_id: str,
        *,
        queue: str | None = None,
        tags: Iterable[str] = (),
        intent: str | None = None,
        features: Sequence[float] | None = None,
        customer: Mapping[str, str] | None = None,
        priority: int | None = None,
        only_agent: str | None = None,
    ) -> Entry:
        """A live, answered call enters a queue (the API, or an IVR ``queue`` step).

        ``only_agent``: the call is offered to that agent alone (a preview-mode campaign call,
        for the agent who accepted it); every other agent counts as having missed it.

        ``queue`` wins; without it the intent's queue (``[acd] intents``). The
        priority is the highest the tags map to, unless ``priority`` is given.
        """
        s = self._state
        tags = tuple(tags)
        customer = dict(customer or {})
        q = self.check_entry(
            queue=queue,
            tags=tags,
            intent=intent,
            features=features,
            customer=customer,
            priority=priority,
        )
        if not self._owns_queue(q.name):
            raise QueueNotOwned(
                f"queue {q.name!r} is owned by another engine (lease queue:{q.name}); "
                "send the call to its owner or retry",
                details={
                    "queue": q.name,
                    "lease": f"queue:{q.name}",
                    "retry_after_s": QueueNotOwned.retry_after_s,
                },
            )
        if call_id in s.by_call:
            raise CallAlreadyQueued(
                f"call {call_id} is already in queue {self.entry_of(call_id).queue}",  # type: ignore[union-attr]
                details={"call_id": call_id},
            )
        call = await self._actions.calls.get(call_id)
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
        if call_id in s.by_call:  # entered meanwhile (the await above)
            raise CallAlreadyQueued(
                f"call {call_id} is already queued", details={"call_id": call_id}
            )
        now = s.now()
        entry = Entry(
            entry_id=uuid.uuid4().hex,
            call_id=call_id,
            leg=call.current_leg,
            switch=call.switch,
            queue=q.name,
            priority=priority
            if priority is not None
            else priority_for(tags, s.settings.priorities, s.settings.default_priority),
            entered_at=now,
            tags=tags,
            intent=intent,
            features=tuple(float(f) for f in features) if features is not None else None,
            customer=customer,
            # Given last, once the call is admitted: a refused call takes no turn of the split.
            strategy=self._split.assign(q).value,
            excluded=frozenset(a for a in s.agents if a != only_agent)
            if only_agent is not None
            else frozenset(),
        )
        self._life.admit(entry)
        return entry

    # ================================================ events, timers, restart

    async def consume(self, driver: PbxDriver) -> None:
        """Follow one driver's events (its own subscription) until closed."""
        await self._follower.consume(driver)

    def handle(self, event: PbxEvent) -> None:
        self._follower.handle(event)

    def tick(self) -> None:
        """Reservations past expiry, due wrap-ups, re-queues, timed overflow."""
        self._timers.tick()

    async def run(self) -> None:
        """The timer loop and the reconcile loop, until :meth:`close`."""
        await self._timers.run(self.reconcile_once)

    async def reconcile_once(self) -> int:
        """Free what no live call backs: reservations in Redis, and entries and
        agents whose legs the switches no longer list. Returns how many were freed."""
        return await self._reconciler.reconcile_once(self._store)

    def _reconcile(self, live: set[str], stored: Iterable[Reservation], now: float) -> int:
        return self._reconciler.reconcile(live, stored, now)

    async def restore(self, *, tries: int = 1, retry_s: float = 1.0) -> int:
        """Rebuild agents and entries from Redis at start (before the switches
        connect). Legs are confirmed on each switch's first ``Resynced``. The read is tried
        up to ``tries`` times, ``retry_s`` apart; then the agents start logged out."""
        return await self._restorer.restore(self._store, tries=tries, retry_s=retry_s)

    async def restore_finished(self, read: FinishedReader) -> int:
        """Read back each queue's KPI window (sums of ``queue_entries`` per minute) at start,
        so the live KPIs survive a restart. Returns how many entries were read back."""
        self._finished = read  # a takeover reads the window again (take_over)
        return await self._restorer.restore_finished(read)

    async def take_over(self, live: Mapping[str, Sequence[LiveChannel]]) -> int:
        """Several engines: this engine just took over queues (their owner died or handed
        them back). The same recovery as a restart: agents and waiting callers are rebuilt
        from Redis (the previous owner's mirror), then each switch's channel list (``live``,
        switch -> channels, read by the caller) confirms or ends their legs, so no agent stays
        reserved or on a call without a live call. Returns how many were restored.

        The KPI windows are brought up to date from PostgreSQL too, with the reader the start
        used (:meth:`restore_finished`): what the previous owner ended since this engine's
        last read, leaving out what this engine counted itself; without it the new owner's
        live KPIs of the queue had nothing of the previous owner's. That read runs in the
        background, after the channel lists: the queues are served when this returns
        (engine/cluster/takeover.py), and serving never waits on PostgreSQL (black-holed, it
        would take a storage timeout per queue). What the lists end is counted here and left
        out of the read by id (``AcdState.ended_here``), the live entries by being live."""
        restored = await self.restore()
        self.confirm(live)
        if self._finished is not None:
            self._catch_up = asyncio.create_task(
                self._read_windows(self._finished, self._catch_up), name="acd-kpi-catch-up"
            )
        return restored

    async def _read_windows(self, read: FinishedReader, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            # One read at a time: each starts where the previous one ended.
            await asyncio.gather(before, return_exceptions=True)
        if not self._state.closed:
            await self._restorer.read_windows(
                read, "the queue's KPIs go on without what another engine ended"
            )

    async def kpis_caught_up(self) -> None:
        """Wait for a takeover's KPI read (tests; a no-op when none is out)."""
        if self._catch_up is not None:
            await asyncio.gather(self._catch_up, return_exceptions=True)

    def confirm(self, live: Mapping[str, Sequence[LiveChannel]]) -> None:
        """Confirm or end what was restored and is still unconfirmed, from these switches'
        channel lists (switch -> channels), as each switch's ``Resynced`` after a restart
        does; what is confirmed already is left as it is."""
        for switch, channels in live.items():
            self.handle(
                Resynced(switch=switch, call_id="", ts=self._state.now(), live=tuple(channels))
            )

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait for the switch actions in flight (tests, shutdown)."""
        await self._actions.settle(timeout_s)

    def close(self) -> None:
        self._state.closed = True
        self._state.held.set()
        if self._catch_up is not None:
            self._catch_up.cancel()
