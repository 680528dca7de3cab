"""Streamed contact import: bytes in, validated batches to a loader, rejects to a sink.

The stream is cut into *chunks* that end on a record boundary (a newline outside quotes), and
each chunk is parsed by :func:`engine.campaigns.contacts.parse.parse_chunk`, in a process pool
when one is given (phonenumbers costs tens of µs a number: one core is not enough for 50,000
rows/s). Chunks are taken back in file order, so the first line of a duplicated number is the
one kept, whatever the pool does. Memory is bounded by the chunks in flight and one batch being
loaded, not by the file.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from engine.campaigns.contacts.parse import (
    ContactRecord,
    Format,
    PackedChunk,
    Reject,
    csv_header,
    parse_chunk,
)
from engine.campaigns.contacts.pool_watch import watched
from engine.core.errors import InvalidRequest

CHUNK_CHARS = 256 * 1024  # ~5,000 rows a chunk: big enough to amortise the pool's pickling
BATCH_ROWS = 20_000  # rows per COPY + INSERT transaction
# No valid record is this long (64 fields of 1024 characters). A single line past it is a
# reject (its first RAW_CHARS characters kept) and reading goes on at the next line; a quote
# left open across lines for this long swallows the rest of the file, so the import stops
# there instead of buffering it all.
MAX_RECORD_CHARS = 4 * 1024 * 1024
RAW_CHARS = 1024
READ_BYTES = 1024 * 1024


class ImportFailed(InvalidRequest):
    """The stream as a whole cannot be read (not UTF-8, bad header, unbalanced quote)."""

    error_id = "import-failed"


class RejectSink(Protocol):
    def add(self, rejects: Sequence[Reject]) -> None: ...


@dataclass
class InlineRejects:
    """Keeps the first ``keep`` rejects (the API returns them) and counts all."""

    keep: int = 1000
    items: list[Reject] = field(default_factory=list)
    count: int = 0

    def add(self, rejects: Sequence[Reject]) -> None:
        self.count += len(rejects)
        room = self.keep - len(self.items)
        if room > 0:
            self.items.extend(rejects[:room])


class CsvRejects:
    """The rejects file: CSV with ``line,reason,raw``; created on the first reject."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: IO[str] | None = None
        self._writer: Any = None

    def add(self, rejects: Sequence[Reject]) -> None:
        if not rejects:
            return
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "reason", "raw"])
        self._writer.writerows((r.line, r.reason, r.raw) for r in rejects)
        self.count += len(rejects)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass
class ImportReport:
    campaign_id: str
    rows: int = 0  # records read (header and blank lines excluded)
    loaded: int = 0  # new contacts
    duplicates: int = 0  # valid rows whose number the list or the campaign already had
    rejected: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "rows": self.rows,
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
        }


Progress = Callable[[int, int], None]  # (bytes read so far, rows parsed so far)
Load = Callable[[Sequence[ContactRecord]], Awaitable[int]]


async def file_chunks(path: Path, size: int = READ_BYTES) -> AsyncIterator[bytes]:
    """A file as an async byte stream (reads off the event loop)."""
    with path.open("rb") as f:
        while True:
            block = await asyncio.to_thread(f.read, size)
            if not block:
                return
            yield block


def _record_end(text: str, fmt: Format, start: int = 0) -> int:
    """Index just past the last complete record of ``text`` (0 if none is complete)."""
    cut = text.rfind("\n")
    if fmt is Format.JSONL:
        return cut + 1
    # Outside quotes at a newline iff the quotes before it are even ("" counts 2).
    while cut >= start:
        if text.count('"', 0, cut) % 2 == 0:
            return cut + 1
        cut = text.rfind("\n", 0, cut)
    return 0


