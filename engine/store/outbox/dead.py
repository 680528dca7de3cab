"""Dead letters: records a sink refused for a data reason, set aside so the lane moves on.

A lane delivers in order, so one record that PostgreSQL can never take (a value of the
wrong type, a constraint it violates, a row that cannot even be built) would hold every
record behind it forever. Such a record is written here, fsynced, and only then
acknowledged in the journal: ``<outbox>/<lane>.dead.jsonl`` is from then on the record
(docs/durability.md "The outbox" says how an operator puts a fixed one back).

Availability failures (refused, timed out, pool exhausted, server shutting down) are
never data errors: they keep the lane retrying and nothing is set aside.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import asyncpg

from engine.core import jsontext
from engine.store.errors import StoreUnavailable

# SQLSTATE classes of a server that is not usable right now (engine/store/pg/errors.py).
_UNAVAILABLE_CLASSES = ("08", "53", "57")

#: Raised by Python while a row is built from a record (a field of the wrong type or
#: missing, a value out of range): the record is wrong, not the database.
_BUILD_ERRORS: tuple[type[BaseException], ...] = (TypeError, ValueError, KeyError, AttributeError)


_DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    *_BUILD_ERRORS,
)


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and not any(cur is s for s in seen) and len(seen) < 16:
        seen.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return seen


def _unavailable(err: BaseException) -> bool:
    if isinstance(err, StoreUnavailable | OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(err, asyncpg.PostgresError):
        sqlstate = getattr(err, "sqlstate", None) or ""
        return sqlstate[:2] in _UNAVAILABLE_CLASSES
    return False


def is_data_error(err: BaseException) -> bool:
    """True when ``err`` says the record is wrong, not that storage is away.

    Data errors: asyncpg's ``DataError`` (SQLSTATE class 22, and a query argument asyncpg
    cannot encode), an ``IntegrityConstraintViolationError`` (class 23: not null, check,
    foreign key, a unique key other than the one an idempotent insert skips with ``ON
    CONFLICT``, which never raises), and TypeError / ValueError / KeyError /
    AttributeError from building the row. Anything in the chain (``__cause__``, then
    ``__context__``) that means "storage away" wins: such an error is never a data error.
    """
    chain = _chain(err)
    if any(_unavailable(e) for e in chain):
        return False
    return any(isinstance(e, _DATA_ERRORS) for e in chain)


class DeadLetters:
    """``<directory>/<lane>.dead.jsonl``: one JSON object per set-aside record."""

    def __init__(self, directory: Path, lane: str) -> None:
        self.path = Path(directory) / f"{lane}.dead.jsonl"

    def append(self, entry: dict[str, Any]) -> None:
        """Append one entry and fsync it (and the directory, for a file created now).
        Blocking: call it from a thread. Raises OSError if the disk refuses; the caller
        then keeps the record in the journal."""
        created = not self.path.exists()
        line = (jsontext.dumps(entry) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, line)
            if written != len(line):  # pragma: no cover - regular files write fully or raise
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)


def read_requeue(path: Path) -> list[dict[str, Any]]:
    """The records of a requeue file: dead-letter lines (``{"record": {...}, ...}``, as
    ``<lane>.dead.jsonl`` holds them, the record fixed by the operator), one a line; blank
    lines skipped. Raises ValueError naming the line if any line is not one: then nothing
    of the file is taken."""
    payloads: list[dict[str, Any]] = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: not JSON ({err})") from err
        if not isinstance(entry, dict) or not isinstance(entry.get("record"), dict):
            raise ValueError(f'{path}:{lineno}: not a dead-letter line (no "record" object)')
        payloads.append(entry["record"])
    return payloads


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
