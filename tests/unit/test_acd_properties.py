"""Property tests: the router and the agent FSM driven together by random event sequences.

The harness plays the service's part (FSM step, then tell the router) and
checks after every decision:

- no agent holds two calls (an offer to a reserved agent would be an illegal
  FSM input), and no call is offered to two agents except by ring-all, whose
  promise is: every agent it rings is free, at most one answers, the others are
  cancelled;
- the decision is stable: no free agent and waiting call that fit each other
  are left unmatched, and a caller is never passed over for a lower-priority
  (or same priority, shorter-waiting) one the same agent fits;
- the router's reservations and the FSM's reserved agents are the same set;
- every reservation ends exactly once: answered, missed, cancelled or expired.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.acd.eligibility import plan
from engine.acd.model import OverflowRule, QueueSpec, Strategy, WaitingCall, view_of
from engine.acd.reservations import Closed, Outcome
from engine.acd.routing import Decision, Router
from engine.agents.fsm import (
    AgentFsm,
    AgentInput,
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
from engine.agents.model import AgentConfig, AgentState, AgentStatus

S = AgentState
FSM = AgentFsm(["break"])

QUEUES = [
    QueueSpec(
        "sales",
        {"sales": 6},
        Strategy.LONGEST_IDLE,
        ring_timeout_s=10,
        wrap_up_s=5,
        overflow=(
            OverflowRule(20, relax_skills={"sales": 3}),
            OverflowRule(40, add_queue="tech"),
            OverflowRule(200, ivr_flow="voicemail"),
        ),
    ),
    # Callers split between two strategies (one pool per kind of key): entries alternate.
    QueueSpec(
        "tech",
        {"tech": 4},
        ring_timeout_s=8,
        wrap_up_s=12,
        strategies=(Strategy.FEWEST_CALLS, Strategy.WEIGHTED_RANDOM),
    ),
    QueueSpec("any", {}, Strategy.RING_ALL, ring_timeout_s=6, max_wait_s=150),
    QueueSpec("vip", {"sales": 2}, Strategy.ROUND_ROBIN, ring_timeout_s=5),
]
PLANS = {q.name: plan(q) for q in QUEUES}
BASE = {q.name: dict(q.skills) for q in QUEUES}
AGENTS = [
    AgentConfig("a0", "a0", skills={"sales": 8}, max_no_answer=2),
    AgentConfig("a1", "a1", skills={"sales": 4, "tech": 5}, max_no_answer=3),
    AgentConfig("a2", "a2", skills={"tech": 9}, max_no_answer=2),
    AgentConfig("a3", "a3", skills={"sales": 2}, max_no_answer=1),
    AgentConfig("a4", "a4", skills={}, max_no_answer=2),
]
CONFIG = {a.id: a for a in AGENTS}

agent_ix = st.integers(0, len(AGENTS) - 1)
ARRIVE = st.tuples(st.just("arrive"), st.integers(0, len(QUEUES) - 1), st.integers(1, 3))
ANSWER = st.tuples(st.sampled_from(["answer", "hangup", "wrap", "ready"]), agent_ix)
EVENTS = st.one_of(
    ARRIVE,
    ARRIVE,
    ANSWER,
    ANSWER,
    st.tuples(st.just("tick"), st.sampled_from([0.5, 1, 3, 7, 15, 30, 60, 120])),
    st.tuples(
        st.sampled_from(["login", "ready", "pause", "logout", "answer", "miss", "hangup", "wrap"]),
        agent_ix,
    ),
    st.tuples(st.just("abandon"), st.integers(0, 20)),
    st.tuples(st.just("expire")),
)


@dataclass
class World:
    router: Router = field(default_factory=lambda: Router(QUEUES, seed=3))
    status: dict[str, AgentStatus] = field(
        default_factory=lambda: {a.id: AgentStatus(a.id) for a in AGENTS}
    )
    now: float = 0.0
    calls: int = 0
    opened: dict[tuple[str, str], int] = field(default_factory=dict)  # (call, agent) -> times
    ended: list[Closed] = field(default_factory=list)

    def step(self, agent_id: str, event: AgentInput) -> None:
        self.status[agent_id] = FSM.step(
            CONFIG[agent_id], self.status[agent_id], event, self.now
        ).after
        self.ended += self.router.upsert_agent(view_of(CONFIG[agent_id], self.status[agent_id]))

    def close(self, closed: list[Closed]) -> None:
        """The router ended these reservations: tell each agent's FSM."""
        for c in closed:
            self.ended.append(c)
            r = c.reservation
            if c.outcome is Outcome.ANSWERED:
                self.step(r.agent_id, OfferAnswered(r.call_id))
            elif c.outcome in (Outcome.MISSED, Outcome.EXPIRED):
                self.step(r.agent_id, OfferMissed(r.call_id))
            else:
                self.step(r.agent_id, OfferCancelled(r.call_id))

    def apply(self, ev: tuple[object, ...]) -> None:
        kind = ev[0]
        if kind == "arrive":
            spec, prio = QUEUES[int(ev[1])], int(ev[2])  # type: ignore[call-overload]
            self.calls += 1
            strategy = spec.strategies[self.calls % len(spec.strategies)]
            self.router.add_call(
                WaitingCall(f"c{self.calls}", spec.name, self.now, priority=prio, strategy=strategy)
            )
        elif kind == "tick":
            self.now += float(ev[1])  # type: ignore[arg-type]
        elif kind == "abandon":
            live = sorted({r.call_id for r in self.router.reservations()})
            live += [c.call_id for c in self.router.waiting_calls()]
            if live:
                cid = live[int(ev[1]) % len(live)]  # type: ignore[call-overload]
                # The router ends the offers; the service cancels each agent's ringing.
                self.close(self.router.remove_call(cid, self.now))
        elif kind == "expire":
            for r in self.router.expired_reservations(self.now):
                self.close(self.router.expire(r.call_id, r.agent_id, self.now))
        else:
            # answer/miss/hangup/wrap pick among the agents in the state they need.
            need = {"answer": S.RESERVED, "miss": S.RESERVED, "hangup": S.ON_CALL}
            want = need.get(str(kind), S.WRAP_UP if kind == "wrap" else None)
            pool = [a.id for a in AGENTS if want is None or self.status[a.id].state is want]
            if pool:
                ix = int(ev[1])  # type: ignore[call-overload]
                self.agent_event(str(kind), pool[ix % len(pool)])

    def agent_event(self, kind: str, agent_id: str) -> None:
        st_ = self.status[agent_id]
        held = self.router.reservations()
        if kind == "answer" and st_.state is S.RESERVED:
            assert st_.call_id is not None
            self.close(self.router.offer_answered(st_.call_id, agent_id, self.now))
        elif kind == "miss" and st_.state is S.RESERVED:
            assert st_.call_id is not None
            self.close(self.router.offer_missed(st_.call_id, agent_id, self.now))
        elif kind == "hangup" and st_.state is S.ON_CALL:
            assert st_.call_id is not None
            self.step(agent_id, CallEnded(st_.call_id))
        elif kind == "wrap" and st_.state is S.WRAP_UP:
            self.step(agent_id, WrapUpElapsed())
        elif kind == "login" and st_.state is S.LOGGED_OUT:
            self.step(agent_id, Login())
        elif kind == "ready" and st_.state in (S.PAUSED, S.WRAP_UP):
            self.step(agent_id, Ready())
        elif kind == "pause" and st_.state in (S.AVAILABLE, S.PAUSED, S.WRAP_UP):
            self.step(agent_id, Pause("break"))
        elif kind == "logout" and st_.state in (S.AVAILABLE, S.PAUSED, S.WRAP_UP):
            self.step(agent_id, Logout())
        assert all(r.agent_id != agent_id for r in held) or st_.state is S.RESERVED

    def decide(self) -> Decision:
        decision = self.router.decide(self.now)
        for a in decision.assignments:
            for agent_id in a.agent_ids:
                # An offer to an agent who is not available is an illegal FSM input:
                # this line is the "no agent gets two calls" check.
                queue = next(q for q in QUEUES if q.name == a.queue)
                self.step(agent_id, Offer(a.call_id, a.queue, queue.wrap_up_s, a.expires_at))
                self.opened[(a.call_id, agent_id)] = self.opened.get((a.call_id, agent_id), 0) + 1
        return decision


