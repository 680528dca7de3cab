"""Timeouts counted in the time the event loop was running.

A plain ``asyncio.timeout`` (or ``wait_for``) counts time the engine was not scheduled at
all: a starved process on a loaded host, a loop stalled by a long callback. After a stall
longer than the limit, the timer fires in the same loop iteration that first sees the
peer's reply, and often before it (under uvloop timers run before I/O; an answer that
needs one more callback hop, e.g. through ``asyncio.shield``, is always late), so a reply
that came in time loses to the timeout. For a link's watchdog that means a healthy switch
declared hung and the link dropped, failing every action in flight.

So these waits go in short slices, and the time a slice overran (the loop was not
running: nothing could have been read) moves the deadline. A stall that carries the wait
past its deadline also grants one more slice of running time after it: the stall may have
held back the request itself (still to be written, as a Redis call's is, in its task) or a
reply that needs more than one callback to be read, and neither had a chance. Every slice
still counts as running time and the extra slices are few (``GRACES``), so a peer that never
answers times out after the limit plus at most the stalls and two slices, in a bounded
number of slices: a stalled loop is not a way to wait forever.

Not for lease validity: how long a lease is ours is wall time as the others see it,
whether or not we were running (engine/cluster/ownership.py anchors it before the request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["GRACES", "SLICE_S", "STALL_S", "result_within", "within"]

#: How often a wait looks at the clock.
SLICE_S = 0.25
#: A slice that overran by more than this was a stall (not a timer's usual lateness).
STALL_S = 0.05
#: How many times one wait gets a slice after a stall past its deadline.
GRACES = 2

_T = TypeVar("_T")


async def result_within(fut: asyncio.Future[_T], deadline: float) -> _T:
    """``fut``'s result, or TimeoutError once ``deadline`` (loop time) has passed while
    this process was running. ``fut`` is not cancelled on a timeout (a late reply may
    still need its slot)."""
    loop = asyncio.get_running_loop()
    graces = GRACES
    while True:
        now = loop.time()
        if now >= deadline:
            raise TimeoutError
        step = min(SLICE_S, deadline - now)
        await asyncio.wait((fut,), timeout=step)
        if fut.done():
            return fut.result()
        end = loop.time()
        overran = end - (now + step)
        if overran > 0:
            deadline += overran
            if overran > STALL_S and graces and deadline < end + SLICE_S:
                graces -= 1
                deadline = end + SLICE_S


async def within(aw: Awaitable[_T], limit: float) -> _T:
    """``await aw``, or TimeoutError after ``limit`` seconds of running time: a
    ``asyncio.wait_for`` that does not count a stalled loop. As with ``wait_for``, ``aw``
    runs as a task that a timeout (or our own cancellation) cancels, and a timeout returns
    only once that task ended (it may have finished anyway: then its result is ours)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(aw)
    # A call abandoned (our own cancellation) may still end with its own error: nobody
    # awaits it then, so it is marked retrieved (asyncio would log it as never retrieved).
    task.add_done_callback(_retrieve)
    try:
        return await result_within(task, loop.time() + limit)
    except TimeoutError:
        if task.done():
            raise  # the call's own TimeoutError (a socket timeout), not ours
        task.cancel()
        await asyncio.wait((task,))
        if task.cancelled():
            raise
        return task.result()
    finally:
        task.cancel()  # no-op once it ended; else we were cancelled ourselves


def _retrieve(task: asyncio.Future[_T]) -> None:
    if not task.cancelled():
        task.exception()
