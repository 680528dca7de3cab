"""A process-pool call that cannot hang when a parsing process dies mid-answer.

CPython's ``ProcessPoolExecutor`` (3.11) has one thread that reads every answer from the
workers' shared result pipe. If a worker is killed (the OOM killer, an operator's
``kill -9``) after writing the first bytes of an answer but before the rest, that thread
reads the length header and then blocks in ``recv()`` for bytes that never come: it never
looks at the dead worker's sentinel again, no future ever completes, the import hangs and
so does the engine's exit (``concurrent.futures`` joins that thread at exit). The pipe's
write ends are held by the workers and by this process, so the read only ends when all of
them are closed.

``watched`` awaits a pool future and checks the pool's processes every ``check_s``. Once a
worker has been dead for ``grace_s`` and the future is still pending (the pool itself
would have failed it by then), it kills the remaining workers, closes this process's write
end of the result pipe (the read then ends with EOF, the pool marks itself broken and fails
every pending future with ``BrokenProcessPool``, as for any dead worker), and raises
``BrokenProcessPool`` if the future still does not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from engine.telemetry.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

CHECK_S = 0.5
GRACE_S = 2.0


def _dead_workers(executor: ProcessPoolExecutor) -> int:
    processes = getattr(executor, "_processes", None) or {}
    return sum(1 for p in list(processes.values()) if p.exitcode is not None)


def _unstick(executor: ProcessPoolExecutor) -> None:
    """Kill the workers and close our write end of the result pipe, so the pool's reading
    thread gets EOF instead of waiting for the rest of a dead worker's answer."""
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.kill()
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.join(timeout=5)
    result_queue = getattr(executor, "_result_queue", None)
    writer = getattr(result_queue, "_writer", None)
    if writer is not None:
        with contextlib.suppress(OSError):
            writer.close()


async def watched(
    executor: Executor,
    future: asyncio.Future[T],
    *,
    check_s: float = CHECK_S,
    grace_s: float = GRACE_S,
) -> T:
    """``await future`` (a ``run_in_executor`` future on ``executor``), unless a worker of a
    ``ProcessPoolExecutor`` died and the pool is stuck: then ``BrokenProcessPool``."""
    if not isinstance(executor, ProcessPoolExecutor):
        return await future
    try:
        return await _watch(executor, future, check_s, grace_s)
    except asyncio.CancelledError:
        future.cancel()  # as cancelling the pool future itself would: not started, not run
        raise


async def _watch(
    executor: ProcessPoolExecutor, future: asyncio.Future[T], check_s: float, grace_s: float
) -> T:
    dead_since: float | None = None
    while True:
        done, _ = await asyncio.wait({future}, timeout=check_s)
        if done:
            return future.result()
        if _dead_workers(executor) == 0:
            dead_since = None
            continue
        now = time.monotonic()
        if dead_since is None:
            dead_since = now
            continue
        if now - dead_since < grace_s:
            continue
        log.error(
            "contacts import: a parsing process died and the pool is stuck; breaking it",
            dead_workers=_dead_workers(executor),
        )
        await asyncio.to_thread(_unstick, executor)
        done, _ = await asyncio.wait({future}, timeout=10 * check_s + grace_s)
        if done:
            return future.result()
        future.cancel()
        raise BrokenProcessPool("a parsing process died while sending its answer")
