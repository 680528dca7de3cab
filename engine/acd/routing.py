"""The router: which available agent takes which waiting call. Pure, incremental, deterministic.

:class:`Router` is fed what changed (agents via :meth:`Router.upsert_agent`,
calls via :meth:`Router.add_call` and the offer outcomes) and :meth:`Router.decide`
returns the assignments, exits and overflow steps due at ``now``. It keeps
indexes so one decision touches only what the event can change:

- agents: per queue, strategy and entry stage (:mod:`engine.acd.eligibility`), a pool
  of the available agents sorted by that strategy (:mod:`engine.acd.pools`; a queue that
  splits its callers between strategies keeps one set of pools per strategy, and each call
  is routed by its own, ``WaitingCall.strategy``);
  which queues an agent can serve is found through a skill -> queues index;
- calls: per queue and priority, the waiting calls oldest first.

Order: higher priority first, then longest waiting (then arrival order). A
decision never leaves an available agent and a waiting call that fit each
other unmatched, and an agent always gets the best call it fits, so a
higher-priority caller is never passed over for a lower one the same agent fits.
:func:`route` is the same thing as one plain function of calls, agents and now.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from engine.acd.eligibility import QueuePlan, plan
from engine.acd.model import AgentView, QueueSpec, Strategy, WaitingCall
from engine.acd.pools import Key, Pool, key_kind, pool_key
from engine.acd.reservations import Closed, Outcome, Reservation, ReservationBook
from engine.acd.scoring import Scorer
from engine.acd.strategies import AgentRows, Chooser
from engine.core.errors import Conflict, InvalidRequest, NotFound

# An offer's reservation outlives the queue's ring timeout by this much, so the
# switch's own no-answer normally ends it and expiry is only the safety net.
RESERVATION_GRACE_S = 5.0


class UnknownQueue(InvalidRequest):
    error_id = "unknown-queue"


class CallNotQueued(NotFound):
    error_id = "call-not-queued"


class CallAlreadyQueued(Conflict):
    error_id = "call-already-queued"


class StrategyNotInQueue(InvalidRequest):
    error_id = "strategy-not-in-queue"


@dataclass(frozen=True, slots=True)
class Assignment:
    call_id: str
    queue: str
    agent_ids: tuple[str, ...]  # one agent, or every agent rung by ring-all
    expires_at: float


@dataclass(frozen=True, slots=True)
class Exit:
    """The call leaves the queue: ``overflow-ivr`` (to ``flow``) or ``max-wait``."""

    call_id: str
    queue: str
    reason: str
    flow: str | None


@dataclass(frozen=True, slots=True)
class Overflowed:
    """The call reached overflow stage ``stage``: more agents may now take it."""

    call_id: str
    queue: str
    stage: int
    after_s: float


@dataclass(frozen=True, slots=True)
class Decision:
    assignments: tuple[Assignment, ...] = ()
    exits: tuple[Exit, ...] = ()
    overflowed: tuple[Overflowed, ...] = ()

    def as_map(self) -> dict[str, tuple[str, ...]]:
        return {a.call_id: a.agent_ids for a in self.assignments}


@dataclass(slots=True)
class _Agent:
    view: AgentView
    row: int
    entry: dict[str, int] = field(default_factory=dict)  # queue -> entry stage
    level: dict[str, int] = field(default_factory=dict)  # queue -> summed required levels
    # (queue, key kind) -> the agent's key in that pool, while pooled
    keys: dict[tuple[str, str], Key] = field(default_factory=dict)


@dataclass(slots=True)
class _Call:
    call: WaitingCall
    seq: int
    stage: int = 0
    waiting: bool = True  # False while offered (ringing)
    exit_due: bool = False
    missed: set[str] = field(default_factory=set)

    @property
    def order(self) -> tuple[int, float, int]:
        return (-self.call.priority, self.call.entered_at, self.seq)


class _Waiting:
    """One queue's waiting calls: per priority, ``(entered_at, seq, call_id)`` oldest first."""

    __slots__ = ("buckets", "prios")

    def __init__(self) -> None:
        self.buckets: dict[int, list[tuple[float, int, str]]] = {}
        self.prios: list[int] = []  # descending

    def add(self, prio: int, entry: tuple[float, int, str]) -> None:
        bucket = self.buckets.get(prio)
        if bucket is None:
            bucket = self.buckets[prio] = []
            self.prios = sorted(self.buckets, reverse=True)
        # Arrivals are in time order, so this is an append; a re-offered call
        # goes back to its old place (it keeps entered_at): the head.
        if not bucket or bucket[-1] < entry:
            bucket.append(entry)
        else:
            insort(bucket, entry)

    def remove(self, prio: int, entry: tuple[float, int, str]) -> None:
        bucket = self.buckets[prio]
        i = bisect_left(bucket, entry)
        if i < len(bucket) and bucket[i] == entry:
            del bucket[i]


