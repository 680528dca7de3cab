"""Writing CDRs without losing them.

A CDR is written once, when a leg ends. The row goes into the ``cdrs`` lane of
the durable local outbox (engine/store/outbox): appended to a local journal
at once, so ending a call never waits on PostgreSQL, and inserted by the
lane's background task, which retries with backoff for as long as the
database is away and picks up again as soon as it answers. Inserts are
idempotent on (call_id, attempt), so a re-delivery after a crash between
insert and acknowledgement never duplicates a row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.calls.model import Call
from engine.core.clock import to_datetime
from engine.store.outbox import Lane, Record
from engine.store.pg.cdr import CdrRepository, CdrRow
from engine.telemetry.logging import get_logger

log = get_logger("engine.calls.cdr")

_CDR_FIELDS = tuple(f.name for f in fields(CdrRow))
#: The row's integer fields (``attempt``, ``cause``, ``sip_code``): JSON gives them as a
#: number, and ``true``/``false`` or ``1.5`` must not pass as one (``bool`` is an ``int``).
_INT_FIELDS = frozenset(f.name for f in fields(CdrRow) if f.type in ("int", "int | None"))


def cdr_from_call(call: Call) -> CdrRow:
    ended = call.ended_at if call.ended_at is not None else call.created_at
    answered = call.answered_at
    return CdrRow(
        call_id=call.call_id,
        attempt=call.attempt,
        switch=call.switch,
        direction=call.direction,
        channel=call.channel,
        caller_id_num=call.caller_id_num,
        caller_id_name=call.caller_id_name,
        destination=call.to,
        endpoint=call.endpoint,
        trunk=call.trunk,
        started_at=to_datetime(call.created_at),
        answered_at=to_datetime(answered) if answered is not None else None,
        ringing_at=to_datetime(call.ringing_at) if call.ringing_at is not None else None,
        ended_at=to_datetime(ended),
        final_state=call.state.value,
        cause=call.cause,
        cause_text=call.cause_text,
        sip_code=call.sip_code,
        variables=dict(call.variables),
        interrupted=call.interrupted,
    )


def _row_payload(row: CdrRow) -> dict[str, Any]:
    """The row as the journal keeps it: JSON values, datetimes as
    ``{"__dt__": iso}``. Field by field (``asdict`` deep-copied every value,
    and the JSON round trip after it cost as much again, once per call)."""
    out: dict[str, Any] = {}
    for name in _CDR_FIELDS:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = {"__dt__": value.isoformat()}
        elif name == "variables":
            value = dict(value)
        out[name] = value
    return out


def _check_ints(data: dict[str, Any]) -> None:
    """Raise TypeError naming the first integer field whose value is not a JSON integer
    (``true``, ``1.5``, ``"3"``); ``null`` stays allowed (the row rejects it where the field
    is not optional)."""
    for name in _INT_FIELDS:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name}: expected an integer, got {json.dumps(value, default=repr)}")


def _row_from_payload(data: dict[str, Any]) -> CdrRow:
    """A journalled (or spooled) row back as a ``CdrRow``; raises TypeError / ValueError /
    KeyError for a payload that is not a valid row (the lane sets such a record aside)."""
    _check_ints(data)
    values: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and set(v) == {"__dt__"}:
            v = datetime.fromisoformat(v["__dt__"])
        values[k] = v
    return CdrRow(**values)


def cdr_key(record: Record) -> str:
    """A ``cdrs`` lane record's name in a log line: ``call_id/attempt``."""
    row = record.payload.get("cdr")
    if isinstance(row, dict):
        return f"{row.get('call_id')}/{row.get('attempt')}"
    return f"seq={record.seq}"


