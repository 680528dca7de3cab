"""A parsing process killed while sending its answer must not hang the contacts import
(engine/campaigns/contacts/pool_watch.py): the pool's reading thread would block on the
half-written answer forever, and no future would ever complete."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import struct
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest

from engine.campaigns.contacts.pool_watch import watched


def die_mid_answer() -> int:
    """In a pool worker: write the first bytes of an answer (a length header promising
    1 MiB, then a few bytes) on the pool's result pipe, then die as the OOM killer kills."""
    result_queue = multiprocessing.current_process()._args[1]  # type: ignore[attr-defined]
    os.write(result_queue._writer.fileno(), struct.pack("!i", 1 << 20) + b"half an answer")
    os.kill(os.getpid(), signal.SIGKILL)
    return 0  # never reached


def answer() -> int:
    return 42


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))


async def test_a_worker_killed_mid_answer_breaks_the_pool_instead_of_hanging() -> None:
    executor = _pool()
    loop = asyncio.get_running_loop()
    try:
        future = loop.run_in_executor(executor, die_mid_answer)
        async with asyncio.timeout(60):
            with pytest.raises(BrokenProcessPool):
                await watched(executor, future, check_s=0.1, grace_s=0.5)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    # The pool's own thread saw EOF and ended: nothing is left to hang the interpreter's exit.
    thread: threading.Thread | None = getattr(executor, "_executor_manager_thread", None)
    if thread is not None:
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive()


async def test_a_healthy_pool_answers_through_the_watch() -> None:
    executor = _pool()
    loop = asyncio.get_running_loop()
    try:
        results = await asyncio.gather(
            *(watched(executor, loop.run_in_executor(executor, answer)) for _ in range(4))
        )
    finally:
        executor.shutdown(wait=True)
    assert results == [42, 42, 42, 42]