class Router:
    def __init__(
        self,
        queues: Sequence[QueueSpec],
        *,
        scorer: Scorer | None = None,
        seed: int = 0,
        reservation_grace_s: float = RESERVATION_GRACE_S,
    ) -> None:
        self._queues = {q.name: q for q in queues}
        self._plans: dict[str, QueuePlan] = {q.name: plan(q) for q in queues}
        self._base = {q.name: dict(q.skills) for q in queues}
        for p in self._plans.values():
            for fallbacks in p.fallbacks:
                for fb in fallbacks:
                    if fb not in self._queues:
                        raise UnknownQueue(f"queue {p.name}: fallback queue {fb!r} is not defined")
        # Skill index: which queues an agent holding a skill might serve, and
        # the queues any agent may serve at some stage (no minimum left).
        self._by_skill: dict[str, list[str]] = {}
        self._open_queues: list[str] = []
        for name, p in self._plans.items():
            involved = set(p.skills_involved())
            for fallbacks in p.fallbacks:
                for fb in fallbacks:
                    involved |= {s for s, m in self._base[fb].items() if m > 0}
            if any(not any(v > 0 for v in m.values()) for m in p.minimums) or any(
                not any(v > 0 for v in self._base[fb].values()) for fbs in p.fallbacks for fb in fbs
            ):
                self._open_queues.append(name)
            for s in sorted(involved):
                self._by_skill.setdefault(s, []).append(name)
        # queue -> key kind -> one pool per stage; the kind's first strategy makes its keys.
        self._kinds: dict[str, dict[str, Strategy]] = {}
        for q in queues:
            kinds = self._kinds[q.name] = {}
            for st in q.strategies:
                kinds.setdefault(key_kind(st), st)
        self._pools: dict[str, dict[str, list[Pool]]] = {
            name: {
                kind: [Pool(st) for _ in range(p.stages)] for kind, st in self._kinds[name].items()
            }
            for name, p in self._plans.items()
        }
        self._waiting = {name: _Waiting() for name in self._queues}
        self._agents: dict[str, _Agent] = {}
        self._calls: dict[str, _Call] = {}
        self._book = ReservationBook()
        self._chooser = Chooser(self._queues, scorer, seed)
        self._rows = AgentRows()  # numpy rows for the weighted and scored strategies
        self._grace = reservation_grace_s
        self._seq = 0
        self._now = float("-inf")
        self._dirty_agents: dict[str, None] = {}
        self._dirty_calls: dict[str, None] = {}
        self._stage_heap: list[tuple[float, int, str, int]] = []
        self._exit_heap: list[tuple[float, int, str]] = []

    # ----------------------------------------------------------------- agents

    def upsert_agent(self, view: AgentView) -> list[Closed]:
        """Add or update an agent. An agent reported available while the router
        holds a reservation for it ends that reservation (cancelled)."""
        rec = self._agents.get(view.agent_id)
        closed: list[Closed] = []
        if rec is None:
            rec = _Agent(view, len(self._agents))
            self._agents[view.agent_id] = rec
            self._rows.grow(rec.row + 1)
            self._eligibility(rec)
        else:
            self._unpool(rec)
            old = rec.view
            rec.view = view
            if old.skills != view.skills or old.queues != view.queues:
                self._eligibility(rec)
            held = self._book.for_agent(view.agent_id)
            if held is not None and view.available:
                closed += self._end_offer(held.call_id, view.agent_id, Outcome.CANCELLED)
        self._rows.set(rec.row, view)
        if view.available and self._book.for_agent(view.agent_id) is None:
            self._pool(rec)
            self._dirty_agents[view.agent_id] = None
        return closed

    def remove_agent(self, agent_id: str) -> list[Closed]:
        rec = self._agents.get(agent_id)
        if rec is None:
            return []
        closed: list[Closed] = []
        held = self._book.for_agent(agent_id)
        if held is not None:
            closed += self._end_offer(held.call_id, agent_id, Outcome.CANCELLED)
        self._unpool(rec)
        rec.view = replace(rec.view, available=False)
        self._dirty_agents.pop(agent_id, None)
        return closed

    def _eligibility(self, rec: _Agent) -> None:
        skills = rec.view.skills
        candidates = set(self._open_queues)
        for s in skills:
            candidates.update(self._by_skill.get(s, ()))
        rec.entry.clear()
        rec.level.clear()
        for q in sorted(candidates):
            stage = self._plans[q].entry_stage(skills, self._base, rec.view.queues)
            if stage is not None:
                rec.entry[q] = stage
                rec.level[q] = sum(skills.get(s, 0) for s in self._base[q])

    def _pool(self, rec: _Agent) -> None:
        for q, stage in rec.entry.items():
            for kind, st in self._kinds[q].items():
                key = pool_key(st, rec.view, rec.level[q], rec.row)
                self._pools[q][kind][stage].add(key)
                rec.keys[q, kind] = key

    def _unpool(self, rec: _Agent) -> None:
        for (q, kind), key in rec.keys.items():
            self._pools[q][kind][rec.entry[q]].remove(key)
        rec.keys.clear()

    # ------------------------------------------------------------------ calls

    def add_call(self, call: WaitingCall) -> None:
        if call.queue not in self._queues:
            raise UnknownQueue(f"no queue named {call.queue!r}", details={"queue": call.queue})
        if call.call_id in self._calls:
            raise CallAlreadyQueued(f"call {call.call_id} is already queued")
        runs = self._queues[call.queue].strategies
        if call.strategy is not None and call.strategy not in runs:
            raise StrategyNotInQueue(
                f"queue {call.queue} does not run strategy {call.strategy.value!r} "
                f"(it runs {', '.join(s.value for s in runs)})",
                details={"queue": call.queue, "strategy": call.strategy.value},
            )
        self._seq += 1
        rec = _Call(call, self._seq, missed=set(call.missed_by))
        self._calls[call.call_id] = rec
        p = self._plans[call.queue]
        if p.exit_after_s is not None:
            heapq.heappush(
                self._exit_heap, (call.entered_at + p.exit_after_s, rec.seq, call.call_id)
            )
        self._schedule_stage(rec, 1)
        self._to_waiting(rec)

    def remove_call(self, call_id: str, now: float) -> list[Closed]:
        """The call left (abandoned, connected elsewhere, transferred): its offers are cancelled."""
        rec = self._calls.pop(call_id, None)
        if rec is None:
            return []
        closed = [
            c
            for r in self._book.for_call(call_id)
            if (c := self._book.close(call_id, r.agent_id, Outcome.CANCELLED, now)) is not None
        ]
        if rec.waiting:
            self._waiting[rec.call.queue].remove(rec.call.priority, self._entry(rec))
        self._dirty_calls.pop(call_id, None)
        return closed

    def waiting_calls(self, queue: str | None = None) -> list[WaitingCall]:
        """Waiting (not ringing) calls in the order they will be served."""
        recs = [
            r
            for r in self._calls.values()
            if r.waiting and (queue is None or r.call.queue == queue)
        ]
        return [r.call for r in sorted(recs, key=lambda r: r.order)]

    def call(self, call_id: str) -> WaitingCall | None:
        rec = self._calls.get(call_id)
        return rec.call if rec is not None else None

    def _entry(self, rec: _Call) -> tuple[float, int, str]:
        return (rec.call.entered_at, rec.seq, rec.call.call_id)

    def _to_waiting(self, rec: _Call) -> None:
        rec.waiting = True
        self._waiting[rec.call.queue].add(rec.call.priority, self._entry(rec))
        self._dirty_calls[rec.call.call_id] = None
        if rec.exit_due:
            heapq.heappush(self._exit_heap, (self._now, rec.seq, rec.call.call_id))

    def _schedule_stage(self, rec: _Call, stage: int) -> None:
        p = self._plans[rec.call.queue]
        if stage < p.stages:
            due = rec.call.entered_at + p.thresholds[stage]
            heapq.heappush(self._stage_heap, (due, rec.seq, rec.call.call_id, stage))

    # ----------------------------------------------------------------- offers

    def offer_answered(self, call_id: str, agent_id: str, now: float) -> list[Closed]:
        """The agent answered: the call leaves the queue; other agents rung for it are cancelled."""
        closed = self._book.close(call_id, agent_id, Outcome.ANSWERED, now)
        if closed is None:
            raise CallNotQueued(
                f"call {call_id} has no open offer to agent {agent_id}",
                details={"call_id": call_id, "agent_id": agent_id},
            )
        return [closed, *self.remove_call(call_id, now)]

    def offer_missed(self, call_id: str, agent_id: str, now: float) -> list[Closed]:
        return self._end_offer(call_id, agent_id, Outcome.MISSED, now)

    def offer_cancelled(self, call_id: str, agent_id: str, now: float) -> list[Closed]:
        return self._end_offer(call_id, agent_id, Outcome.CANCELLED, now)

    def forgive(self, call_id: str, agent_id: str) -> None:
        """The agent may be offered the call again: its miss was not its own (the switch
        could not ring it). Nothing if the call is gone or the agent was not held missed."""
        rec = self._calls.get(call_id)
        if rec is None or agent_id not in rec.missed:
            return
        rec.missed.discard(agent_id)
        rec.call = replace(rec.call, missed_by=frozenset(rec.missed))
        if rec.waiting:
            self._dirty_calls[call_id] = None  # the next decide looks at it again

    def expired_reservations(self, now: float) -> list[Reservation]:
        """Open reservations past their expiry. The service ends each with
        :meth:`expire` (and tells the agent FSM ``offer_missed``)."""
        return self._book.expired(now)

    def expire(self, call_id: str, agent_id: str, now: float) -> list[Closed]:
        return self._end_offer(call_id, agent_id, Outcome.EXPIRED, now)

    def reservations(self) -> list[Reservation]:
        return self._book.all()

    def _end_offer(
        self, call_id: str, agent_id: str, outcome: Outcome, now: float | None = None
    ) -> list[Closed]:
        at = self._now if now is None else now
        closed = self._book.close(call_id, agent_id, outcome, at)
        if closed is None:
            return []
        rec = self._calls.get(call_id)
        if rec is not None:
            if outcome in (Outcome.MISSED, Outcome.EXPIRED):
                # Not offered again to an agent who did not answer this caller.
                rec.missed.add(agent_id)
                rec.call = replace(rec.call, missed_by=frozenset(rec.missed))
            if not self._book.for_call(call_id):
                self._to_waiting(rec)  # back at the head: it keeps its place
        return [closed]

    # ----------------------------------------------------------------- decide

    def decide(self, now: float) -> Decision:
        if now < self._now:
            raise ValueError(f"time went backwards: decide({now}) after decide({self._now})")
        self._now = now
        exits = self._exits(now)
        overflowed = self._stages(now)
        heap: list[tuple[tuple[int, float, int], str]] = []
        nominated: dict[str, list[str]] = {}

        def nominate(agent_id: str) -> None:
            best = self._best_call(self._agents[agent_id], now)
            if best is not None:
                heapq.heappush(heap, (best.order, best.call.call_id))
                nominated.setdefault(best.call.call_id, []).append(agent_id)

        for call_id in self._dirty_calls:
            rec = self._calls.get(call_id)
            if rec is not None and rec.waiting:
                heapq.heappush(heap, (rec.order, call_id))
        for agent_id in self._dirty_agents:
            if agent_id in self._agents and self._agents[agent_id].keys:
                nominate(agent_id)
        self._dirty_calls.clear()
        self._dirty_agents.clear()

        assignments: list[Assignment] = []
        while heap:
            _, call_id = heapq.heappop(heap)
            rec = self._calls.get(call_id)
            if rec is None or not rec.waiting:
                continue
            chosen = self._choose(rec, now)
            if chosen:
                assignments.append(self._assign(rec, chosen, now))
            for agent_id in nominated.pop(call_id, ()):
                if agent_id not in chosen and self._agents[agent_id].keys:
                    nominate(agent_id)  # its best call went elsewhere: its next best
        return Decision(tuple(assignments), tuple(exits), tuple(overflowed))

    def _exits(self, now: float) -> list[Exit]:
        out: list[Exit] = []
        while self._exit_heap and self._exit_heap[0][0] <= now:
            _, _, call_id = heapq.heappop(self._exit_heap)
            rec = self._calls.get(call_id)
            if rec is None:
                continue
            if not rec.waiting:
                rec.exit_due = True  # ringing: leaves if it comes back unanswered
                continue
            p = self._plans[rec.call.queue]
            assert p.exit_reason is not None
            self.remove_call(call_id, now)
            out.append(Exit(call_id, rec.call.queue, p.exit_reason, p.exit_flow))
        return out

    def _stages(self, now: float) -> list[Overflowed]:
        out: list[Overflowed] = []
        while self._stage_heap and self._stage_heap[0][0] <= now:
            _, _, call_id, stage = heapq.heappop(self._stage_heap)
            rec = self._calls.get(call_id)
            if rec is None or rec.stage >= stage:
                continue
            rec.stage = stage
            self._schedule_stage(rec, stage + 1)
            if rec.waiting:
                self._dirty_calls[call_id] = None
            p = self._plans[rec.call.queue]
            out.append(Overflowed(call_id, rec.call.queue, stage, p.thresholds[stage]))
        return out

    def _best_call(self, agent: _Agent, now: float) -> _Call | None:
        """The highest-priority, longest-waiting call this agent may take now."""
        best: _Call | None = None
        best_order: tuple[int, float, int] | None = None
        agent_id = agent.view.agent_id
        for q, entry in agent.entry.items():
            need = self._plans[q].thresholds[entry]
            waiting = self._waiting[q]
            for prio in waiting.prios:
                if best_order is not None and -prio > best_order[0]:
                    break
                found = False
                for entered, _, call_id in waiting.buckets[prio]:
                    if entered + need > now:
                        break  # the rest waited less (same sum as the stage heap's due time)
                    rec = self._calls[call_id]
                    if agent_id in rec.missed:
                        continue
                    if best_order is None or rec.order < best_order:
                        best, best_order = rec, rec.order
                    found = True
                    break
                if found:
                    break
        return best

    def _choose(self, rec: _Call, now: float) -> tuple[str, ...]:
        q = rec.call.queue
        strategy = rec.call.strategy or self._queues[q].strategy
        pools = self._pools[q][key_kind(strategy)][: rec.stage + 1]
        return self._chooser.choose(
            q, strategy, pools, rec.missed, rec.call.features, self._rows, now
        )

    def _assign(self, rec: _Call, agent_ids: tuple[str, ...], now: float) -> Assignment:
        q = rec.call.queue
        expires = now + self._queues[q].ring_timeout_s + self._grace
        self._waiting[q].remove(rec.call.priority, self._entry(rec))
        rec.waiting = False
        rec.call = replace(rec.call, offered_to=(*rec.call.offered_to, *agent_ids))
        for agent_id in agent_ids:
            agent = self._agents[agent_id]
            self._unpool(agent)
            self._book.open(Reservation(rec.call.call_id, agent_id, q, now, expires))
        return Assignment(rec.call.call_id, q, agent_ids, expires)


def route(
    queues: Sequence[QueueSpec],
    agents: Iterable[AgentView],
    calls: Iterable[WaitingCall],
    now: float,
    *,
    seed: int = 0,
    scorer: Scorer | None = None,
) -> Decision:
    """One routing decision as a plain function: a fresh :class:`Router` fed everything.

    Calls are overflowed as their waits say at ``now``.
    """
    router = Router(queues, scorer=scorer, seed=seed)
    for view in sorted(agents, key=lambda v: v.agent_id):
        router.upsert_agent(view)
    for call in sorted(calls, key=lambda c: (c.entered_at, c.call_id)):
        router.add_call(call)
    return router.decide(now)
