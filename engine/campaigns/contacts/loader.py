"""Load validated contacts into PostgreSQL: COPY into a staging table, then
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per batch (or two INSERTs: below).

Why this shape: COPY is the fast way in, but it cannot skip rows that break a constraint, and a
list holds numbers the campaign may already have (an import re-run after a failure, a second
list). The staging table takes the batch as it is; the INSERT keeps the first line of each number
(``ORDER BY phone, line``: phone order also makes the unique index's inserts local, a fifth
less PostgreSQL time than file order) and skips what ``UNIQUE (campaign_id, phone)`` already
holds. Each batch is one transaction, so a failure loses at most the batch in flight, and running
the same import again inserts nothing twice: re-running is how an interrupted import resumes.

``ON CONFLICT`` is paid on every row: it probes the unique index before each insert, about a
fifth of what a contact costs PostgreSQL (docs/contacts.md, Figures), and most rows of a list are
numbers neither the campaign nor the list had before. So each loader keeps a fixed-size Bloom
filter of the numbers it has loaded in this import (:class:`SeenNumbers`; every line of a number
goes to the same loader, importer.py) and stages a batch in two tables: the rows whose number
certainly did not come before, and the others (``contacts_again``). The first are inserted
without ``ON CONFLICT``, in a savepoint, then the others with it. If the campaign already holds
one of the first kind (a re-run, a second list, another import at the same time) that insert
fails with a unique violation; the savepoint is rolled back and the whole batch goes in with
``ON CONFLICT``, as do that loader's later batches. The rows kept are the same either way.

The rows of the first kind need no staging table at all: they are COPYed straight into
``contacts``, sorted by phone, as COPY text that the parsing processes wrote
(:func:`~engine.campaigns.contacts.parse.copy_row`; the importer's process only sorts and joins
them). That skips writing, reading and sorting a staging table and the INSERT's per-row
executor work, and COPY writes the heap a page at a time: 10.8-12.3 µs of PostgreSQL CPU a row
against 12.3-13.9 (docs/contacts.md, round 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import asyncpg

from engine.campaigns.contacts.parse import COPY_ROW_COLUMNS, ContactRecord, copy_value
from engine.campaigns.errors import CampaignNotFound

DEFAULT_TIMEOUT_S = 30.0  # one batch (COPY + INSERT of ~20,000 rows); a statement, not the import

_STAGE = """
CREATE TEMP TABLE contacts_stage (
    phone text COLLATE "C", tz text, priority int, fields text, line int
) ON COMMIT DROP
"""
_STAGE_AGAIN = """
CREATE TEMP TABLE contacts_again (
    phone text COLLATE "C", tz text, priority int, fields text, line int
) ON COMMIT DROP
"""
# The rows whose number neither the loader nor (if it holds) the campaign had: no two alike, so
# the rows ON CONFLICT would keep, or a unique violation (23505) when the campaign holds one;
# then the rows whose number the loader may have had, with ON CONFLICT.
_MOVE_NEW = """
INSERT INTO contacts (campaign_id, phone, tz, priority, fields, source_line, list_name)
SELECT $1, phone, tz, priority, fields::jsonb, line, $2 FROM contacts_stage ORDER BY phone
"""
_MOVE_AGAIN = """
INSERT INTO contacts (campaign_id, phone, tz, priority, fields, source_line, list_name)
SELECT $1, phone, tz, priority, fields::jsonb, line, $2 FROM contacts_again ORDER BY phone, line
ON CONFLICT (campaign_id, phone) DO NOTHING
"""
# After a unique violation: the whole batch, both tables, with ON CONFLICT (how every batch went in
# before the two tables; docs/contacts.md).
_MOVE_BOTH = """
INSERT INTO contacts (campaign_id, phone, tz, priority, fields, source_line, list_name)
SELECT $1, phone, tz, priority, fields::jsonb, line, $2
FROM (SELECT * FROM contacts_stage UNION ALL SELECT * FROM contacts_again) AS s
ORDER BY phone, line
ON CONFLICT (campaign_id, phone) DO NOTHING
"""
# The rows that are certainly new go straight into contacts (ContactLoader._copy_new).
_COPY_COLUMNS = (*COPY_ROW_COLUMNS, "campaign_id", "list_name")
_STAGE_COLUMNS = ("phone", "tz", "priority", "fields", "line")
_SORT_MEMORY = "SET LOCAL work_mem = '64MB'"
_phone = itemgetter(1)


def copy_text(campaign_id: str, list_name: str, contacts: Sequence[ContactRecord]) -> bytes:
    """``contacts`` in phone order as the body of ``COPY contacts (phone, tz, priority, fields,
    source_line, campaign_id, list_name) FROM STDIN`` in text format: each row's
    :func:`~engine.campaigns.contacts.parse.copy_row` (encoded by the parsing process) and the
    two values every row shares."""
    if not contacts:
        return b""
    tail = f"\t{copy_value(campaign_id)}\t{copy_value(list_name)}\n"
    return (tail.join([c[2] for c in sorted(contacts, key=_phone)]) + tail).encode()


def stage_text(contacts: Sequence[ContactRecord]) -> bytes:
    """``contacts`` as the body of a COPY of the staging tables' columns, in the order given."""
    return ("\n".join([c[2] for c in contacts]) + "\n").encode() if contacts else b""


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


