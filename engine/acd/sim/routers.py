"""Router names the simulator accepts -> router factories.

Every name is a strategy of the engine's own ACD router (:class:`engine.acd.routing.Router`,
adapted in :mod:`engine.acd.sim.engine_router`), so ``python -m engine simulate`` runs the same
routing code as the live ACD. A factory gets the scenario (its queues become the router's
queues) and the run's seed (for the seeded strategies, weighted-random and load-aware).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.acd.model import Strategy
from engine.acd.sim.engine_router import EngineRouter
from engine.acd.sim.router_port import RouterPort
from engine.acd.sim.scenario import InboundScenario

RouterFactory = Callable[[InboundScenario, int], RouterPort]

DEFAULT_ROUTER = Strategy.LONGEST_IDLE.value


def _factory(strategy: Strategy) -> RouterFactory:
    def make(scenario: InboundScenario, seed: int) -> RouterPort:
        return EngineRouter(scenario, strategy, seed)

    return make


ROUTERS: dict[str, RouterFactory] = {s.value: _factory(s) for s in Strategy}


def router_names() -> list[str]:
    return sorted(ROUTERS)


def check_router_name(name: str) -> None:
    if name not in ROUTERS:
        raise ValueError(f"unknown router {name!r}: expected one of {', '.join(router_names())}")


def make_router(name: str, scenario: InboundScenario, seed: int = 0) -> RouterPort:
    check_router_name(name)
    return ROUTERS[name](scenario, seed)
