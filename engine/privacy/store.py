"""What PostgreSQL holds about one person, read for an export and changed by an erase.

A person's *calls* are the call ids of their campaign attempts (by number) and of the CDRs
whose caller id number or destination is one of their number's spellings (docs/privacy.md).
Their recordings are those calls' recordings; their stored webhook events those calls' events
(``order_key`` ``call:<id>``).

The erase is one transaction: either every row is changed or none is. It also matches the
pseudonym, so a second erase (after a crash, a lifted legal hold, or a call that was still in
progress) finds the rows the first one changed, and changes what is left.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from engine.privacy.subject import Subject, scrub_attempt, scrub_cdr
from engine.store.pg.errors import with_connection

T = TypeVar("T")

_CALLS = """
SELECT call_id FROM campaign_attempts WHERE phone = ANY($1::text[])
UNION
SELECT call_id FROM cdr WHERE caller_id_num = ANY($2::text[]) OR destination = ANY($2::text[])
"""

_CONTACTS = """
SELECT contact_id, campaign_id, phone, tz, fields, priority, state, attempts, final_outcome,
    list_name, source_line, callback_agent, next_at, created_at, updated_at
FROM contacts WHERE phone = $1 ORDER BY campaign_id, contact_id
"""

_ATTEMPTS = """
SELECT attempt_id, campaign_id, contact_id, call_id, seq, state, phone, dialed_number, trunk,
    created_at, answered_at, amd_status, amd_cause, agent_id, agent_at, seconds_to_agent,
    ended_at, cause, sip_code, outcome, counts, abandoned, disposition, next_at
FROM campaign_attempts WHERE phone = $1 OR call_id = ANY($2::text[])
ORDER BY created_at, attempt_id
"""

_CDRS = """
SELECT call_id, attempt, switch, direction, channel, caller_id_num, caller_id_name, destination,
    endpoint, trunk, started_at, answered_at, ended_at, duration_s, billsec_s, final_state,
    cause, cause_text, sip_code, variables, interrupted
FROM cdr WHERE call_id = ANY($1::text[]) ORDER BY started_at, call_id, attempt
"""

_DNC = "SELECT campaign_id, phone, source, added_at FROM dnc WHERE phone = $1 ORDER BY campaign_id"


@dataclass(frozen=True, slots=True)
class SubjectData:
    """One person's rows, as plain JSON-ready dicts (datetimes still datetimes)."""

    contacts: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    cdrs: list[dict[str, Any]]
    dnc: list[dict[str, Any]]
    call_ids: list[str]


@dataclass(frozen=True, slots=True)
class StoredRecording:
    recording_id: str
    state: str
    legal_hold: bool
    file: str | None
    started_at: float


@dataclass(slots=True)
class EraseResult:
    contacts_deleted: int = 0
    attempts_pseudonymised: int = 0
    cdrs_pseudonymised: int = 0
    webhook_events_scrubbed: int = 0
    recordings_shredded: int = 0
    recordings_held: list[str] = field(default_factory=list)
    # Recordings whose files must go (shredded now or earlier: a rerun removes what a crash
    # left), as (recording id, file relative to the store, started_at).
    files: list[StoredRecording] = field(default_factory=list)
    calls_in_progress: int = 0
    dnc_added: bool = False