def fits(agent_id: str, call: WaitingCall, now: float) -> bool:
    p = PLANS[call.queue]
    entry = p.entry_stage(CONFIG[agent_id].skills, BASE)
    if entry is None or agent_id in call.missed_by:
        return False
    return call.entered_at + p.thresholds[entry] <= now


def check(world: World, decision: Decision) -> None:
    # One agent per call except ring-all; no agent twice in one decision.
    rung = [agent for a in decision.assignments for agent in a.agent_ids]
    assert len(rung) == len(set(rung))
    for a in decision.assignments:
        ring_all = next(q for q in QUEUES if q.name == a.queue).strategy is Strategy.RING_ALL
        assert len(a.agent_ids) >= 1 and (ring_all or len(a.agent_ids) == 1)
    # The router's reservations are exactly the FSM's reserved agents, one call each.
    reserved = {aid: s.call_id for aid, s in world.status.items() if s.state is S.RESERVED}
    held = {r.agent_id: r.call_id for r in world.router.reservations()}
    assert held == reserved
    # A call with open offers is not waiting; a waiting call has none.
    waiting = world.router.waiting_calls()
    assert not {c.call_id for c in waiting} & set(held.values())
    free = [aid for aid, s in world.status.items() if s.state is S.AVAILABLE]
    # Stability: nothing left that could be matched now.
    for call in waiting:
        assert not [aid for aid in free if fits(aid, call, world.now)], (call, free)
    # Never passed over: no call still waiting that ranks above an assigned one (higher
    # priority, or the same priority and waiting longer) fits the assigned agent.
    for a in decision.assignments:
        assigned = world.router.call(a.call_id)
        if assigned is None:
            continue
        rank = (-assigned.priority, assigned.entered_at)
        for call in waiting:
            if (-call.priority, call.entered_at) < rank:
                assert not [aid for aid in a.agent_ids if fits(aid, call, world.now)], call


