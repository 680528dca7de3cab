"""The engine's refresher: recomputes the interval buckets the latest raw rows marked.

Runs beside the outbox lanes, never on the call path: the lanes write raw rows (and, through
the triggers of migration 0011, the marks); this loop turns marks into interval rows every
``refresh_s``, each round bounded by a timeout. With PostgreSQL away it logs and tries again
next round; nothing is lost, the marks wait in the database with the rows that made them.
"""

from __future__ import annotations

import asyncio

import asyncpg

from engine.reports.fill import FillSettings, refresh_dirty
from engine.store.errors import StoreError
from engine.telemetry.logging import get_logger

log = get_logger("engine.reports.refresher")


class Refresher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: FillSettings,
        *,
        interval_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._pool = pool
        self.settings = settings
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def round(self) -> int:
        """Every marked bucket, in batches; the number recomputed."""
        done = 0
        while True:
            n = await refresh_dirty(self._pool, self.settings, timeout_s=self._timeout_s)
            done += n
            if n == 0:
                return done

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.round()
            except StoreError as err:
                log.warning("report refresh failed; retrying next round", error=str(err))
            self._wake.clear()
            try:
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
