"""The signals of a background worker that drains a queue with retries.

Shared by the outbox lanes (engine/store/outbox/lane.py) and the registry
mirror (engine/calls/mirror.py), which both: wake when work arrives, report
"idle" when everything accepted is done, back off after a failure, and end a
backoff early when someone waits for them to drain or closes them (so a
shutdown never waits out a backoff while storage may already be back).
"""

from __future__ import annotations

import asyncio
import contextlib

from engine.core import clock


class WorkerSignals:
    def __init__(self, min_interval_s: float = 0.0) -> None:
        self.wake = asyncio.Event()  # work arrived, or close()
        self.idle = asyncio.Event()  # everything accepted is done
        self.idle.set()
        self._hurry = asyncio.Event()  # end a backoff early
        self.closed = False
        self.min_interval_s = min_interval_s
        self._last_round = -float("inf")
        self._stretch_s = 0.0  # the next round only: at least this long after the last one

    def work_arrived(self) -> None:
        self.idle.clear()
        self.wake.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True when idle within ``timeout_s``; a backoff in progress ends now."""
        if not self.idle.is_set():
            self._hurry.set()
        try:
            await asyncio.wait_for(self.idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        self.wake.set()
        self._hurry.set()

    async def pace(self, backlog: bool = False, at_least_s: float = 0.0) -> None:
        """Wait until ``min_interval_s`` has passed since the previous round
        began, then start a new round.

        ``at_least_s``: wait at least this long from now as well (the registry
        mirror's linger), in the same single timer: a linger followed by a pace
        cost two timer wakeups where one does (docs/bench-cpu.md, eighth round).

        ``backlog``: the previous round took a full batch, so records are waiting
        already and the pause would batch nothing: the round starts at once (unless a
        ``stretch_next`` asked for a longer pause). Without it, the interval capped a
        lane at batch / min_interval records per second (100 / 0.1 s for the event
        stream: 1,000 events/s, reached at ~110 calls/s by bench/capacity.py), and the
        backlog behind it grew for as long as the rate held.

        Why pace rather than linger: a lone record goes out at once (no added
        latency on a quiet engine), while under load the records that arrive
        during the interval share one round. Each round is a storage round
        trip, and on this kind of host the engine's CPU goes mostly to the
        syscalls of round trips (send, epoll, the fsync thread), not to Python
        (docs/bench-cpu.md). A close() or a drain wait cuts the pause short.
        """
        if backlog and not self._stretch_s:
            self._last_round = clock.monotonic()
            return
        interval = max(self.min_interval_s, self._stretch_s)
        self._stretch_s = 0.0
        wait = max(self._last_round + interval - clock.monotonic(), at_least_s)
        if wait > 0 and not self.closed:
            # asyncio.timeout, not wait_for (which starts a task per round).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._hurry.wait()
            if not self.closed:
                self._hurry.clear()
        self._last_round = clock.monotonic()

    def stretch_next(self, seconds: float) -> None:
        """The next round begins at least ``seconds`` after the one in progress began
        (once; then ``min_interval_s`` again). A close() or a drain wait still cuts the
        pause short."""
        self._stretch_s = max(self._stretch_s, seconds)

    async def backoff(self, seconds: float) -> None:
        """Sleep ``seconds`` unless hurried (one early try per request)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), seconds)
        if not self.closed:
            self._hurry.clear()
