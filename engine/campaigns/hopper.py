"""The hopper: which contacts of a campaign to dial next. Read-only; the runner claims them.

One SELECT: per open zone, a range of the partial index ``contacts_hopper_tz_idx`` (migration
0004: ``contacts_hopper_idx`` with the zone after the campaign; ``WHERE state = 'ready'``, in pick
order: rank, priority DESC, next_at, contact_id), cut at ``limit`` and merged, filtered by:

- ``next_at <= now`` (a retry or callback not yet due is skipped; fresh contacts have
  ``-infinity``);
- ``tz = ANY(open_tzs)``: the zones whose calling window is open now, from
  :func:`engine.campaigns.windows.open_timezones` over :meth:`Hopper.distinct_timezones`;
- ``attempts < max_attempts``, and ``attempts_today < max_per_day`` unless ``attempts_day`` is
  another day than the contact's own local date at ``now`` (the runner writes ``attempts_day``
  as that local date);
- no DNC entry for the number, global (``campaign_id`` '') or the campaign's (``NOT EXISTS`` on
  the ``dnc`` primary key, in the same query: a number added a second ago is not picked).

Order: callbacks (rank 0), due retries (1), never dialled (2); then priority, highest first; then
the longest due; then the oldest contact.

Cost (bench/hopper.py, docs/contacts.md): what a zone's range walks before it has ``limit``
rows: its not-yet-due callbacks and retries (they sort before its fresh contacts) and its
contacts at their attempt limits or on a DNC list.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

# One index range per open zone (contacts_hopper_tz_idx, migration 0004), each read in pick
# order and cut at the batch size, then merged: the shut zones' contacts are never read.
PICK = """
SELECT p.* FROM unnest($3::text[]) AS z(tz)
CROSS JOIN LATERAL (
    SELECT c.contact_id, c.phone, c.tz, c.fields, c.priority, c.rank, c.next_at, c.attempts,
           c.attempts_day, c.attempts_today, c.callback_agent
    FROM contacts c
    WHERE c.campaign_id = $1 AND c.state = 'ready' AND c.tz = z.tz
      AND c.next_at <= $2
      AND c.attempts < $4
      -- attempts_day is the contact's local date of its last counted attempt (the runner
      -- writes it so: engine/campaigns/runner.py put_end)
      AND (c.attempts_day IS DISTINCT FROM ($2 AT TIME ZONE c.tz)::date OR c.attempts_today < $5)
      AND NOT EXISTS (
          SELECT 1 FROM dnc d WHERE d.campaign_id IN ('', c.campaign_id) AND d.phone = c.phone
      )
    ORDER BY c.rank, c.priority DESC, c.next_at, c.contact_id
    LIMIT $6
) p
ORDER BY p.rank, p.priority DESC, p.next_at, p.contact_id
LIMIT $6
"""

TIMEZONES = "SELECT DISTINCT tz FROM contacts WHERE campaign_id = $1 AND state = 'ready'"


@dataclass(frozen=True, slots=True)
class ContactRow:
    contact_id: int
    phone: str
    tz: str
    fields: dict[str, Any]
    priority: int
    rank: int
    next_at: datetime
    attempts: int
    attempts_day: date | None
    attempts_today: int
    callback_agent: str | None


class Hopper:
    def __init__(
        self, pool: asyncpg.Pool, *, timeout_s: float = 2.0, tz_cache_s: float = 60.0
    ) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.tz_cache_s = tz_cache_s
        self._tzs: dict[str, tuple[float, tuple[str, ...]]] = {}

    async def pick(
        self,
        campaign_id: str,
        *,
        limit: int,
        now: datetime,
        open_tzs: Sequence[str],
        max_attempts: int,
        max_per_day: int,
    ) -> list[ContactRow]:
        """Up to ``limit`` dialable contacts in pick order (nothing is claimed)."""
        if not open_tzs or limit <= 0:
            return []
        rows = await self.pool.fetch(
            PICK,
            campaign_id,
            now,
            list(open_tzs),
            max_attempts,
            max_per_day,
            limit,
            timeout=self.timeout_s,
        )
        return [ContactRow(**dict(r)) for r in rows]

    async def distinct_timezones(self, campaign_id: str, *, refresh: bool = False) -> list[str]:
        """The zones of the campaign's ready contacts, cached ``tz_cache_s`` (a few hundred at
        most; a new import shows up within that time, or at once with ``refresh``)."""
        hit = self._tzs.get(campaign_id)
        now = time.monotonic()
        if hit is not None and not refresh and now - hit[0] < self.tz_cache_s:
            return list(hit[1])
        rows = await self.pool.fetch(TIMEZONES, campaign_id, timeout=self.timeout_s)
        zones = tuple(sorted(r["tz"] for r in rows))
        self._tzs[campaign_id] = (now, zones)
        return list(zones)