class CdrWriter:
    """Accepts CDR rows into the outbox; ``sink`` is the lane's delivery function."""

    def __init__(self, repo: CdrRepository, lane: Lane | None = None) -> None:
        self._repo = repo
        self._lane = lane
        # Several engines (engine/cluster): the fencing token of the call's switch lease,
        # stamped on its CDR; and who hears that PostgreSQL refused a stale one.
        self._fence_of: Callable[[str], int | None] | None = None
        self._on_stale: Callable[[str, int], None] = lambda lease, token: None

    def fence(
        self, fence_of: Callable[[str], int | None], on_stale: Callable[[str, int], None]
    ) -> None:
        """Stamp every CDR with ``fence_of(switch)`` (the token of lease ``switch:<name>``)
        and write it only if no larger token was shown for that lease; ``on_stale(lease,
        token)`` is told of a refusal (the engine steps down from that switch)."""
        self._fence_of = fence_of
        self._on_stale = on_stale

    def attach(self, lane: Lane) -> None:
        self._lane = lane

    def write(self, call: Call) -> None:
        if self._lane is None:
            raise RuntimeError("CdrWriter has no outbox lane attached")
        payload: dict[str, Any] = {"cdr": _row_payload(cdr_from_call(call))}
        if self._fence_of is not None:
            token = self._fence_of(call.switch)
            if token is not None:
                payload["fence"] = [f"switch:{call.switch}", token]
        self._lane.put(payload)

    async def sink(self, records: Sequence[Record]) -> None:
        """The whole batch in one transaction (idempotent rows: a retried
        batch writes only what is missing)."""
        plain: list[CdrRow] = []
        fenced: list[tuple[CdrRow, str, int]] = []
        for record in records:
            row = _row_from_payload(record.payload["cdr"])
            fence = record.payload.get("fence")
            if fence is None:
                plain.append(row)
            else:
                fenced.append((row, str(fence[0]), int(fence[1])))
        await self._repo.insert_many(plain)
        refused = await self._repo.insert_fenced(fenced)
        if refused:
            # Not retried: their calls were adopted by the switch's new owner, which writes
            # their CDRs (inserts are idempotent on (call_id, attempt)).
            stale = {(name, tok) for r, name, tok in fenced if r in refused}
            log.error(
                "CDRs refused: stale fencing token (another engine owns the switch now)",
                calls=[r.call_id for r in refused],
                leases=sorted(f"{n}@{t}" for n, t in stale),
            )
            for name, tok in stale:
                self._on_stale(name, tok)

    def pending(self) -> list[CdrRow]:
        """Rows accepted but not yet in PostgreSQL (oldest first). A record that is not a
        valid row is left out: the lane sets it aside (its dead-letter file), and until
        then it must not fail every CDR read."""
        if self._lane is None:
            return []
        rows: list[CdrRow] = []
        for record in self._lane.journal.peek(self._lane.journal.depth):
            try:
                rows.append(_row_from_payload(record.payload["cdr"]))
            except (TypeError, ValueError, KeyError, AttributeError):
                continue
        return rows

    def import_legacy_spool(self, spool: Path) -> int:
        """Move rows of the pre-outbox spool file (``cdr-spool.jsonl``) into the outbox.

        Every line that is a readable CDR row is put into the ``cdrs`` lane. A line that is
        not (not UTF-8, not JSON, JSON that is not an object, not a valid row) is rejected:
        appended to ``cdr-spool.rejects`` next to the spool, one JSON object per line
        (``file``, ``line``, ``error``, ``text``: the line as it was), and logged with
        ``file:line`` and the reason; nothing is dropped silently.

        The spool is retired (renamed ``cdr-spool.imported``) only once the rows are on
        disk: the journal is fsynced, then the directories holding it and the rejects file,
        then the spool is renamed and its directory fsynced. If any of that fails the spool
        stays and is imported again at the next start (rows are idempotent on (call_id,
        attempt)). Returns how many rows were put into the outbox.
        """
        if not spool.exists():
            return 0
        if self._lane is None:
            raise RuntimeError("CdrWriter has no outbox lane attached")
        rows: list[dict[str, Any]] = []
        rejects: list[dict[str, Any]] = []
        for lineno, raw in enumerate(spool.read_bytes().splitlines(), 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                rejects.append(_reject(spool, lineno, raw.decode("utf-8", "replace"), err))
                continue
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise TypeError(f"expected a JSON object, got {type(data).__name__}")
                _row_from_payload(data)
            except Exception as err:  # any unreadable row is rejected, never fatal
                rejects.append(_reject(spool, lineno, line, err))
                continue
            rows.append(data)
        rejected = spool.with_suffix(".rejects")
        for r in rejects:
            log.error(
                "unreadable spooled CDR rejected: not imported, written to the rejects file",
                where=f"{spool}:{r['line']}",
                error=r["error"],
                rejects=str(rejected),
            )
        journal = self._lane.journal
        try:
            if rows:
                self._lane.put_many([{"cdr": row} for row in rows])
            journal.sync()
            if journal.needs_sync(journal.last_seq):
                raise OSError(f"journal {journal.path} not on disk after sync")
            _fsync_dir(journal.directory)  # a journal file created at this start
            if rejects:
                _append_durably(rejected, rejects)
            _fsync_dir(spool.parent)  # the outbox directory and the rejects file, if new
            spool.rename(spool.with_suffix(".imported"))
            _fsync_dir(spool.parent)
        except OSError as err:
            log.error(
                "pre-outbox CDR spool not retired (its rows may not be on disk);"
                " it is imported again at the next start",
                spool=str(spool),
                rows=len(rows),
                error=f"{type(err).__name__}: {err}",
            )
        return len(rows)


def _reject(spool: Path, lineno: int, text: str, err: Exception) -> dict[str, Any]:
    return {
        "file": spool.name,
        "line": lineno,
        "error": f"{type(err).__name__}: {err}",
        "text": text,
    }


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_durably(path: Path, entries: Sequence[dict[str, Any]]) -> None:
    with path.open("ab") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in entries).encode())
        fh.flush()
        os.fsync(fh.fileno())


class CdrReader:
    """Reads CDRs for the API: PostgreSQL plus the rows still in the outbox.

    A client that saw a call end can read its CDR at once, even while the
    row waits in the outbox for PostgreSQL (read-your-writes).
    """

    def __init__(self, repo: CdrRepository, writer: CdrWriter) -> None:
        self._repo = repo
        self._writer = writer

    async def for_call(self, call_id: str) -> list[CdrRow]:
        pending = {r.attempt: r for r in self._writer.pending() if r.call_id == call_id}
        stored = {r.attempt: r for r in await self._repo.for_call(call_id)}
        merged = {**pending, **stored}  # the stored row wins: it is the same row
        return [merged[k] for k in sorted(merged)]

    async def recent(self, limit: int = 100) -> list[CdrRow]:
        stored = await self._repo.recent(limit=limit)
        have = {(r.call_id, r.attempt) for r in stored}
        pending = [r for r in self._writer.pending() if (r.call_id, r.attempt) not in have]
        rows = sorted(
            [*stored, *pending],
            key=lambda r: (r.started_at, r.call_id, r.attempt),
            reverse=True,
        )
        return rows[:limit]
