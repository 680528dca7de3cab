"""Router names the simulator accepts -> router factories.

This is the one seam the real router plugs into: register an adapter from ``engine/acd/routing.py``
to :class:`~engine.acd.sim.router_port.RouterPort` per strategy here, and the simulator, its CLI
and its checks drive it instead of the reference routers.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.acd.sim.reference_routers import REFERENCE_ROUTERS
from engine.acd.sim.router_port import RouterPort

ROUTERS: dict[str, Callable[[], RouterPort]] = dict(REFERENCE_ROUTERS)


def router_names() -> list[str]:
    return sorted(ROUTERS)


def make_router(name: str) -> RouterPort:
    try:
        factory = ROUTERS[name]
    except KeyError:
        raise ValueError(
            f"unknown router {name!r}: expected one of {', '.join(router_names())}"
        ) from None
    return factory()
