"""Do-not-call lists in table ``dnc``: the global list (``campaign_id`` '') and one per campaign.

Numbers are parsed like contact numbers (engine/campaigns/contacts/parse.py), so a list written
``(415) 555-0100`` blocks ``+14155550100``. The dial-time check is :meth:`DncRepository.blocked`
(one query); the hopper (engine/campaigns/hopper.py) also excludes DNC numbers in its own SELECT.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.campaigns.contacts.importer import (
    ImportReport,
    ImportSettings,
    Progress,
    RejectSink,
    run_import,
)
from engine.campaigns.contacts.parse import ContactRecord, Format, parse_phone
from engine.campaigns.contacts.phones import PhoneError
from engine.core.errors import InvalidRequest

GLOBAL = ""  # campaign_id of the global list
MAX_NUMBERS = 10_000  # per add/remove/blocked call
MAX_PAGE = 1000
_ADD = """
INSERT INTO dnc (campaign_id, phone, source) SELECT $1, p, $3 FROM unnest($2::text[]) p
ON CONFLICT (campaign_id, phone) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class DncEntry:
    campaign_id: str
    phone: str
    source: str
    added_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            # null for the global list ("" would read as a campaign id)
            "campaign_id": self.campaign_id or None,
            "phone": self.phone,
            "source": self.source,
            "added_at": self.added_at.isoformat(),
        }


def normalize(phones: Iterable[str], region: str) -> tuple[list[str], list[str]]:
    """E.164 of each number, in order, without repeats; and the numbers that are not phone
    numbers, each with the reason (the valid ones still count: nothing good is lost)."""
    out: dict[str, None] = {}
    bad: list[str] = []
    for text in phones:
        try:
            out[parse_phone(str(text).strip(), region).e164] = None
        except PhoneError as err:
            bad.append(f"{text!r}: {err}")
    if len(out) > MAX_NUMBERS:
        raise InvalidRequest(f"expected at most {MAX_NUMBERS} numbers per call, got {len(out)}")
    return list(out), bad


class DncRepository:
    def __init__(
        self, pool: asyncpg.Pool, *, timeout_s: float = 5.0, batch_timeout_s: float = 30.0
    ) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.batch_timeout_s = batch_timeout_s

    async def add(self, campaign_id: str, phones: Sequence[str], *, source: str = "api") -> int:
        """Add E.164 ``phones``; returns how many were new."""
        return await self._insert(campaign_id, list(phones), source, self.timeout_s)

    async def remove(self, campaign_id: str, phones: Sequence[str]) -> int:
        status = await self.pool.execute(
            "DELETE FROM dnc WHERE campaign_id = $1 AND phone = ANY($2::text[])",
            campaign_id,
            list(phones),
            timeout=self.timeout_s,
        )
        return int(status.rsplit(" ", 1)[1])

    async def list(self, campaign_id: str, *, after: str = "", limit: int = 100) -> list[DncEntry]:
        """One list's numbers in phone order after ``after`` (keyset pagination)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit: expected 1..{MAX_PAGE}, got {limit}")
        rows = await self.pool.fetch(
            "SELECT campaign_id, phone, source, added_at FROM dnc"
            " WHERE campaign_id = $1 AND phone > $2 ORDER BY phone LIMIT $3",
            campaign_id,
            after,
            limit,
            timeout=self.timeout_s,
        )
        return [DncEntry(**dict(r)) for r in rows]

    async def blocked(self, campaign_id: str, phones: Sequence[str]) -> set[str]:
        """Which of ``phones`` (E.164) are on the global list or ``campaign_id``'s: one query."""
        if not phones:
            return set()
        rows = await self.pool.fetch(
            "SELECT DISTINCT phone FROM dnc"
            " WHERE phone = ANY($2::text[]) AND campaign_id IN ('', $1)",
            campaign_id,
            list(phones),
            timeout=self.timeout_s,
        )
        return {r["phone"] for r in rows}

    async def import_numbers(
        self,
        campaign_id: str,
        stream: AsyncIterator[bytes],
        *,
        fmt: Format,
        region: str,
        rejects: RejectSink,
        source: str = "import",
        progress: Progress | None = None,
    ) -> ImportReport:
        """A CSV (a ``phone`` column; others ignored) or JSONL list into one DNC list."""

        async def load(batch: Sequence[ContactRecord]) -> int:
            return await self._insert(
                campaign_id, [c[1] for c in batch], source, self.batch_timeout_s
            )

        return await run_import(
            stream,
            ImportSettings(fmt=fmt, region=region, need_tz=False),
            load,
            rejects,
            campaign_id=campaign_id,
            progress=progress,
        )

    async def _insert(
        self, campaign_id: str, phones: builtins.list[str], source: str, timeout_s: float
    ) -> int:
        status = await self.pool.execute(_ADD, campaign_id, phones, source, timeout=timeout_s)
        return int(status.rsplit(" ", 1)[1])
