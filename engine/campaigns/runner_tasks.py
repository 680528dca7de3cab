"""The fire-and-forget tasks of one campaign runner (originates, queue entries, machine
actions, safe-harbour prompts, flight checks), kept referenced until done and cancelled
together when the runner ends."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class RunnerTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