class _Splitter:
    """Bytes in, whole-record text chunks out, with the line number each starts on."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._buf = ""
        self.line = 1  # line number of the first line in _buf
        self.bytes = 0
        # A line longer than MAX_RECORD_CHARS being dropped: its reject and, for CSV, whether
        # a quote is open at the end of what was dropped so far.
        self._skipping: Reject | None = None
        self._open_quote = False

    def push(self, block: bytes, *, final: bool = False) -> None:
        self.bytes += len(block)
        try:
            self._buf += self._decoder.decode(block, final=final)
        except UnicodeDecodeError as err:
            # The line the bad byte is on: the lines before this block, then those before it
            # in the block (it used to say the first line of what was buffered).
            line = self.line + self._buf.count("\n") + err.object[: err.start].count(b"\n")
            raise ImportFailed(
                f"line {line}: expected UTF-8 text ({err.reason} at byte "
                f"{self.bytes - len(block) + err.start})"
            ) from None

    def pieces(self, *, final: bool = False) -> list[tuple[int, str] | Reject]:
        """Whole-record chunks as (first line, text), in file order, with a :class:`Reject`
        in its place for each line longer than MAX_RECORD_CHARS."""
        out: list[tuple[int, str] | Reject] = []
        while True:
            if self._skipping is not None:
                reject = self._skip(final=final)
                if reject is None:
                    break
                out.append(reject)
                continue
            if not (len(self._buf) >= CHUNK_CHARS or (final and self._buf)):
                break
            if (
                len(self._buf) > MAX_RECORD_CHARS
                and self._buf.find("\n", 0, MAX_RECORD_CHARS + 1) < 0
            ):
                # The next line alone is too long to be a record: drop it, keep reading.
                self._skipping = Reject(
                    self.line,
                    f"expected a record of at most {MAX_RECORD_CHARS} characters, got a longer"
                    f" line (raw: its first {RAW_CHARS} characters)",
                    self._buf[:RAW_CHARS],
                )
                continue
            if final:
                end = len(self._buf)
            else:
                # Look near CHUNK_CHARS first (even chunks for the pool), then anywhere.
                end = _record_end(self._buf[: CHUNK_CHARS * 2], self.fmt) or _record_end(
                    self._buf, self.fmt
                )
            if end == 0:
                if len(self._buf) > MAX_RECORD_CHARS:
                    raise ImportFailed(
                        f"line {self.line}: a record runs past {MAX_RECORD_CHARS} characters "
                        "(expected a closing quote)"
                    )
                break
            text, self._buf = self._buf[:end], self._buf[end:]
            out.append((self.line, text))
            self.line += text.count("\n")
        return out

    def _skip(self, *, final: bool) -> Reject | None:
        """Drop the over-long line being skipped; its reject once its end is read."""
        assert self._skipping is not None
        reject = self._skipping
        nl = self._buf.find("\n")
        dropped = self._buf if nl < 0 else self._buf[:nl]
        if self.fmt is Format.CSV and dropped.count('"') % 2:
            self._open_quote = not self._open_quote
        if nl < 0 and not final:
            self._buf = ""
            return None
        if self._open_quote and nl >= 0:
            # The line ends inside a quote: the record goes on over the next lines.
            raise ImportFailed(
                f"line {reject.line}: a record runs past {MAX_RECORD_CHARS} characters "
                "(expected a closing quote)"
            )
        self._buf = "" if nl < 0 else self._buf[nl + 1 :]
        self.line += 1
        self._skipping = None
        return reject

    def head(self) -> str:
        """What is buffered and not yet handed out (the start of the body, at first)."""
        return self._buf[:64]

    def take_header(self, *, final: bool = False) -> str | None:
        """The first record (the CSV header), once it is whole; None until then."""
        end = 0
        while True:
            nl = self._buf.find("\n", end)
            if nl < 0:
                if not final or not self._buf.strip():
                    return None
                nl = len(self._buf)
                break
            if self._buf.count('"', 0, nl) % 2 == 0:
                break
            end = nl + 1
        record, self._buf = self._buf[:nl], self._buf[nl + 1 :]
        self.line += record.count("\n") + 1
        return record.rstrip("\r")


@dataclass
class ImportSettings:
    fmt: Format
    region: str
    batch_rows: int = BATCH_ROWS
    need_tz: bool = True


async def run_import(
    stream: AsyncIterator[bytes],
    settings: ImportSettings,
    load: Load | Sequence[Load],
    rejects: RejectSink,
    *,
    campaign_id: str = "",
    executor: Executor | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> ImportReport:
    """Parse ``stream`` and ``load`` it batch by batch; rejects go to ``rejects``.

    ``executor`` None parses on a thread (small imports, tests); a process pool of ``workers``
    processes parses chunks in parallel.

    ``load`` may be several loaders (one a PostgreSQL connection): the contacts are then split
    by number (:func:`~engine.campaigns.contacts.parse.lane_of`) and the loaders insert their
    lanes at the same time, so PostgreSQL's share of the work, the largest, runs on more than
    one backend. Every line of a number is in one lane, in file order, so the first line of a
    number is still the one kept. If any loader fails the import stops; batches committed stay
    and running the same import again completes it (docs/contacts.md).
    """
    loads = [load] if callable(load) else list(load)
    if not loads:
        raise ValueError("run_import: expected at least one loader")
    lanes = len(loads)
    report = ImportReport(campaign_id)
    started = time.perf_counter()
    splitter = _Splitter(settings.fmt)
    header: list[str] | None = [] if settings.fmt is Format.JSONL else None
    jsonl_unchecked = settings.fmt is Format.JSONL
    loop = asyncio.get_running_loop()
    in_flight: deque[asyncio.Future[PackedChunk]] = deque()
    window = max(2, 2 * workers)
    queues: list[asyncio.Queue[list[ContactRecord] | None]] = [
        asyncio.Queue(maxsize=1) for _ in loads
    ]
    pending: list[list[ContactRecord]] = [[] for _ in loads]

    async def loader(lane: int) -> None:
        while (batch := await queues[lane].get()) is not None:
            loaded = await loads[lane](batch)
            report.loaded += loaded
            report.duplicates += len(batch) - loaded

    def submit(first_line: int, text: str) -> asyncio.Future[PackedChunk]:
        assert header is not None
        args = (settings.fmt, text, first_line, settings.region, header)
        if executor is None:
            return asyncio.ensure_future(asyncio.to_thread(_parse, *args, settings.need_tz, lanes))
        # watched: a worker killed mid-answer would otherwise hang the pool (pool_watch.py).
        pooled = loop.run_in_executor(executor, _parse, *args, settings.need_tz, lanes)
        return asyncio.ensure_future(watched(executor, pooled))

    load_tasks = [asyncio.create_task(loader(lane)) for lane in range(lanes)]

    async def put(lane: int, item: list[ContactRecord] | None) -> None:
        # Never wait on a full queue whose loader has died, nor while another loader has died:
        # its error is the one to raise.
        putting = asyncio.ensure_future(queues[lane].put(item))
        watched: set[asyncio.Future[Any]] = {putting, *(t for t in load_tasks if not t.done())}
        while not putting.done():
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {putting}:
                watched.discard(task)
                if task.cancelled() or task.exception() is not None:
                    putting.cancel()
                    task.result()  # raises the loader's error

    async def collect(result: PackedChunk) -> None:
        report.rows += result.rows
        report.rejected += len(result.rejects)
        rejects.add(result.rejects)
        for lane in range(lanes):
            part = result.records(lane)
            pending[lane].extend(part)
            while len(pending[lane]) >= settings.batch_rows:
                batch = pending[lane][: settings.batch_rows]
                pending[lane] = pending[lane][settings.batch_rows :]
                await put(lane, batch)
        if progress is not None:
            progress(splitter.bytes, report.rows)

    async def drain(keep: int) -> None:
        while len(in_flight) > keep:
            await collect(await in_flight.popleft())

    try:
        final = False
        chunks = aiter(stream)
        while not final:
            try:
                block = await anext(chunks)
            except StopAsyncIteration:
                block, final = b"", True
            splitter.push(block, final=final)
            if jsonl_unchecked and (start := splitter.head().lstrip()):
                # The document's pattern for JSON Lines bodies: empty, or starting with an
                # object. Anything else is not a JSON Lines list at all (a single number, text).
                if not start.startswith("{"):
                    raise ImportFailed("line 1: expected JSON Lines, one JSON object a line")
                jsonl_unchecked = False
            if header is None:
                record = splitter.take_header(final=final)
                if record is None:
                    if final:
                        raise ImportFailed("line 1: expected a CSV header with a 'phone' column")
                    continue
                try:
                    header = csv_header(record)
                except ValueError as err:
                    raise ImportFailed(str(err)) from None
            for piece in splitter.pieces(final=final):
                if isinstance(piece, Reject):
                    await drain(0)  # the rejects of the lines before it come first
                    report.rows += 1
                    report.rejected += 1
                    rejects.add([piece])
                    continue
                in_flight.append(submit(*piece))
                await drain(window)
        await drain(0)
        for lane in range(lanes):
            if pending[lane]:
                await put(lane, pending[lane])
            await put(lane, None)
        for task in load_tasks:
            await task
    finally:
        stopped = [t for t in load_tasks if not t.done()]
        for task in stopped:
            task.cancel()
        for fut in in_flight:
            fut.cancel()
        # A loader stopped mid-batch rolls its transaction back before its connection is
        # handed back to the pool: wait for that (its CancelledError is not this one's error).
        await asyncio.gather(*stopped, return_exceptions=True)
        report.seconds = time.perf_counter() - started
        report.bytes = splitter.bytes
    return report


def _parse(
    fmt: Format,
    text: str,
    first_line: int,
    region: str,
    header: list[str],
    need_tz: bool,
    lanes: int = 1,
) -> PackedChunk:
    # A module-level function: what a process pool can pickle. Its answer crosses back as
    # columns (PackedChunk), not as one object a row, already split into the loaders' lanes.
    return PackedChunk.of(
        parse_chunk(fmt, text, first_line, region, header, need_tz=need_tz), lanes
    )
