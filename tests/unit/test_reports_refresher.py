"""The refresher keeps going when PostgreSQL fails: a failed round is logged and the next one
runs (the marks wait in the database), and stop() ends the loop."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.reports.fill import FillSettings
from engine.reports.refresher import Refresher


class _DownThenEmpty:
    """A pool whose first two acquires fail like a refused connection; then it answers with no
    marks at all."""

    def __init__(self) -> None:
        self.acquires = 0
        self.empty_rounds = asyncio.Event()

    def acquire(self) -> Any:
        self.acquires += 1
        if self.acquires <= 2:
            raise ConnectionRefusedError("connection refused")
        pool = self

        class _Conn:
            async def __aenter__(self) -> _Conn:
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            def transaction(self) -> _Conn:
                return self

            async def fetch(self, *args: Any) -> list[Any]:
                pool.empty_rounds.set()
                return []

        return _Conn()


async def test_a_failed_round_is_followed_by_the_next() -> None:
    pool = _DownThenEmpty()
    refresher = Refresher(
        pool,  # asyncpg is untyped (Any): the fake stands in for asyncpg.Pool
        FillSettings(),
        interval_s=0.01,
        timeout_s=1.0,
    )
    task = asyncio.create_task(refresher.run())
    await asyncio.wait_for(pool.empty_rounds.wait(), 5.0)
    assert pool.acquires >= 3  # two failed rounds, then one that found no marks
    refresher.stop()
    await asyncio.wait_for(task, 5.0)
