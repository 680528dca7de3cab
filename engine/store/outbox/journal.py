"""An append-only journal: one JSON line per record, and ack markers in the same file.

Why this shape:

- ``append`` is a single ``os.write`` on an ``O_APPEND`` descriptor. Once it
  returns, the record is in the kernel's page cache: a crash of the engine
  (SIGKILL, an unhandled exception) cannot lose it. Power loss can, until the
  next ``sync``; the lane calls ``sync`` (fsync) before it delivers a batch,
  so nothing is published that is not on disk first.
- Records carry a sequence number. ``ack(seq)`` appends a marker line
  ``{"ack": seq}`` ("everything up to seq was delivered") to the same file.
  Why not a cursor file or a truncate per ack: both are file-system metadata
  operations, which measured ~1 ms each here and were the top CPU item of
  the engine under load; an append is as cheap as the record itself. A crash
  between a delivery and its marker re-delivers that batch on the next start:
  sinks must be idempotent (CDR inserts are, on (call_id, attempt)) or
  tolerate an at-least-once duplicate (an event appears twice).
- Once everything is acknowledged and the file has grown past
  ``COMPACT_BYTES``, it is truncated; it only grows large while a sink is away.
- A torn last line (power lost mid-write) is skipped with a log line, never
  fatal: the records before it are still replayed.
- A write the disk refuses (``ENOSPC``, a read-only file system, ``EIO``) does
  not fail the producer: a call state change never waits on the disk. The
  records (and an ack marker) are kept in memory, in order, as the
  *unwritten tail* (bounded: ``MAX_UNWRITTEN`` lines), logged once at error
  level, and written first by the next write or ``flush`` (the lane retries
  with backoff). The lane delivers only records that are written: ``peek``
  stops at the tail, so nothing is published that is not on disk first. A
  crash while the tail is held loses it (as it would lose a record the disk
  never took); ``degraded`` says so, for the health check and the API's 503.
"""

from __future__ import annotations

import errno
import json
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core import clock, jsontext
from engine.telemetry.logging import get_logger

log = get_logger("engine.store.outbox")

COMPACT_BYTES = 1 << 20  # truncate a fully drained journal once it is this big
# Lines kept in memory while the disk refuses writes (per journal): beyond it a record is
# logged in full at error level and dropped (the engine would otherwise grow without end).
MAX_UNWRITTEN = 100_000
# While the disk refuses writes, an append, an ack or a health check tries the tail again at
# most this often (each try copies the whole tail); the lane's ``flush`` has its own backoff.
RETRY_S = 0.5


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts: float  # wall clock when accepted (for the age metric)
    payload: dict[str, Any]
    # The payload as JSON, as the journal line holds it ("" for a record read
    # back at open): a sink that sends JSON on (the event stream) reuses it
    # instead of encoding the payload a second time.
    encoded: str = field(default="", compare=False, repr=False)

    def json(self) -> str:
        return self.encoded or _dumps(self.payload)


