"""An append-only journal: one JSON line per record, acknowledged by a cursor.

Why this shape:

- ``append`` is a single ``os.write`` on an ``O_APPEND`` descriptor. Once it
  returns, the record is in the kernel's page cache: a crash of the engine
  (SIGKILL, an unhandled exception) cannot lose it. Power loss can, until the
  next ``sync``; the lane calls ``sync`` (fsync) before it delivers a batch,
  so nothing is published that is not on disk first.
- Records carry a sequence number. ``ack(seq)`` records "everything up to
  ``seq`` was delivered" in a small cursor file (written to a temp file,
  fsynced and renamed, so it is never torn). A crash between a delivery and
  its ack re-delivers that record on the next start: sinks must be idempotent
  (CDRs are, on (call_id, attempt)) or tolerate an at-least-once duplicate
  (events carry an ``event_id`` for that).
- When every record is acknowledged the file is truncated, so the journal
  stays small in steady state; it only grows while a sink is away.
- A torn last line (power lost mid-write) is skipped with a log line, never
  fatal: the records before it are still replayed.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.telemetry.logging import get_logger

log = get_logger("engine.store.outbox")

COMPACT_BYTES = 1 << 20  # truncate a fully drained journal once it is this big


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts: float  # wall clock when accepted (for the age metric)
    payload: dict[str, Any]


class Journal:
    def __init__(self, directory: Path, name: str) -> None:
        self.directory = Path(directory)
        self.name = name
        self.path = self.directory / f"{name}.jsonl"
        self._cursor_path = self.directory / f"{name}.cursor"
        self._fd: int | None = None
        self._pending: deque[Record] = deque()
        self._next_seq = 1
        self._acked = 0
        self._synced_seq = 0
        self._size = 0

    # ------------------------------------------------------------ open / close

    def open(self) -> list[Record]:
        """Open (creating) the journal; returns the records not yet acknowledged."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._acked = self._read_cursor()
        replay: list[Record] = []
        last_seq = self._acked
        if self.path.exists():
            with self.path.open("rb") as fh:
                for lineno, raw in enumerate(fh, 1):
                    record = _parse(raw)
                    if record is None:
                        log.error(
                            "outbox: unreadable record skipped",
                            journal=str(self.path),
                            line=lineno,
                        )
                        continue
                    last_seq = max(last_seq, record.seq)
                    if record.seq > self._acked:
                        replay.append(record)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._next_seq = last_seq + 1
        self._synced_seq = last_seq
        self._pending = deque(replay)
        return replay

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # ------------------------------------------------------------ writing

    def append(self, payload: dict[str, Any], ts: float) -> Record:
        """Write one record. Raises OSError if the disk refuses (full, read-only)."""
        if self._fd is None:
            raise RuntimeError(f"journal {self.path} is not open")
        record = Record(self._next_seq, ts, payload)
        line = json.dumps(
            {"seq": record.seq, "ts": ts, "payload": payload}, separators=(",", ":")
        ).encode()
        data = line + b"\n"
        written = os.write(self._fd, data)
        if written != len(data):  # pragma: no cover - regular files write fully or raise
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        self._size += written
        self._next_seq += 1
        self._pending.append(record)
        return record

    def sync(self) -> None:
        """fsync everything appended so far (blocking: call it from a thread)."""
        fd = self._fd
        if fd is not None and self._synced_seq < self._next_seq - 1:
            upto = self._next_seq - 1
            os.fsync(fd)
            self._synced_seq = max(self._synced_seq, upto)

    def needs_sync(self, upto: int) -> bool:
        return self._synced_seq < upto

    # ------------------------------------------------------------ reading / acking

    def peek(self, limit: int) -> list[Record]:
        return [self._pending[i] for i in range(min(limit, len(self._pending)))]

    def ack(self, upto: int) -> None:
        """Everything up to ``upto`` was delivered."""
        while self._pending and self._pending[0].seq <= upto:
            self._pending.popleft()
        self._acked = max(self._acked, upto)
        self._write_cursor(self._acked)
        if not self._pending and self._size >= COMPACT_BYTES and self._fd is not None:
            # Fully drained: start the file over. Synchronous (no await), so no
            # append can slip in between the check and the truncate.
            os.ftruncate(self._fd, 0)
            self._size = 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    def oldest_ts(self) -> float | None:
        return self._pending[0].ts if self._pending else None

    # ------------------------------------------------------------ cursor

    def _read_cursor(self) -> int:
        try:
            return int(self._cursor_path.read_text(encoding="ascii").strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.error(
                "outbox: unreadable cursor; replaying the whole journal",
                cursor=str(self._cursor_path),
            )
            return 0

    def _write_cursor(self, value: int) -> None:
        tmp = self._cursor_path.with_suffix(".cursor.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{value}\n".encode())
        finally:
            os.close(fd)
        os.replace(tmp, self._cursor_path)


def _parse(raw: bytes) -> Record | None:
    try:
        data = json.loads(raw)
        return Record(int(data["seq"]), float(data["ts"]), dict(data["payload"]))
    except (ValueError, KeyError, TypeError):
        return None
