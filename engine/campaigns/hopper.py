"""The hopper: which contacts of a campaign to dial next. Read-only; the runner claims them.

Read-only SELECTs over the partial index ``contacts_hopper_hash_idx`` (migration 0014: keyed
on ``hashtext`` of the campaign and of the zone, then rank, priority DESC, next_at, contact_id;
``WHERE state = 'ready'``; the names themselves are compared on the row), by (rank, priority)
groups: per open zone and group, the index range of that zone, rank and priority *up to*
``now`` (the due contacts of a group are a prefix of its range, so contacts not yet due are
never read), cut at what is still needed and merged: one group after another, in pick order,
until ``limit`` rows are found. All of it runs in PostgreSQL in one round trip (the
``hopper_pick`` function of migrations 0006 and 0014, which runs :data:`PICK` per group and
:data:`PICK_REST`). Filtered by:

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

The groups are ranks 0-2 times the campaign's priorities, which are cached with its zones
(:meth:`Hopper.distinct_timezones`, ``tz_cache_s``): contacts of a priority value not in the
cache (a list imported since) are picked after the known groups until the cache refreshes (or
``refresh=True``), by one last ordered scan per zone that runs whenever the groups did not fill
the batch. Cost (bench/hopper.py, docs/contacts.md): one round trip; the groups before the
first that has due contacts cost one index descent per open zone each, and the groups after the
batch is full are not read; each (zone, group) range reads at most what is still needed, plus
the contacts at their attempt limits or on a DNC list that it skips.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

# Some (rank, priority) groups: per open zone and group, the index range of (zone, rank,
# priority) up to now (contacts_hopper_hash_idx, migration 0014), cut at what is still needed,
# then merged in pick order. $7/$8: the groups' ranks and priorities.
PICK = """
SELECT p.* FROM unnest($3::text[]) AS z(tz)
CROSS JOIN unnest($7::smallint[], $8::int[]) AS g(rank, priority)
CROSS JOIN LATERAL (
    SELECT c.contact_id, c.phone, c.tz, c.fields, c.priority, c.rank, c.next_at, c.attempts,
           c.attempts_day, c.attempts_today, c.callback_agent
    FROM contacts c
    -- The index's keys are the hashes (migration 0014); the texts are checked on the row, so
    -- two names with one hash only cost reading the other's entries, never a wrong pick.
    WHERE hashtext(c.campaign_id) = hashtext($1) AND hashtext(c.tz) = hashtext(z.tz)
      AND c.campaign_id = $1 AND c.state = 'ready' AND c.tz = z.tz
      AND c.rank = g.rank AND c.priority = g.priority
      AND c.next_at <= $2
      AND c.attempts < $4
      -- attempts_day is the contact's local date of its last counted attempt (the runner
      -- writes it so: engine/campaigns/attempt_end.py)
      AND (c.attempts_day IS DISTINCT FROM ($2 AT TIME ZONE c.tz)::date OR c.attempts_today < $5)
      AND NOT EXISTS (
          SELECT 1 FROM dnc d WHERE d.campaign_id IN ('', c.campaign_id) AND d.phone = c.phone
      )
    ORDER BY c.next_at, c.contact_id
    LIMIT $6
) p
ORDER BY p.rank, p.priority DESC, p.next_at, p.contact_id
LIMIT $6
"""
RANKS = (0, 1, 2)  # callbacks, due retries, never dialled

# The priorities the cache does not know yet (a list imported since): one ordered scan per zone,
# so no ready contact is ever left out, only picked after the known groups until the refresh.
PICK_REST = """
SELECT p.* FROM unnest($3::text[]) AS z(tz)
CROSS JOIN LATERAL (
    SELECT c.contact_id, c.phone, c.tz, c.fields, c.priority, c.rank, c.next_at, c.attempts,
           c.attempts_day, c.attempts_today, c.callback_agent
    FROM contacts c
    WHERE hashtext(c.campaign_id) = hashtext($1) AND hashtext(c.tz) = hashtext(z.tz)
      AND c.campaign_id = $1 AND c.state = 'ready' AND c.tz = z.tz
      AND c.priority <> ALL($7::int[])
      AND c.next_at <= $2
      AND c.attempts < $4
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

# The pick, in one round trip: migration 0014's hopper_pick runs PICK for each group in pick
# order until the batch is full, then PICK_REST (the same queries, their parameters named:
# PICK_IN_FUNCTION, REST_IN_FUNCTION; tests/integration/test_contacts_pg.py compares).
PICK_ALL = "SELECT * FROM hopper_pick($1, $2, $3, $4, $5, $6, $7, $8)"
PICK_IN_FUNCTION = {
    "$1": "p_campaign",
    "$2": "p_now",
    "$3": "p_zones",
    "$4": "p_max_attempts",
    "$5": "p_max_per_day",
    "$6": "need",
    "$7": "g_rank",
    "$8": "g_priority",
}
REST_IN_FUNCTION = {**PICK_IN_FUNCTION, "$7": "p_priorities"}

# The campaign's zones and priorities (its ready contacts'): a few hundred rows at most.
TIMEZONES = """
SELECT DISTINCT tz, priority FROM contacts WHERE campaign_id = $1 AND state = 'ready'
"""


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
        self._tzs: dict[str, tuple[float, tuple[str, ...], tuple[int, ...]]] = {}

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
        _, priorities = await self._shape(campaign_id)
        # The groups in pick order: rank, then priority highest first.
        groups = [(rank, p) for rank in RANKS for p in priorities]
        rows = await self.pool.fetch(
            PICK_ALL,
            campaign_id,
            now,
            list(open_tzs),
            max_attempts,
            max_per_day,
            limit,
            [g[0] for g in groups],
            [g[1] for g in groups],
            timeout=self.timeout_s,
        )
        return [ContactRow(**dict(r)) for r in rows]

    async def distinct_timezones(self, campaign_id: str, *, refresh: bool = False) -> list[str]:
        """The zones of the campaign's ready contacts, cached ``tz_cache_s`` (a few hundred at
        most; a new import shows up within that time, or at once with ``refresh``)."""
        zones, _ = await self._shape(campaign_id, refresh=refresh)
        return list(zones)

    async def _shape(
        self, campaign_id: str, *, refresh: bool = False
    ) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """(zones, priorities highest first) of the campaign's ready contacts, cached."""
        hit = self._tzs.get(campaign_id)
        now = time.monotonic()
        if hit is not None and not refresh and now - hit[0] < self.tz_cache_s:
            return hit[1], hit[2]
        rows = await self.pool.fetch(TIMEZONES, campaign_id, timeout=self.timeout_s)
        zones = tuple(sorted({r["tz"] for r in rows}))
        priorities = tuple(sorted({r["priority"] for r in rows}, reverse=True))
        self._tzs[campaign_id] = (now, zones, priorities)
        return zones, priorities
