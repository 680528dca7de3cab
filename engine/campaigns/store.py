"""Campaign rows and the dial-time claim, in PostgreSQL. Every call has a timeout.

A claim is the only way a contact is dialled: one statement moves the contact from ``ready`` to
``dialing`` and inserts its attempt as ``pending`` with the runner's fencing token, but only if
the campaign is running, no newer token has been shown for it (``campaigns.fence``) and the
number is on no DNC list at that moment. So the
attempt row exists before the originate is written, and a runner whose lease was taken over
claims nothing. A contact claimed twice is impossible: the UPDATE only matches ``ready`` rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.campaigns.model import CampaignSpec, CampaignState
from engine.store.pg.errors import PG_ERRORS, translate


@dataclass(frozen=True, slots=True)
class CampaignRow:
    campaign_id: str
    spec: CampaignSpec
    state: CampaignState
    fence: int
    created_at: datetime
    updated_at: datetime
    version: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.campaign_id,
            "state": self.state.value,
            "spec": self.spec.model_dump(mode="json"),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class Pick:
    """A contact the runner means to dial, with the ids chosen before the originate."""

    contact_id: int
    attempt_id: str
    call_id: str
    dialed_number: str


@dataclass(frozen=True, slots=True)
class Claimed:
    contact_id: int
    attempt_id: str
    call_id: str
    seq: int
    phone: str
    tz: str
    fields: dict[str, Any]
    attempts: int
    attempts_today: int
    attempts_day: Any
    # A callback for one agent (disposition "callback", callback_agent "same"): dialled only
    # while that agent is available, and queued for them alone.
    callback_agent: str | None = None


@dataclass(frozen=True, slots=True)
class OpenAttempt:
    attempt_id: str
    contact_id: int
    call_id: str
    state: str
    created_at: datetime


def _row(r: asyncpg.Record) -> CampaignRow:
    spec = r["spec"]
    return CampaignRow(
        campaign_id=r["campaign_id"],
        spec=CampaignSpec.model_validate(json.loads(spec) if isinstance(spec, str) else spec),
        state=CampaignState(r["state"]),
        fence=int(r["fence"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        version=int(r["version"]),
    )


def _claimed(r: asyncpg.Record, attempt_id: str, call_id: str, seq: int) -> Claimed:
    fields = r["fields"]
    return Claimed(
        contact_id=int(r["contact_id"]),
        attempt_id=attempt_id,
        call_id=call_id,
        seq=seq,
        phone=r["phone"],
        tz=r["tz"],
        fields=json.loads(fields) if isinstance(fields, str) else dict(fields),
        attempts=int(r["attempts"]),
        attempts_today=int(r["attempts_today"]),
        attempts_day=r["attempts_day"],
        callback_agent=r.get("callback_agent"),
    )


_CLAIM = """
WITH ok AS (
    SELECT 1 FROM campaigns WHERE campaign_id = $1 AND fence <= $2 AND state = 'running'
), picks AS (
    SELECT * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[])
        AS p(contact_id, attempt_id, call_id, dialed)
), claimed AS (
    UPDATE contacts c SET state = 'dialing', attempt_id = p.attempt_id, updated_at = now()
    FROM picks p
    WHERE c.contact_id = p.contact_id AND c.campaign_id = $1 AND c.state = 'ready'
      AND EXISTS (SELECT 1 FROM ok)
      -- DNC again at the claim: a number added since the hopper read it is not dialled.
      AND NOT EXISTS (SELECT 1 FROM dnc d WHERE d.phone = c.phone AND d.campaign_id IN ('', $1))
    RETURNING c.contact_id, c.phone, c.tz, c.fields, c.attempts, c.attempts_today,
              c.attempts_day, c.callback_agent, p.attempt_id, p.call_id, p.dialed
), inserted AS (
    INSERT INTO campaign_attempts
        (attempt_id, campaign_id, contact_id, call_id, fence, seq, phone, dialed_number)
    SELECT k.attempt_id, $1, k.contact_id, k.call_id, $2,
           1 + (SELECT count(*) FROM campaign_attempts a WHERE a.contact_id = k.contact_id),
           k.phone, k.dialed
    FROM claimed k
    RETURNING attempt_id, seq
)
SELECT k.*, i.seq FROM claimed k JOIN inserted i USING (attempt_id)
"""


class CampaignStore:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 5.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def _fetch(self, doing: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with asyncio.timeout(self._timeout_s):
                return list(await self._pool.fetch(sql, *args))
        except PG_ERRORS as err:
            raise translate(err, doing) from err

    async def create(self, campaign_id: str, spec: CampaignSpec) -> CampaignRow | None:
        """The new row, or None if the id is taken."""
        rows = await self._fetch(
            f"creating campaign {campaign_id}",
            "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2::jsonb) "
            "ON CONFLICT (campaign_id) DO NOTHING RETURNING *",
            campaign_id,
            spec.model_dump_json(),
        )
        return _row(rows[0]) if rows else None

    async def get(self, campaign_id: str) -> CampaignRow | None:
        rows = await self._fetch(
            f"reading campaign {campaign_id}",
            "SELECT * FROM campaigns WHERE campaign_id = $1",
            campaign_id,
        )
        return _row(rows[0]) if rows else None

    async def all(self) -> list[CampaignRow]:
        rows = await self._fetch(
            "listing campaigns", "SELECT * FROM campaigns ORDER BY campaign_id"
        )
        return [_row(r) for r in rows]

    async def update(
        self,
        campaign_id: str,
        *,
        spec: CampaignSpec | None = None,
        state: CampaignState | None = None,
        from_states: Sequence[CampaignState] = (),
        version: int | None = None,
    ) -> CampaignRow | None:
        """Change the spec and/or state; None if the row is not in ``from_states`` (or at
        ``version``) any more, so concurrent changes never overwrite each other silently."""
        rows = await self._fetch(
            f"updating campaign {campaign_id}",
            "UPDATE campaigns SET spec = COALESCE($2::jsonb, spec), state = COALESCE($3, state), "
            "updated_at = now(), version = version + 1 WHERE campaign_id = $1 "
            "AND (cardinality($4::text[]) = 0 OR state = ANY($4::text[])) "
            "AND ($5::int IS NULL OR version = $5) RETURNING *",
            campaign_id,
            spec.model_dump_json() if spec is not None else None,
            state.value if state is not None else None,
            [s.value for s in from_states],
            version,
        )
        return _row(rows[0]) if rows else None

    async def take_fence(self, campaign_id: str, token: int) -> bool:
        """Record a runner's fencing token; False if a newer one was already shown."""
        rows = await self._fetch(
            f"fencing campaign {campaign_id}",
            "UPDATE campaigns SET fence = $2 WHERE campaign_id = $1 AND fence <= $2 "
            "RETURNING fence",
            campaign_id,
            token,
        )
        return bool(rows)

    async def claim(self, campaign_id: str, fence: int, picks: Sequence[Pick]) -> list[Claimed]:
        """Move the picked contacts to ``dialing`` with a ``pending`` attempt each (those still
        ready, while the fence holds); returns what was claimed."""
        if not picks:
            return []
        rows = await self._fetch(
            f"claiming {len(picks)} contacts of {campaign_id}",
            _CLAIM,
            campaign_id,
            fence,
            [p.contact_id for p in picks],
            [p.attempt_id for p in picks],
            [p.call_id for p in picks],
            [p.dialed_number for p in picks],
        )
        return [_claimed(r, r["attempt_id"], r["call_id"], int(r["seq"])) for r in rows]

    async def open_attempts(self, campaign_id: str) -> list[OpenAttempt]:
        rows = await self._fetch(
            f"reading open attempts of {campaign_id}",
            "SELECT attempt_id, contact_id, call_id, state, created_at FROM campaign_attempts "
            "WHERE campaign_id = $1 AND state IN ('pending', 'dialing') ORDER BY created_at",
            campaign_id,
        )
        return [
            OpenAttempt(
                r["attempt_id"], int(r["contact_id"]), r["call_id"], r["state"], r["created_at"]
            )
            for r in rows
        ]

    async def contact_for(self, contact_id: int) -> Claimed | None:
        rows = await self._fetch(
            f"reading contact {contact_id}",
            "SELECT contact_id, phone, tz, fields, attempts, attempts_today, attempts_day, "
            "attempt_id FROM contacts WHERE contact_id = $1",
            contact_id,
        )
        if not rows:
            return None
        return _claimed(rows[0], rows[0]["attempt_id"] or "", "", 0)

    async def fetch(self, doing: str, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Read-only queries of the campaign tables (stats, reports, tests)."""
        return [dict(r) for r in await self._fetch(doing, sql, *args)]
