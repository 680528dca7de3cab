"""Attempt outcomes and contact updates, written through the durable outbox (``campaigns`` lane).

The end of a call is a call-state change, and those never wait on storage: the runner appends
the record to the local journal and goes on; :class:`AttemptRepository.write` (the lane's sink)
applies it to PostgreSQL later, however long the database is away. Every statement is
idempotent: an attempt row only leaves an open state once, and a contact only moves when it
still points at that attempt, so a re-delivery after a crash changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Protocol

import asyncpg

from engine.core.clock import to_datetime
from engine.store.outbox import Record
from engine.store.pg.batch import Statements, write_batch


class RecordSink(Protocol):
    def put(self, payload: dict[str, Any]) -> None: ...


def _ts(value: float | None) -> datetime | None:
    return to_datetime(value) if value is not None else None


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


_DIALING = """
UPDATE campaign_attempts SET state = 'dialing', switch = $2, trunk = $3
WHERE attempt_id = $1 AND state = 'pending'
"""

_PROGRESS = """
UPDATE campaign_attempts SET
    answered_at = COALESCE($2, answered_at), amd_at = COALESCE($3, amd_at),
    amd_status = COALESCE($4, amd_status), amd_cause = COALESCE($5, amd_cause),
    agent_at = COALESCE($6, agent_at), agent_id = COALESCE($7, agent_id),
    seconds_to_agent = COALESCE($8, seconds_to_agent), trunk = COALESCE($9, trunk)
WHERE attempt_id = $1
"""

_END_ATTEMPT = """
UPDATE campaign_attempts SET
    state = $2, ended_at = $3, cause = $4, sip_code = $5, outcome = $6, counts = $7,
    abandoned = $8, next_at = $9, answered_at = COALESCE($10, answered_at),
    amd_status = COALESCE($11, amd_status), amd_cause = COALESCE($12, amd_cause),
    agent_id = COALESCE($13, agent_id), seconds_to_agent = COALESCE($14, seconds_to_agent),
    agent_at = COALESCE($15, agent_at), trunk = COALESCE($16, trunk)
WHERE attempt_id = $1 AND state IN ('pending', 'dialing', 'held')
"""

# $7: the contact's local day of this attempt; counted attempts of an earlier day reset.
_END_CONTACT = """
UPDATE contacts SET
    state = $3, rank = $4, next_at = COALESCE($5, next_at), final_outcome = $6,
    attempts = attempts + $8,
    attempts_today = CASE WHEN attempts_day = $7 THEN attempts_today + $8 ELSE $8 END,
    attempts_day = $7, attempt_id = NULL, callback_agent = $9, updated_at = now()
WHERE contact_id = $1 AND attempt_id = $2 AND state IN ('dialing', 'held')
"""

# An originate no switch link could take (engine/campaigns/flight_tracker.py ``unplace``):
# no attempt. The pending row goes and the contact is ready again as before the claim (rank,
# next_at, counters and callback agent untouched). Idempotent: both match only once.
_UNPLACED_ATTEMPT = """
DELETE FROM campaign_attempts
WHERE attempt_id = $1 AND state IN ('pending', 'dialing') AND outcome IS NULL
"""

_UNPLACED_CONTACT = """
UPDATE contacts SET state = 'ready', attempt_id = NULL, updated_at = now()
WHERE contact_id = $1 AND attempt_id = $2 AND state = 'dialing'
"""

_DISPOSITION_ATTEMPT = "UPDATE campaign_attempts SET disposition = $2 WHERE attempt_id = $1"

# A disposition arrives after the call (wrap-up): it moves a contact that is not being dialled.
_DISPOSITION_CONTACT = """
UPDATE contacts SET state = $2, rank = $3, next_at = COALESCE($4, next_at), final_outcome = $5,
    callback_agent = $6, updated_at = now()
WHERE contact_id = $1 AND state IN ('ready', 'done', 'held')
"""

_DNC = """
INSERT INTO dnc (campaign_id, phone, source) VALUES ($1, $2, $3)
ON CONFLICT (campaign_id, phone) DO NOTHING
"""


def _dialing(p: Mapping[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    return [(_DIALING, (p["attempt_id"], p.get("switch"), p.get("trunk")))]


def _progress(p: Mapping[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    args = (
        p["attempt_id"],
        _ts(p.get("answered_at")),
        _ts(p.get("amd_at")),
        p.get("amd_status"),
        p.get("amd_cause"),
        _ts(p.get("agent_at")),
        p.get("agent_id"),
        p.get("seconds_to_agent"),
        p.get("trunk"),
    )
    return [(_PROGRESS, args)]


def _end(p: Mapping[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    nxt = p["next"]
    attempt = (
        p["attempt_id"],
        p.get("state", "done"),
        _ts(p.get("ended_at")),
        p.get("cause"),
        p.get("sip_code"),
        p["outcome"],
        bool(nxt["counts"]),
        bool(p.get("abandoned", False)),
        _ts(nxt.get("next_at")),
        _ts(p.get("answered_at")),
        p.get("amd_status"),
        p.get("amd_cause"),
        p.get("agent_id"),
        p.get("seconds_to_agent"),
        _ts(p.get("agent_at")),
        p.get("trunk"),
    )
    contact = (
        int(p["contact_id"]),
        p["attempt_id"],
        nxt["state"],
        int(nxt["rank"]),
        _ts(nxt.get("next_at")),
        nxt.get("final_outcome"),
        _day(p.get("day")),
        1 if nxt["counts"] else 0,
        nxt.get("callback_agent"),
    )
    out = [(_END_ATTEMPT, attempt), (_END_CONTACT, contact)]
    if p.get("disposition"):
        out.append((_DISPOSITION_ATTEMPT, (p["attempt_id"], p["disposition"])))
    if p.get("dnc_phone"):
        out.append((_DNC, ("", p["dnc_phone"], f"disposition:{p['campaign_id']}")))
    return out


def _unplaced(p: Mapping[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    return [
        (_UNPLACED_ATTEMPT, (p["attempt_id"],)),
        (_UNPLACED_CONTACT, (int(p["contact_id"]), p["attempt_id"])),
    ]


def _disposition(p: Mapping[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    nxt = p["next"]
    out: list[tuple[str, tuple[Any, ...]]] = [
        (_DISPOSITION_ATTEMPT, (p["attempt_id"], p["disposition"])),
        (
            _DISPOSITION_CONTACT,
            (
                int(p["contact_id"]),
                nxt["state"],
                int(nxt["rank"]),
                _ts(nxt.get("next_at")),
                nxt.get("final_outcome"),
                nxt.get("callback_agent"),
            ),
        ),
    ]
    if p.get("dnc_phone"):
        out.append((_DNC, ("", p["dnc_phone"], f"disposition:{p['campaign_id']}")))
    return out


_BY_KIND: dict[str, Statements] = {
    "attempt_dialing": _dialing,
    "attempt_progress": _progress,
    "attempt_end": _end,
    "attempt_unplaced": _unplaced,
    "disposition": _disposition,
}


class AttemptRepository:
    """The ``campaigns`` lane's sink: one transaction per batch, in record order."""

    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 5.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def write(self, records: Sequence[Record]) -> None:
        await write_batch(
            self._pool,
            records,
            _BY_KIND,
            timeout_s=self._timeout_s,
            what="campaign attempt records",
        )