def _lock_key(who: Subject) -> int:
    digest = hashlib.sha256(f"data-subject:{who.pseudonym}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SubjectStore:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float) -> None:
        self._pool = pool
        self._timeout = timeout_s

    async def _run(self, doing: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        return await with_connection(self._pool, self._timeout, doing, work)

    async def gather(self, who: Subject) -> SubjectData:
        """Everything the database holds under this number (the export), in one snapshot."""

        async def work(conn: asyncpg.Connection) -> SubjectData:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                calls = await _call_ids(conn, who, pseudonym=False)
                return SubjectData(
                    contacts=[dict(r) for r in await conn.fetch(_CONTACTS, who.e164)],
                    attempts=[dict(r) for r in await conn.fetch(_ATTEMPTS, who.e164, calls)],
                    cdrs=[dict(r) for r in await conn.fetch(_CDRS, calls)],
                    dnc=[dict(r) for r in await conn.fetch(_DNC, who.e164)],
                    call_ids=calls,
                )

        return await self._run("reading a data subject's rows", work)

    async def erase(self, who: Subject) -> EraseResult:
        """Every database change of an erase, in one transaction (docs/privacy.md)."""

        async def work(conn: asyncpg.Connection) -> EraseResult:
            out = EraseResult()
            async with conn.transaction():
                # Two erases of one person run one after the other.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(who))
                calls = await _call_ids(conn, who, pseudonym=True)
                await _recordings(conn, calls, out)
                status = await conn.execute("DELETE FROM contacts WHERE phone = $1", who.e164)
                out.contacts_deleted = int(status.rsplit(" ", 1)[1])
                await _attempts(conn, who, calls, out)
                await _cdrs(conn, who, calls, out)
                await _webhook_events(conn, who, calls, out)
                status = await conn.execute(
                    "INSERT INTO dnc (campaign_id, phone, source) VALUES ('', $1, 'erasure')"
                    " ON CONFLICT (campaign_id, phone) DO NOTHING",
                    who.e164,
                )
                out.dnc_added = status.endswith(" 1")
            return out

        return await self._run("erasing a data subject", work)


async def _call_ids(conn: asyncpg.Connection, who: Subject, *, pseudonym: bool) -> list[str]:
    phones = [who.e164, who.pseudonym] if pseudonym else [who.e164]
    values = who.match_values if pseudonym else list(who.forms)
    return sorted(r["call_id"] for r in await conn.fetch(_CALLS, phones, values))


async def _recordings(conn: asyncpg.Connection, calls: list[str], out: EraseResult) -> None:
    rows = await conn.fetch(
        "SELECT recording_id, state, legal_hold, file, started_at FROM recordings"
        " WHERE call_id = ANY($1::text[]) ORDER BY recording_id FOR UPDATE",
        calls,
    )
    shred = []
    for r in rows:
        rid = str(r["recording_id"])
        if r["legal_hold"]:
            if r["state"] != "deleted":
                out.recordings_held.append(rid)
            continue
        if r["state"] != "deleted":
            shred.append(r["recording_id"])
        out.files.append(
            StoredRecording(rid, r["state"], False, r["file"], r["started_at"].timestamp())
        )
    if shred:
        # The data key goes: whatever copies of the file exist can never be decrypted. A
        # recording still in progress is marked deleted too: its key is never stored (the
        # index refuses to move a deleted row) and a rerun removes its file.
        await conn.execute(
            "UPDATE recordings SET state = 'deleted', wrapped_key = NULL, deleted_at = now(),"
            " updated_at = now() WHERE recording_id = ANY($1::uuid[])",
            shred,
        )
    out.recordings_shredded = len(shred)


async def _attempts(
    conn: asyncpg.Connection, who: Subject, calls: list[str], out: EraseResult
) -> None:
    rows = await conn.fetch(
        "SELECT attempt_id, phone, dialed_number, state FROM campaign_attempts"
        " WHERE phone = ANY($1::text[]) OR call_id = ANY($2::text[]) FOR UPDATE",
        [who.e164, who.pseudonym],
        calls,
    )
    updates = []
    for r in rows:
        if r["state"] in ("pending", "dialing"):
            out.calls_in_progress += 1
        changes = scrub_attempt(dict(r), who)
        if changes:
            updates.append(
                (
                    r["attempt_id"],
                    changes.get("phone", r["phone"]),
                    changes.get("dialed_number", r["dialed_number"]),
                )
            )
    if updates:
        await conn.executemany(
            "UPDATE campaign_attempts SET phone = $2, dialed_number = $3 WHERE attempt_id = $1",
            updates,
        )
    out.attempts_pseudonymised = len(updates)


async def _cdrs(conn: asyncpg.Connection, who: Subject, calls: list[str], out: EraseResult) -> None:
    rows = await conn.fetch(
        "SELECT call_id, attempt, caller_id_num, caller_id_name, destination, channel,"
        " endpoint, variables FROM cdr WHERE call_id = ANY($1::text[]) FOR UPDATE",
        calls,
    )
    updates = []
    for r in rows:
        row = dict(r)
        changes = scrub_cdr(row, who)
        if changes:
            row.update(changes)
            updates.append(
                (
                    row["call_id"],
                    row["attempt"],
                    row["caller_id_num"],
                    row["caller_id_name"],
                    row["destination"],
                    row["channel"],
                    row["endpoint"],
                    row["variables"],
                )
            )
    if updates:
        await conn.executemany(
            "UPDATE cdr SET caller_id_num = $3, caller_id_name = $4, destination = $5,"
            " channel = $6, endpoint = $7, variables = $8 WHERE call_id = $1 AND attempt = $2",
            updates,
        )
    out.cdrs_pseudonymised = len(updates)


async def _webhook_events(
    conn: asyncpg.Connection, who: Subject, calls: list[str], out: EraseResult
) -> None:
    # Stored events (delivered or not) carry the CDR and the call's numbers; a pending
    # delivery then sends the pseudonymised payload.
    rows = await conn.fetch(
        "SELECT event_id, payload FROM webhook_events WHERE order_key = ANY($1::text[]) FOR UPDATE",
        [f"call:{c}" for c in calls],
    )
    updates = []
    for r in rows:
        new = who.scrub_json(r["payload"])
        if new != r["payload"]:
            updates.append((r["event_id"], new))
    if updates:
        await conn.executemany(
            "UPDATE webhook_events SET payload = $2 WHERE event_id = $1", updates
        )
    out.webhook_events_scrubbed = len(updates)
