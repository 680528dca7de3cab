"""Load validated contacts into PostgreSQL: COPY into a staging table, then one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per batch.

Why this shape: COPY is the fast way in, but it cannot skip rows that break a constraint, and a
list holds numbers the campaign may already have (an import re-run after a failure, a second
list). The staging table takes the batch as it is; the INSERT keeps the first line of each number
(``ORDER BY phone, line``: phone order also makes the unique index's inserts local, a fifth
less PostgreSQL time than file order) and skips what ``UNIQUE (campaign_id, phone)`` already
holds. Each batch is one transaction, so a failure loses at most the batch in flight, and running
the same import again inserts nothing twice: re-running is how an interrupted import resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from engine.campaigns.contacts.parse import ContactRecord
from engine.campaigns.errors import CampaignNotFound

DEFAULT_TIMEOUT_S = 30.0  # one batch (COPY + INSERT of ~20,000 rows); a statement, not the import

_STAGE = """
CREATE TEMP TABLE contacts_stage (
    line int, phone text COLLATE "C", tz text, priority int, fields text
) ON COMMIT DROP
"""
_MOVE = """
INSERT INTO contacts (campaign_id, phone, tz, priority, fields, source_line, list_name)
SELECT $1, phone, tz, priority, fields::jsonb, line, $2 FROM contacts_stage ORDER BY phone, line
ON CONFLICT (campaign_id, phone) DO NOTHING
"""
_STAGE_COLUMNS = ("line", "phone", "tz", "priority", "fields")


async def campaign_region(conn: Any, campaign_id: str, *, timeout_s: float) -> str:
    """The campaign's ``default_region`` (CampaignSpec), or :class:`CampaignNotFound`."""
    row = await conn.fetchrow(
        "SELECT spec->>'default_region' AS region FROM campaigns WHERE campaign_id = $1",
        campaign_id,
        timeout=timeout_s,
    )
    if row is None:
        raise CampaignNotFound(
            f"no campaign named {campaign_id!r}", details={"campaign_id": campaign_id}
        )
    return str(row["region"] or "US")


def _inserted(status: str) -> int:
    # asyncpg returns the command tag: "INSERT 0 <rows>".
    return int(status.rsplit(" ", 1)[1])


class ContactLoader:
    """Writes batches of one import over one connection (held for the import)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        campaign_id: str,
        list_name: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.conn = conn
        self.campaign_id = campaign_id
        self.list_name = list_name
        self.timeout_s = timeout_s

    async def load(self, contacts: Sequence[ContactRecord]) -> int:
        """Insert ``contacts``; returns how many were new (the rest were duplicates)."""
        if not contacts:
            return 0
        async with self.conn.transaction():
            await self.conn.execute(_STAGE, timeout=self.timeout_s)
            await self.conn.copy_records_to_table(
                "contacts_stage", records=contacts, columns=_STAGE_COLUMNS, timeout=self.timeout_s
            )
            status = await self.conn.execute(
                _MOVE, self.campaign_id, self.list_name, timeout=self.timeout_s
            )
        return _inserted(status)
