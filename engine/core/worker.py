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


class WorkerSignals:
    def __init__(self) -> None:
        self.wake = asyncio.Event()  # work arrived, or close()
        self.idle = asyncio.Event()  # everything accepted is done
        self.idle.set()
        self._hurry = asyncio.Event()  # end a backoff early
        self.closed = False

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

    async def backoff(self, seconds: float) -> None:
        """Sleep ``seconds`` unless hurried (one early try per request)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), seconds)
        if not self.closed:
            self._hurry.clear()
