"""The engine's ACD router (:class:`engine.acd.routing.Router`) behind the simulator's
:class:`~engine.acd.sim.router_port.RouterPort`: the simulator drives the same routing code as
the live ACD (issue 9, item 7).

Mapping:

- each scenario queue becomes a :class:`engine.acd.model.QueueSpec` with its required skills and
  the strategy this adapter runs (every queue the same strategy; the router's name is the
  strategy's name);
- a :class:`SimCall` becomes a :class:`WaitingCall` (queue, arrival time, priority, features);
- a :class:`SimAgent` becomes an available :class:`AgentView` with its skills, capability vector
  and the session figures the strategies read (idle since, calls, talk time, busy and available
  seconds for the load-aware occupancy).

Offers. The live ACD reserves the agent(s) an assignment names, rings them, and reports back how
each offer ended; the router keeps its reservation book consistent only if it is told. The
simulator has no ring time (an assigned agent answers at once), so this adapter answers every
offer the instant it is made, in the order the live service would report it:

1. ``offer_answered(call, agent)``: the reservation closes as answered and the call leaves the
   queue. With ring-all, the router rang several agents; one of them answers (a seeded draw: the
   phone picked up first) and the router cancels the others' reservations.
2. Each agent whose offer was cancelled is available again, with its idle place kept (the agent
   FSM's ``offer_cancelled``), so it is upserted again and the router is asked again at the same
   instant: it may now take another waiting call.
3. The agent who answered is upserted as not available (on a call) until the simulator frees it.

After :meth:`EngineRouter.decide` returns, the router holds no open reservation; that is checked,
so a change in the router's offer protocol cannot leave agents silently stuck in it.
"""

from __future__ import annotations

import random
from dataclasses import replace

from engine.acd.model import AgentView, QueueSpec, Strategy, WaitingCall
from engine.acd.reservations import Closed, Outcome
from engine.acd.routing import Router
from engine.acd.sim.router_port import SimAgent, SimCall
from engine.acd.sim.scenario import InboundScenario


class EngineRouterError(RuntimeError):
    """The engine's router did something the simulator cannot carry out."""


def queue_specs(scenario: InboundScenario, strategy: Strategy) -> list[QueueSpec]:
    """The scenario's queues as the engine's router reads them."""
    return [
        QueueSpec(
            name=q.name,
            skills=dict(q.skills),
            strategy=strategy,
            service_level_s=q.service_level_s,
        )
        for q in scenario.queues
    ]


def agent_view(agent: SimAgent, now: float) -> AgentView:
    """An agent the simulator reports free at ``now``, as the router sees it."""
    return AgentView(
        agent_id=agent.id,
        skills=dict(agent.skills),
        available=True,
        idle_since=agent.idle_since,
        calls_handled=agent.calls_taken,
        talk_s=agent.talk_time_s,
        busy_s=agent.busy_s,
        available_s=max(0.0, agent.logged_in_s - agent.busy_s),
        available_since=now,
        capability=agent.capability,
    )


class EngineRouter:
    """One strategy of :class:`engine.acd.routing.Router`, fed by the simulator."""

    def __init__(self, scenario: InboundScenario, strategy: Strategy, seed: int = 0) -> None:
        self.name = strategy.value
        self.strategy = strategy
        self.router = Router(queue_specs(scenario, strategy), seed=seed)
        self._skills = {q.name: dict(q.skills) for q in scenario.queues}
        self._views: dict[str, AgentView] = {}
        # Ring-all: which rung phone answers first. Its own stream, so the router's draws
        # (weighted-random, load-aware) are the same as the live router's for the same seed.
        self._pickup = random.Random(f"acd-sim-ring-all:{seed}")

    # -- events ---------------------------------------------------------------------------------
    def on_call_arrived(self, call: SimCall, now: float) -> None:
        skills = self._skills.get(call.queue)
        if skills is None:
            raise EngineRouterError(f"call {call.id}: queue {call.queue!r} is not in the scenario")
        if dict(call.required_skills) != skills:
            # The engine's router takes the required skills from the queue, not the call.
            raise EngineRouterError(
                f"call {call.id}: requires {dict(call.required_skills)}, but queue {call.queue!r} "
                f"requires {skills}; the engine's router reads skills from the queue"
            )
        self.router.add_call(
            WaitingCall(
                call_id=call.id,
                queue=call.queue,
                entered_at=call.arrived_at,
                priority=call.priority,
                features=call.features,
            )
        )

    def on_call_left(self, call_id: str, now: float) -> None:
        self._release(self.router.remove_call(call_id, now))

    def on_agent_free(self, agent: SimAgent, now: float) -> None:
        view = agent_view(agent, now)
        self._views[agent.id] = view
        self._release(self.router.upsert_agent(view))

    def on_agent_away(self, agent_id: str, now: float) -> None:
        self._views.pop(agent_id, None)
        self._release(self.router.remove_agent(agent_id))

    # -- routing --------------------------------------------------------------------------------
    def decide(self, now: float) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        while True:
            decision = self.router.decide(now)
            if decision.exits or decision.overflowed:
                # The scenario format has no max wait or overflow rules, so neither can come due.
                raise EngineRouterError(
                    f"router {self.name}: unexpected exits {decision.exits} or overflow steps "
                    f"{decision.overflowed} at t={now}"
                )
            freed = False
            for a in decision.assignments:
                agent_id = (
                    a.agent_ids[0] if len(a.agent_ids) == 1 else self._pickup.choice(a.agent_ids)
                )
                # Ring-all: the others rung for this call are cancelled, available again.
                cancelled = [
                    c
                    for c in self.router.offer_answered(a.call_id, agent_id, now)
                    if c.outcome is Outcome.CANCELLED
                ]
                self._release(cancelled)
                freed = freed or bool(cancelled)
                on_call = replace(self._views.pop(agent_id), available=False)
                self.router.upsert_agent(on_call)
                pairs.append((a.call_id, agent_id))
            # One decision leaves no free agent and waiting call that fit each other apart, so
            # ask again only when agents came back from cancelled offers.
            if not freed:
                break
        if self.router.reservations():
            raise EngineRouterError(
                f"router {self.name}: reservations left open at t={now}: "
                f"{self.router.reservations()}"
            )
        return pairs

    def _release(self, closed: list[Closed]) -> None:
        """Put agents whose offer was cancelled (not their fault) back with their idle place, as
        the service does on the agent FSM's ``offer_cancelled``."""
        for c in closed:
            view = self._views.get(c.reservation.agent_id)
            if view is not None and c.outcome is Outcome.CANCELLED:
                self.router.upsert_agent(view)
