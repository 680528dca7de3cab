"""The runner's hopper port over PostgreSQL (interim: replaced by engine/campaigns/hopper.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from engine.campaigns.store import CampaignStore

_PICK = """
SELECT c.contact_id, c.phone FROM contacts c
WHERE c.campaign_id = $1 AND c.state = 'ready' AND c.next_at <= $2 AND c.tz = ANY($3::text[])
  AND c.attempts < $4
  AND NOT (c.attempts_day IS NOT NULL
           AND c.attempts_day = (($2 AT TIME ZONE c.tz)::date) AND c.attempts_today >= $5)
  AND NOT EXISTS (SELECT 1 FROM dnc d WHERE d.phone = c.phone AND d.campaign_id IN ('', $1))
ORDER BY c.rank, c.priority DESC, c.next_at, c.contact_id
LIMIT $6
"""


class SqlHopper:
    def __init__(self, store: CampaignStore) -> None:
        self._store = store

    async def timezones(self, campaign_id: str) -> list[str]:
        rows = await self._store.fetch(
            "reading contact time zones",
            "SELECT DISTINCT tz FROM contacts WHERE campaign_id = $1 AND state = 'ready'",
            campaign_id,
        )
        return [str(r["tz"]) for r in rows]

    async def pick(
        self,
        campaign_id: str,
        *,
        limit: int,
        now: datetime,
        open_tzs: Sequence[str],
        max_attempts: int,
        max_per_day: int,
    ) -> list[tuple[int, str]]:
        rows = await self._store.fetch(
            "picking contacts",
            _PICK,
            campaign_id,
            now,
            list(open_tzs),
            max_attempts,
            max_per_day,
            limit,
        )
        return [(int(r["contact_id"]), str(r["phone"])) for r in rows]
