"""A durable floor for the event sequence, so it never restarts when Redis loses its data.

The sequence counter lives in Redis. If Redis comes back empty (restarted
without persistence, FLUSHALL, a failover to an empty replica), a plain INCR
would start again at 1, and a WebSocket client resuming with ``since=5000``
would silently wait for numbers that now mean other events.

So each engine keeps, in one small file under its data directory, a number
``reserved`` that is at least every sequence number it has seen issued. The
publish script re-seeds a missing counter from it. Writing the file on every
event would put an fsync on the event path, so we reserve ahead instead: when
an observed sequence comes within ``margin // 2`` of ``reserved``, a
background write moves ``reserved`` to ``seen + margin``. A crash can thus
lose at most the unwritten reservation, never go below an issued number
(unless more than ``margin // 2`` events are issued during one fsync). The
price: after data loss the sequence jumps ahead by up to ``margin``, which
clients are told about with a ``gap`` notice anyway.

File format: the decimal number and a newline, replaced atomically (write a
temp file, fsync, rename, fsync the directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from engine.store.errors import StoreError
from engine.telemetry.logging import get_logger

log = get_logger("engine.store.redis.seq_floor")

DEFAULT_MARGIN = 10_000


class SeqFloor:
    """The highest event sequence known to be issued, and a durable reservation above it."""

    def __init__(self, path: Path, *, margin: int = DEFAULT_MARGIN) -> None:
        if margin < 2:
            raise ValueError(f"margin: expected >= 2, got {margin}")
        self.path = Path(path)
        self.margin = margin
        # Exact: the highest sequence this process has seen (published or read).
        self.seen = 0
        # Durable: on disk, >= every sequence issued (see the module docstring).
        self.reserved = _read(self.path)
        self._writer: asyncio.Task[None] | None = None

    @property
    def reseed(self) -> int:
        """Where a lost counter restarts: above everything ever issued."""
        return max(self.reserved, self.seen)

    def observe(self, seq: int) -> None:
        """Record that ``seq`` was issued; reserve further ahead on disk when due."""
        if seq > self.seen:
            self.seen = seq
        if self.seen > self.reserved - self.margin // 2 and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._persist(), name="event-seq-floor"
            )

    async def flush(self) -> None:
        """Wait for a pending write (shutdown, tests)."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(writer)

    async def _persist(self) -> None:
        try:
            while self.seen > self.reserved - self.margin // 2:
                target = self.seen + self.margin
                try:
                    await asyncio.to_thread(_write, self.path, target)
                except OSError as err:
                    # Not fatal for publishing: the in-memory floor still
                    # protects this process; only a restart plus Redis data
                    # loss could reuse numbers. Retried on the next event.
                    log.error("event sequence floor not saved", path=str(self.path), error=str(err))
                    return
                self.reserved = target
        finally:
            self._writer = None


def _read(path: Path) -> int:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: cannot read the event sequence floor: {err}") from err
    if not text.isascii() or not text.isdigit():
        raise StoreError(
            f"{path}: expected a non-negative integer (the event sequence floor), "
            f"got {text[:40]!r}; it is written by the engine only: restore it, "
            "or remove it if Redis still has its data"
        )
    return int(text)


def _write(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{value}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    # The rename itself must reach the disk, or a crash could bring back the old file.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