class Journal:
    def __init__(self, directory: Path, name: str) -> None:
        self.directory = Path(directory)
        self.name = name
        self.path = self.directory / f"{name}.jsonl"
        self._fd: int | None = None
        self._pending: deque[Record] = deque()
        self._next_seq = 1
        self._acked = 0
        self._synced_seq = 0
        self._size = 0
        # The unwritten tail: lines the disk refused (bytes, record seq or 0 for an ack
        # marker), in order, written first next time.
        self._unwritten: list[tuple[bytes, int]] = []
        self._tail_records = 0  # records (not ack markers) in the tail
        self._next_try = 0.0  # clock.monotonic() before which ``retry`` does not write
        self._written_seq = 0  # the last record's seq that is in the file
        self.write_failures = 0
        self.dropped = 0
        self.last_error = ""

    # ------------------------------------------------------------ open / close

    def open(self) -> list[Record]:
        """Open (creating) the journal; returns the records not yet acknowledged."""
        self.directory.mkdir(parents=True, exist_ok=True)
        records: list[Record] = []
        acked = 0
        if self.path.exists():
            with self.path.open("rb") as fh:
                for lineno, raw in enumerate(fh, 1):
                    parsed = _parse(raw)
                    if parsed is None:
                        log.error(
                            "outbox: unreadable record skipped", journal=str(self.path), line=lineno
                        )
                    elif isinstance(parsed, int):
                        acked = max(acked, parsed)
                    else:
                        records.append(parsed)
        replay = [r for r in records if r.seq > acked]
        last_seq = max([acked, *(r.seq for r in records)])
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size
        if self._size and _last_byte(self.path) != b"\n":
            # A torn last line (a crash mid-write, or while a short write's rest was held in
            # memory): end it, so the next record is not glued onto it.
            self._size += os.write(self._fd, b"\n")
        self._acked = acked
        self._next_seq = last_seq + 1
        self._synced_seq = last_seq
        self._written_seq = last_seq
        self._unwritten = []
        self._tail_records = 0
        self.last_error = ""
        self._pending = deque(replay)
        return replay

    def close(self) -> None:
        if self._unwritten and self._fd is not None:
            try:
                self.flush()
            except OSError:
                log.error(
                    "outbox: journal closed with records the disk refused; they are lost",
                    journal=str(self.path),
                    records=self.unwritten,
                    lines=[line.decode(errors="replace") for line, _ in self._unwritten],
                )
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # ------------------------------------------------------------ writing

    def append(self, payload: dict[str, Any], ts: float) -> Record:
        """Write one record. If the disk refuses (full, read-only) it is kept in memory and
        written later (see the module docstring); never raises OSError."""
        return self.append_many((payload,), ts)[0]

    def append_many(self, payloads: Sequence[dict[str, Any]], ts: float) -> list[Record]:
        """Write records in one ``os.write`` (one call step's event and state change): the
        same lines as one ``append`` each, one syscall. If the disk refuses, all of them go
        to the unwritten tail, in order (never raises OSError)."""
        if self._fd is None:
            raise RuntimeError(f"journal {self.path} is not open")
        seq = self._next_seq
        stamp = _dumps(ts)
        records = []
        lines: list[tuple[bytes, int]] = []
        for payload in payloads:
            encoded = _dumps(payload)
            # The line is {"seq":..,"ts":..,"payload":..} put together around the
            # payload's JSON, which the record keeps (see Record.encoded).
            line = f'{{"seq":{seq},"ts":{stamp},"payload":{encoded}}}\n'
            lines.append((line.encode(), seq))
            records.append(Record(seq, ts, payload, encoded))
            seq += 1
        if len(self._unwritten) + len(records) > MAX_UNWRITTEN and not self.retry():
            # Bounded memory: beyond the tail's limit the records are logged in full (for a
            # manual fix) and dropped, never raised to the call state change.
            self.dropped += len(records)
            log.error(
                "outbox: disk refuses writes and the unwritten tail is full; records dropped",
                journal=str(self.path),
                records=[r.payload for r in records],
                error=self.last_error,
            )
            return records
        self._next_seq = seq
        self._pending.extend(records)
        self._emit(lines)
        return records

    def _write(self, line: dict[str, Any]) -> None:
        self._emit([(_dumps(line).encode() + b"\n", 0)])

    def _emit(self, lines: list[tuple[bytes, int]]) -> None:
        """Write the unwritten tail, then ``lines`` (each line's bytes and its record's seq,
        0 for an ack marker), in one write. What the disk refuses (all, or the rest after a
        short write) stays as the tail, in order."""
        if self._unwritten:
            self._hold(lines)
            self.retry()
            return
        data = lines[0][0] if len(lines) == 1 else b"".join(line for line, _ in lines)
        try:
            written = self._write_bytes(data)
        except OSError as err:
            self._refused(err)
            self._hold(lines)
            return
        if written == len(data):
            self._written_seq = self._next_seq - 1
            return
        self._hold(lines)  # a short write: the rest is the tail
        self._consume(written)
        self._refused(OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes"))

    def flush(self) -> None:
        """Write the unwritten tail now. Raises OSError if the disk still refuses."""
        if not self._unwritten:
            return
        data = b"".join(line for line, _ in self._unwritten)
        try:
            written = self._write_bytes(data)
        except OSError as err:
            self._refused(err)
            raise
        self._consume(written)
        if self._unwritten:
            short = OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes")
            self._refused(short)
            raise short
        log.warning(
            "outbox: the disk accepts journal writes again; records kept in memory written",
            journal=str(self.path),
        )
        self.last_error = ""

    def _hold(self, lines: list[tuple[bytes, int]]) -> None:
        self._unwritten.extend(lines)
        self._tail_records += sum(1 for _, seq in lines if seq)

    def _consume(self, written: int) -> None:
        """Take ``written`` bytes off the front of the tail (a line cut short keeps its rest)."""
        tail = self._unwritten
        i = 0
        while i < len(tail) and written >= len(tail[i][0]):
            line, seq = tail[i]
            written -= len(line)
            if seq:
                self._written_seq = seq
                self._tail_records -= 1
            i += 1
        if i < len(tail) and written:
            line, seq = tail[i]
            tail[i] = (line[written:], seq)
        del tail[:i]

    def try_flush(self) -> bool:
        """``flush``; False instead of raising while the disk still refuses."""
        try:
            self.flush()
        except OSError:
            return False
        return True

    def retry(self) -> bool:
        """``try_flush``, at most once per ``RETRY_S`` while the disk refuses; True when
        nothing waits in memory."""
        if not self._unwritten:
            return True
        if clock.monotonic() < self._next_try:
            return False
        return self.try_flush()

    def _refused(self, err: OSError) -> None:
        self._next_try = clock.monotonic() + RETRY_S
        self.write_failures += 1
        text = f"{errno.errorcode.get(err.errno or 0, type(err).__name__)}: {err}"
        if not self.last_error:  # once per outage, not once per record
            log.error(
                "outbox: the disk refuses journal writes; records kept in memory until it"
                " accepts them (free space under data_dir)",
                journal=str(self.path),
                error=text,
            )
        self.last_error = text

    def _write_bytes(self, data: bytes) -> int:
        """One ``os.write``; how many bytes the file took (a full disk may take fewer)."""
        if self._fd is None:
            raise RuntimeError(f"journal {self.path} is not open")
        written = os.write(self._fd, data)
        self._size += written
        return written

    def sync(self) -> None:
        """fsync everything appended so far (blocking: call it from a thread)."""
        fd = self._fd
        if fd is not None and self._synced_seq < self._written_seq:
            upto = self._written_seq  # never the unwritten tail: it is not in the file
            os.fsync(fd)
            self._synced_seq = max(self._synced_seq, upto)

    def needs_sync(self, upto: int) -> bool:
        return self._synced_seq < upto

    # ------------------------------------------------------------ reading / acking

    def peek(self, limit: int) -> list[Record]:
        """Up to ``limit`` pending records that are written (the unwritten tail waits)."""
        out = []
        for i in range(min(limit, len(self._pending))):
            record = self._pending[i]
            if record.seq > self._written_seq:
                break
            out.append(record)
        return out

    def ack(self, upto: int) -> None:
        """Everything up to ``upto`` was delivered."""
        while self._pending and self._pending[0].seq <= upto:
            self._pending.popleft()
        if upto <= self._acked:
            return
        self._acked = upto
        if (
            not self._pending
            and not self._unwritten
            and self._size >= COMPACT_BYTES
            and self._fd is not None
        ):
            # Fully drained and big: start the file over. Synchronous (no
            # await), so no append can slip in between the check and the
            # truncate.
            try:
                os.ftruncate(self._fd, 0)
            except OSError as err:
                log.warning("outbox: journal not truncated", journal=str(self.path), error=str(err))
            else:
                self._size = 0
                return
        # A marker the disk refuses joins the unwritten tail (never raised): lost in a
        # crash, it only re-delivers the batch, as a crash before it would. The new marker
        # supersedes the older ones waiting in the tail, and makes the records it covers
        # there pointless to write (the registry mirror acks what reached Redis, written or
        # not): both leave the tail, so a mirror acking every round does not fill it. The
        # tail's first line stays (a short write may have cut it).
        if len(self._unwritten) > 1:
            first, *rest = self._unwritten
            self._unwritten = [first, *(line for line in rest if line[1] > upto)]
            self._tail_records = sum(1 for _, seq in self._unwritten if seq)
        self._write({"ack": upto})

    @property
    def last_seq(self) -> int:
        """The sequence of the last record appended (0 before any)."""
        return self._next_seq - 1

    @property
    def degraded(self) -> bool:
        """The disk refused the last write: records wait in memory (see the docstring)."""
        return bool(self._unwritten)

    @property
    def unwritten(self) -> int:
        """Records (not ack markers) held in memory because the disk refused them."""
        return self._tail_records

    @property
    def depth(self) -> int:
        return len(self._pending)

    def oldest_ts(self) -> float | None:
        return self._pending[0].ts if self._pending else None


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def _dumps(value: Any) -> str:
    return jsontext.dumps(value)


def _parse(raw: bytes) -> Record | int | None:
    """A record, an ack marker (its seq), or None for an unreadable line."""
    try:
        data = json.loads(raw)
        if "ack" in data:
            return int(data["ack"])
        return Record(int(data["seq"]), float(data["ts"]), dict(data["payload"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
