"""Timeouts counted in the time the event loop was running.

A plain ``asyncio.timeout`` (or ``wait_for``) counts time the engine was not scheduled at
all: a starved process on a loaded host, a loop stalled by a long callback. After a stall
longer than the limit, the timer fires in the same loop iteration that first sees the
peer's reply, and often before it (under uvloop timers run before I/O; an answer that
needs one more callback hop, e.g. through ``asyncio.shield``, is always late), so a reply
that came in time loses to the timeout. For a link's watchdog that means a healthy switch
declared hung and the link dropped, failing every action in flight.

So these waits go in short slices, and the time a slice overran (the loop was not
running: nothing could have been read) moves the deadline. Every slice still counts as
running time, so a peer that never answers times out after the limit plus at most the
stalls, in a bounded number of slices: a stalled loop is not a way to wait forever.

Not for lease validity: how long a lease is ours is wall time as the others see it,
whether or not we were running (engine/cluster/ownership.py anchors it before the request).
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

__all__ = ["SLICE_S", "result_within"]

#: How often a wait looks at the clock.
SLICE_S = 0.25

_T = TypeVar("_T")


async def result_within(fut: asyncio.Future[_T], deadline: float) -> _T:
    """``fut``'s result, or TimeoutError once ``deadline`` (loop time) has passed while
    this process was running. ``fut`` is not cancelled on a timeout (a late reply may
    still need its slot)."""
    loop = asyncio.get_running_loop()
    while True:
        now = loop.time()
        if now >= deadline:
            raise TimeoutError
        step = min(SLICE_S, deadline - now)
        await asyncio.wait((fut,), timeout=step)
        if fut.done():
            return fut.result()
        overran = loop.time() - (now + step)
        if overran > 0:
            deadline += overran
