"""engine/core/running_time.py: waits that do not count a stalled event loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.core.running_time import GRACES, SLICE_S, result_within, within


def stall(seconds: float) -> None:
    """Block the loop: the engine's process not scheduled on a loaded host."""
    asyncio.get_running_loop().call_soon(time.sleep, seconds)


async def test_a_stall_past_the_deadline_leaves_the_request_its_round_trip() -> None:
    # The request is held back by the stall; the peer then answers within 5 ms.
    async def request() -> str:
        stall(0.4)
        await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        return "pong"

    assert await within(request(), 0.1) == "pong"


async def test_a_future_set_after_a_stall_is_returned() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    stall(0.4)
    loop.call_later(0.01, lambda: loop.call_later(0.005, fut.set_result, 7))
    assert await result_within(fut, loop.time() + 0.1) == 7


async def test_a_silent_peer_still_times_out_across_stalls() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    for at in (0.0, 0.1, 0.3, 0.5):
        loop.call_later(at, time.sleep, 0.2)
    start = loop.time()
    with pytest.raises(TimeoutError):
        await result_within(fut, start + 0.2)
    # Bounded: the limit, the stalls (0.8 s) and at most GRACES extra slices, with margin
    # for a loaded host's own lateness.
    assert loop.time() - start < 0.2 + 0.8 + GRACES * SLICE_S + 5.0
    assert not fut.done()  # never cancelled: a late reply may still need its slot


async def test_within_cancels_the_call_on_a_timeout() -> None:
    cancelled = asyncio.Event()

    async def silent() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with pytest.raises(TimeoutError):
        await within(silent(), 0.05)
    assert cancelled.is_set()


async def test_within_passes_on_the_calls_own_errors() -> None:
    async def socket_timeout() -> None:
        raise TimeoutError("socket timeout")

    with pytest.raises(TimeoutError, match="socket timeout"):
        await within(socket_timeout(), 1.0)
    with pytest.raises(ValueError, match="bad"):
        await within(_raise(ValueError("bad")), 1.0)


async def _raise(err: Exception) -> None:
    raise err


async def test_within_cancelled_cancels_the_call() -> None:
    started, ended = asyncio.Event(), asyncio.Event()

    async def call() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    waiter = asyncio.create_task(within(call(), 10.0))
    await started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(ended.wait(), 5)
