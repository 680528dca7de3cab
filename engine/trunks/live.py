"""The one live :class:`Fleet` the trunk service's collaborators share, and the wake-up
of the calls waiting for a channel on it.

Nothing here awaits: on one event loop, reading ``fleet`` and replacing it with what a
pure call returned cannot race (engine/trunks/fleet.py).
"""

from __future__ import annotations

import asyncio

from engine.trunks.fleet import Fleet


class LiveFleet:
    __slots__ = ("fleet", "released")

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        #: Set (then replaced) when a channel may have become free.
        self.released = asyncio.Event()

    def signal_release(self) -> None:
        # Wake every waiter once; the next ones wait on a fresh event.
        self.released.set()
        self.released = asyncio.Event()
