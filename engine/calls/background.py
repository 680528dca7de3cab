"""Fire-and-forget tasks of the calls service, kept referenced until done.

asyncio holds only a weak reference to a task: one nobody keeps may be
garbage-collected mid-flight. Later attempts' originates, waits for a free
trunk and unknown-outcome probes run here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