class SeenNumbers:
    """The numbers one loader has had in this import, as a Bloom filter of fixed size (4 MiB,
    two bits a number): memory stays flat whatever the file. A number it calls new certainly
    is; one it calls seen is sometimes new (about 0.1% of them at 500,000 numbers, more past
    millions), and such a row then goes through ``ON CONFLICT`` when it need not."""

    BITS = 1 << 25

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS >> 3)

    def split(
        self, contacts: Sequence[ContactRecord]
    ) -> tuple[list[ContactRecord], list[ContactRecord]]:
        """(rows whose number is certainly new, the others: seen in an earlier batch or earlier
        in this one), each in the order given; the new ones are marked as seen."""
        bits, mask = self._bits, self.BITS - 1
        new: list[ContactRecord] = []
        again: list[ContactRecord] = []
        for c in contacts:
            h = hash(c[1])  # str hashes differ between processes: the filter stays in this one
            i, j = h & mask, (h >> 25) & mask
            a, am, b, bm = i >> 3, 1 << (i & 7), j >> 3, 1 << (j & 7)
            if bits[a] & am and bits[b] & bm:
                again.append(c)
            else:
                bits[a] |= am
                bits[b] |= bm
                new.append(c)
        return new, again


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
        # False once a batch met a number the campaign had: ON CONFLICT from then on.
        self.new_numbers = True
        self._seen = SeenNumbers()

    async def load(self, contacts: Sequence[ContactRecord]) -> int:
        """Insert ``contacts``; returns how many were new (the rest were duplicates)."""
        if not contacts:
            return 0
        new, again = self._seen.split(contacts)
        async with self.conn.transaction():
            # The INSERTs sort up to a batch by phone: in memory, not in temp files.
            await self.conn.execute(_SORT_MEMORY, timeout=self.timeout_s)
            if self.new_numbers and new:
                try:
                    async with self.conn.transaction():  # a savepoint
                        copied = await self._copy_new(new)
                except asyncpg.UniqueViolationError:
                    self.new_numbers = False
                else:
                    if not again:
                        return copied
                    await self._stage("contacts_again", _STAGE_AGAIN, again)
                    return copied + _inserted(await self._move(_MOVE_AGAIN))
            # ON CONFLICT for the whole batch (new is empty, or the campaign had a number).
            await self._stage("contacts_stage", _STAGE, new)
            await self._stage("contacts_again", _STAGE_AGAIN, again)
            return _inserted(await self._move(_MOVE_BOTH))

    async def _copy_new(self, new: list[ContactRecord]) -> int:
        # Straight into contacts, in phone order (the unique index's inserts stay local): no
        # staging table, no INSERT ... SELECT, and COPY writes the heap a page at a time.
        return await self._copy("contacts", copy_text(self.campaign_id, self.list_name, new))

    async def _copy(self, table: str, body: bytes) -> int:
        status: str = await self.conn.copy_to_table(
            table,
            source=memoryview(body),  # a memoryview: bytes would be taken for a path
            columns=_COPY_COLUMNS if table == "contacts" else _STAGE_COLUMNS,
            format="text",
            timeout=self.timeout_s,
        )
        return int(status.rsplit(" ", 1)[1])  # "COPY <rows>"

    async def _stage(self, table: str, create: str, rows: list[ContactRecord]) -> None:
        await self.conn.execute(create, timeout=self.timeout_s)
        if rows:
            await self._copy(table, stage_text(rows))

    async def _move(self, sql: str) -> str:
        status: str = await self.conn.execute(
            sql, self.campaign_id, self.list_name, timeout=self.timeout_s
        )
        return status
