"""``ContactsService``: contact imports and listings, and the DNC lists, over a PostgreSQL pool.

Used by the CLI (``python -m engine contacts import``) and the HTTP API
(engine/campaigns/contacts_http.py). Parsing runs in a process pool of ``workers`` processes
(created on the first import, so an engine that never imports never forks); ``workers=0``
parses on a thread of this process (tests, small lists). ``loaders`` connections of the pool
insert at once, each its share of the numbers (engine/campaigns/contacts/importer.py): the CLI
uses two, the engine's API one (it shares its pool with calls). A parsing process that dies
breaks its pool: the next import starts a new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any

import asyncpg

from engine.campaigns.contacts.importer import (
    BATCH_ROWS,
    ImportReport,
    ImportSettings,
    Progress,
    RejectSink,
    run_import,
)
from engine.campaigns.contacts.loader import (
    DEFAULT_TIMEOUT_S,
    ContactLoader,
    campaign_region,
)
from engine.campaigns.contacts.parse import Format
from engine.campaigns.contacts.parse_pool import new_parse_pool
from engine.campaigns.dnc import DncRepository
from engine.core.errors import InvalidRequest

STATES = ("ready", "dialing", "held", "done")
MAX_PAGE = 1000


class ContactsService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        timeout_s: float = 5.0,
        batch_timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = 0,
        loaders: int = 1,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        if loaders < 1:
            raise ValueError(f"loaders: expected at least 1, got {loaders}")
        self.pool = pool
        self.timeout_s = timeout_s
        self.batch_timeout_s = batch_timeout_s
        self.workers = workers
        self.loaders = loaders
        self.batch_rows = batch_rows
        self.dnc = DncRepository(pool, timeout_s=timeout_s, batch_timeout_s=batch_timeout_s)
        self._executor: ProcessPoolExecutor | None = None

    def _pool_executor(self) -> ProcessPoolExecutor | None:
        if self.workers <= 0:
            return None
        if self._executor is None:
            self._executor = new_parse_pool(self.workers)
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def region_of(self, campaign_id: str) -> str:
        """The campaign's default region; CampaignNotFound (404) when there is no such campaign."""
        async with self.pool.acquire(timeout=self.timeout_s) as conn:
            return await campaign_region(conn, campaign_id, timeout_s=self.timeout_s)

    async def import_contacts(
        self,
        campaign_id: str,
        stream: AsyncIterator[bytes],
        *,
        fmt: Format,
        rejects: RejectSink,
        region: str | None = None,
        list_name: str = "",
        progress: Progress | None = None,
    ) -> ImportReport:
        async with contextlib.AsyncExitStack() as stack:
            conns = [
                await stack.enter_async_context(self.pool.acquire(timeout=self.timeout_s))
                for _ in range(self.loaders)
            ]
            default = await campaign_region(conns[0], campaign_id, timeout_s=self.timeout_s)
            loaders = [
                ContactLoader(conn, campaign_id, list_name, timeout_s=self.batch_timeout_s).load
                for conn in conns
            ]
            try:
                return await run_import(
                    stream,
                    ImportSettings(fmt=fmt, region=region or default, batch_rows=self.batch_rows),
                    loaders,
                    rejects,
                    campaign_id=campaign_id,
                    executor=self._pool_executor(),
                    workers=max(1, self.workers),
                    progress=progress,
                )
            except BrokenProcessPool:
                # A parsing process died (killed, out of memory): this pool takes no more
                # work. What was loaded stays (a re-run resumes); the next import forks anew.
                self.close()
                raise

    async def list_contacts(
        self, campaign_id: str, *, state: str | None = None, limit: int = 100, after: int = 0
    ) -> list[dict[str, Any]]:
        """Contacts by ``contact_id`` after ``after`` (keyset pagination)."""
        if state is not None and state not in STATES:
            raise InvalidRequest(f"state: expected one of {', '.join(STATES)}, got {state!r}")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit: expected 1..{MAX_PAGE}, got {limit}")
        await self.region_of(campaign_id)  # 404 for an unknown campaign
        rows = await self.pool.fetch(
            """
            SELECT contact_id, phone, tz, fields, priority, state, rank, next_at, attempts,
                   final_outcome, source_line, list_name, created_at
            FROM contacts
            WHERE campaign_id = $1 AND contact_id > $2 AND ($3::text IS NULL OR state = $3)
            ORDER BY contact_id LIMIT $4
            """,
            campaign_id,
            after,
            state,
            limit,
            timeout=self.timeout_s,
        )
        return [_contact_json(dict(r)) for r in rows]


def _contact_json(row: dict[str, Any]) -> dict[str, Any]:
    for key, value in row.items():
        if isinstance(value, datetime):
            # next_at is '-infinity' for a contact never scheduled: asyncpg gives datetime.min.
            row[key] = None if value == datetime.min else value.isoformat()
    return row