@settings(max_examples=500, deadline=None)
@given(st.lists(EVENTS, min_size=10, max_size=120), st.integers(1, len(AGENTS)))
def test_random_event_sequences_keep_the_routing_promises(
    events: list[tuple[object, ...]], ready: int
) -> None:
    world = World()
    for a in AGENTS[:ready]:  # the others start logged out
        world.step(a.id, Login())
        world.step(a.id, Ready())
    for ev in events:
        world.apply(ev)
        check(world, world.decide())
    # Drain: time passes, expired offers end, until no reservation is left.
    for _ in range(60):
        if not world.router.reservations():
            break
        world.now += 30
        world.apply(("expire",))
        check(world, world.decide())
    assert world.router.reservations() == []
    assert not [s for s in world.status.values() if s.state is S.RESERVED]
    # Every reservation ended exactly once, with one of the four outcomes.
    ended: dict[tuple[str, str], int] = {}
    for c in world.ended:
        key = (c.reservation.call_id, c.reservation.agent_id)
        ended[key] = ended.get(key, 0) + 1
        assert c.outcome in set(Outcome)
    assert ended == world.opened
    # A call is answered by at most one agent (ring-all included).
    answered = [c.reservation.call_id for c in world.ended if c.outcome is Outcome.ANSWERED]
    assert len(answered) == len(set(answered))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3), st.integers(0, 60)), max_size=25),
    st.lists(st.tuples(agent_ix, st.integers(0, 60)), max_size=8),
    st.integers(0, 300),
)
def test_route_is_deterministic_and_matches_the_incremental_router(
    calls: list[tuple[int, int, int]], agents: list[tuple[int, int]], now_offset: int
) -> None:
    from engine.acd.model import AgentView
    from engine.acd.routing import route

    waiting = [
        WaitingCall(f"c{i}", QUEUES[qi].name, float(at), priority=prio)
        for i, (qi, prio, at) in enumerate(calls)
    ]
    views = {
        AGENTS[ix].id: AgentView(
            AGENTS[ix].id, AGENTS[ix].skills, available=True, idle_since=float(idle)
        )
        for ix, idle in agents
    }
    now = 60.0 + now_offset
    first = route(QUEUES, views.values(), waiting, now, seed=5)
    again = route(QUEUES, reversed(list(views.values())), list(reversed(waiting)), now, seed=5)
    assert first == again
    rung = [a for x in first.assignments for a in x.agent_ids]
    assert len(rung) == len(set(rung))
