"""The streamed importer: chunking on record boundaries, dedup (first line wins), rejects,
counts, failures that stop it, and the process-pool path giving the same result."""

from __future__ import annotations

import csv
import multiprocessing
import re
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from engine.campaigns.contacts import importer
from engine.campaigns.contacts.importer import (
    CsvRejects,
    ImportFailed,
    ImportSettings,
    InlineRejects,
    run_import,
)
from engine.campaigns.contacts.loader import SeenNumbers, copy_text
from engine.campaigns.contacts.parse import Contact, ContactRecord, Format, copy_row, lane_of


class FakeTable:
    """What ContactLoader does, in memory: UNIQUE(phone), first one in wins."""

    def __init__(self, fail_after_batches: int | None = None) -> None:
        self.rows: dict[str, Contact] = {}
        self.batches = 0
        self.fail_after = fail_after_batches

    async def load(self, batch: Sequence[ContactRecord]) -> int:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise ConnectionError("storage went away")
        self.batches += 1
        new = 0
        for c in sorted(map(from_copy, batch), key=lambda c: (c.phone, c.line)):
            if c.phone not in self.rows:
                self.rows[c.phone] = c
                new += 1
        return new


_UNESCAPE = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def from_copy(record: ContactRecord) -> Contact:
    """A record read back from its COPY text, as PostgreSQL reads it (text format)."""
    line, phone, text = record
    values = [re.sub(r"\\(.)", lambda m: _UNESCAPE[m[1]], v) for v in text.split("\t")]
    got = Contact(int(values[4]), values[0], values[1], int(values[2]), values[3])
    assert (got.line, got.phone) == (line, phone)
    return got


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def csv_list(n: int) -> str:
    lines = ["phone,name,notes"]
    for i in range(n):
        lines.append(f'+1415555{i % 1000:04d},Person {i},"multi\nline {i}"')
    return "\n".join(lines) + "\n"


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many chunks from a small file: boundaries fall inside quoted fields and UTF-8 sequences.
    monkeypatch.setattr(importer, "CHUNK_CHARS", 97)


@pytest.mark.parametrize("block", [1, 7, 4096])
async def test_chunks_cut_on_record_boundaries(small_chunks: None, block: int) -> None:
    data = csv_list(1500).encode()
    table = FakeTable()
    rejects = InlineRejects()
    report = await run_import(
        pieces(data, block), ImportSettings(Format.CSV, "US", batch_rows=200), table.load, rejects
    )
    assert (report.rows, report.loaded, report.duplicates, report.rejected) == (1500, 1000, 500, 0)
    # First line of each number wins; a record starts on line 2 + 2 per record (2 lines each).
    first = table.rows["+14155550007"]
    assert first.line == 2 + 2 * 7
    assert first.fields == {"name": "Person 7", "notes": "multi\nline 7"}
    assert report.bytes == len(data)


async def test_bom_crlf_and_non_ascii(small_chunks: None) -> None:
    data = "\ufeffphone,name\r\n+14155550100,Zoë Ñandú\r\n+14155550101,李雷\r\n".encode()
    table = FakeTable()
    report = await run_import(
        pieces(data, 3), ImportSettings(Format.CSV, "US"), table.load, InlineRejects()
    )
    assert report.loaded == 2
    assert table.rows["+14155550101"].fields == {"name": "李雷"}


async def test_rejects_file(tmp_path: Path) -> None:
    data = b"phone,name\n+14155550100,Ann\n12345,Bad\nnot a number,Worse\n"
    sink = CsvRejects(tmp_path / "rejects.csv")
    report = await run_import(
        pieces(data, 1024), ImportSettings(Format.CSV, "US"), FakeTable().load, sink
    )
    sink.close()
    assert (report.loaded, report.rejected) == (1, 2)
    with (tmp_path / "rejects.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "reason", "raw"]
    assert [(r[0], r[2]) for r in rows[1:]] == [("3", "12345,Bad"), ("4", "not a number,Worse")]
    assert "not a phone number" in rows[2][1]


async def test_inline_rejects_keep_the_first_and_count_all() -> None:
    data = ("phone\n" + "12345\n" * 30).encode()
    sink = InlineRejects(keep=10)
    await run_import(pieces(data, 64), ImportSettings(Format.CSV, "US"), FakeTable().load, sink)
    assert (len(sink.items), sink.count) == (10, 30)
    assert [r.line for r in sink.items] == list(range(2, 12))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"name,account\nAnn,1\n", "line 1: expected a header of comma-separated column names"),
        (b"", "line 1: expected a CSV header"),
        (b"phone\n+14155550100\n\xff\xfe\n", "^line 3: expected UTF-8 text"),
        (b"phone,name\n+14155550100,\xff\n", "^line 2: expected UTF-8 text"),
    ],
)
async def test_unreadable_streams_fail_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(ImportFailed, match=message):
        await run_import(
            pieces(data, 5), ImportSettings(Format.CSV, "US"), FakeTable().load, InlineRejects()
        )


async def test_unclosed_quote_stops_instead_of_buffering_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importer, "CHUNK_CHARS", 64)
    monkeypatch.setattr(importer, "MAX_RECORD_CHARS", 1000)
    data = b'phone,name\n+14155550100,"never closed\n' + b"+14155550101,x\n" * 200
    with pytest.raises(ImportFailed, match="line 2: a record runs past 1000 characters"):
        await run_import(
            pieces(data, 50), ImportSettings(Format.CSV, "US"), FakeTable().load, InlineRejects()
        )


async def test_loader_failure_stops_the_import_and_a_rerun_completes_it() -> None:
    data = csv_list(1000).encode()
    table = FakeTable(fail_after_batches=2)
    with pytest.raises(ConnectionError):
        await run_import(
            pieces(data, 4096),
            ImportSettings(Format.CSV, "US", batch_rows=150),
            table.load,
            InlineRejects(),
        )
    kept = len(table.rows)
    assert 0 < kept < 1000
    table.fail_after = None
    report = await run_import(
        pieces(data, 4096),
        ImportSettings(Format.CSV, "US", batch_rows=150),
        table.load,
        InlineRejects(),
    )
    assert len(table.rows) == 1000
    assert report.loaded == 1000 - kept  # nothing loaded twice


async def test_jsonl_stream(small_chunks: None) -> None:
    lines = [f'{{"phone": "+44 20 7946 {i:04d}", "n": {i}}}' for i in range(300)]
    data = ("\n".join(lines) + "\n").encode()
    table = FakeTable()
    report = await run_import(
        pieces(data, 33),
        ImportSettings(Format.JSONL, "US", batch_rows=50),
        table.load,
        InlineRejects(),
    )
    assert (report.rows, report.loaded) == (300, 300)
    assert table.rows["+442079460299"].fields == {"n": 299}
    assert table.rows["+442079460299"].line == 300


async def test_process_pool_gives_the_same_result() -> None:
    data = (csv_list(3000) + "12345,bad,row\n").encode()
    results = []
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        for executor in (None, pool):
            table, sink = FakeTable(), InlineRejects()
            report = await run_import(
                pieces(data, 65536),
                ImportSettings(Format.CSV, "US", batch_rows=500),
                table.load,
                sink,
                executor=executor,
                workers=2,
            )
            results.append((report.rows, report.loaded, report.rejected, table.rows, sink.items))
    assert results[0] == results[1]


class LaneTable(FakeTable):
    """One table shared by several loaders (one per lane); records which lane loaded what."""

    def __init__(self, lanes: int, fail_lane: int | None = None, fail_after: int = 0) -> None:
        super().__init__()
        self.lanes = lanes
        self.fail_lane, self.fail_after_lane = fail_lane, fail_after
        self.lane_batches = [0] * lanes
        self.wrong_lane = 0

    def loader(self, lane: int) -> importer.Load:
        async def load(batch: Sequence[ContactRecord]) -> int:
            if lane == self.fail_lane and self.lane_batches[lane] >= self.fail_after_lane:
                raise ConnectionError(f"lane {lane}: storage went away")
            self.lane_batches[lane] += 1
            self.wrong_lane += sum(lane_of(c[1], self.lanes) != lane for c in batch)
            return await self.load(batch)

        return load

    def loaders(self) -> list[importer.Load]:
        return [self.loader(lane) for lane in range(self.lanes)]


def _kept(table: FakeTable) -> dict[str, tuple[int, str]]:
    return {phone: (c.line, c.fields_json) for phone, c in table.rows.items()}


def numbers_list(n: int) -> str:
    # Numbers whose last two digits vary (both lanes), each given on two lines far apart (often
    # in different batches), so which line is kept depends on the loaders keeping file order.
    lines = ["phone,name"]
    for i in range(n):
        lines.append(f"+1415555{(i * 37) % (n // 2):04d},Person {i}")
    return "\n".join(lines) + "\n"


async def test_several_loaders_keep_the_first_line_of_each_number() -> None:
    data = (numbers_list(2000) + "12345,bad\n").encode()
    one = FakeTable()
    single = await run_import(
        pieces(data, 4096),
        ImportSettings(Format.CSV, "US", batch_rows=150),
        one.load,
        sink := InlineRejects(),
    )
    two = LaneTable(2)
    double = await run_import(
        pieces(data, 4096),
        ImportSettings(Format.CSV, "US", batch_rows=150),
        two.loaders(),
        sink2 := InlineRejects(),
    )
    assert (
        (double.rows, double.loaded, double.duplicates, double.rejected)
        == (
            single.rows,
            single.loaded,
            single.duplicates,
            single.rejected,
        )
        == (2001, 1000, 1000, 1)
    )
    assert _kept(two) == _kept(one)
    assert sink2.items == sink.items
    assert two.wrong_lane == 0 and min(two.lane_batches) >= 3  # both lanes did work


async def test_a_loader_failing_mid_file_then_a_rerun_gives_the_uninterrupted_result() -> None:
    data = numbers_list(2000).encode()
    clean = LaneTable(2)
    await run_import(
        pieces(data, 4096),
        ImportSettings(Format.CSV, "US", batch_rows=100),
        clean.loaders(),
        InlineRejects(),
    )
    table = LaneTable(2, fail_lane=1, fail_after=2)
    with pytest.raises(ConnectionError, match="lane 1"):
        await run_import(
            pieces(data, 4096),
            ImportSettings(Format.CSV, "US", batch_rows=100),
            table.loaders(),
            InlineRejects(),
        )
    kept = len(table.rows)
    assert 0 < kept < 1000
    table.fail_lane = None
    report = await run_import(
        pieces(data, 4096),
        ImportSettings(Format.CSV, "US", batch_rows=100),
        table.loaders(),
        InlineRejects(),
    )
    assert report.loaded == 1000 - kept  # nothing lost, nothing loaded twice
    assert _kept(table) == _kept(clean)  # and the same line of each number kept


async def test_a_parsing_process_dying_mid_file_then_a_rerun_gives_the_uninterrupted_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importer, "CHUNK_CHARS", 2048)  # ~60 chunks: work is left after the kill
    # 2,000 more numbers after the repeated ones: the kill comes long before their end (the
    # importer never runs more than a few batches ahead of the loaders).
    tail = "".join(f"+1415556{i:04d},Late {i}\n" for i in range(2000))
    data = (numbers_list(2000) + tail).encode()
    settings = ImportSettings(Format.CSV, "US", batch_rows=100)
    clean = LaneTable(2)
    await run_import(pieces(data, 4096), settings, clean.loaders(), InlineRejects())
    ctx = multiprocessing.get_context("forkserver")
    table = LaneTable(2)
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        lane0 = table.loader(0)

        async def kill_the_parsers_after_one_batch(batch: Sequence[ContactRecord]) -> int:
            loaded = await lane0(batch)
            for process in list(pool._processes.values()):
                process.kill()
            return loaded

        with pytest.raises(BrokenProcessPool):
            await run_import(
                pieces(data, 4096),
                settings,
                [kill_the_parsers_after_one_batch, table.loader(1)],
                InlineRejects(),
                executor=pool,
                workers=2,
            )
    kept = len(table.rows)
    assert 0 < kept < 3000
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        report = await run_import(
            pieces(data, 4096), settings, table.loaders(), InlineRejects(), executor=pool, workers=2
        )
    assert report.loaded == 3000 - kept  # nothing lost, nothing loaded twice
    assert _kept(table) == _kept(clean)  # and the same line of each number kept


def test_seen_numbers_calls_a_number_new_only_the_first_time() -> None:
    seen = SeenNumbers()
    first = [(i, f"+1415555{i:04d}", "") for i in range(3000)]
    new, again = seen.split([*first[:2000], first[5]])
    assert new == first[:2000] and again == [first[5]]  # a repeat within the batch
    new, again = seen.split(first[1000:])
    # No false negative: every number of an earlier batch is "again". A false positive (a new
    # number called seen) is allowed by a Bloom filter; at 3,000 numbers in 2**25 bits two bits
    # both set by others has a chance of about 1e-8.
    assert again == first[1000:2000] and new == first[2000:]


def test_copy_row_escapes_what_copy_text_format_reads_as_special() -> None:
    assert copy_row(7, "+14155550100", "Europe/London", 3, '{"a":"b"}') == (
        '+14155550100\tEurope/London\t3\t{"a":"b"}\t7'
    )
    # Each of backslash, tab, newline and CR, alone and together; "\N" is not NULL once escaped.
    assert copy_row(1, "+1", "a\tb", 0, '{"x":"\\\\N\n\r"}') == (
        '+1\ta\\tb\t0\t{"x":"\\\\\\\\N\\n\\r"}\t1'
    )
    assert copy_text(
        "c\\1",
        "l\t",
        [(2, "+2", "+2\tt\t0\t{}\t2"), (1, "+1", "+1\tt\t0\t{}\t1")],
    ) == (
        b"+1\tt\t0\t{}\t1\tc\\\\1\tl\\t\n+2\tt\t0\t{}\t2\tc\\\\1\tl\\t\n"
    )  # in phone order, the shared values escaped too


@pytest.mark.parametrize("fmt", [Format.CSV, Format.JSONL])
@pytest.mark.parametrize("last", [False, True])
async def test_a_line_too_long_for_a_record_is_a_reject_and_reading_goes_on(
    monkeypatch: pytest.MonkeyPatch, fmt: Format, last: bool
) -> None:
    # A 10 MB line used to stop the whole import ("expected a closing quote", though it had no
    # quote); now it is a reject with its line number and the rest of the file is loaded.
    monkeypatch.setattr(importer, "CHUNK_CHARS", 64)
    monkeypatch.setattr(importer, "MAX_RECORD_CHARS", 1000)
    monkeypatch.setattr(importer, "RAW_CHARS", 20)
    if fmt is Format.CSV:
        head, row = "phone,name\n", "+1415555{:04d},x\n"
        long = '+14155559999,"a""b"' + "x" * 5000
    else:
        head, row, long = "", '{{"phone": "+1415555{:04d}"}}\n', '{"phone": "' + "1" * 5000
    first = 2 if fmt is Format.CSV else 1
    rows = [row.format(i) for i in range(30)]
    text = head + "".join(rows[:10]) + long + ("" if last else "\n" + "".join(rows[10:]))
    table, rejects = FakeTable(), InlineRejects()
    report = await run_import(
        pieces(text.encode(), 50), ImportSettings(fmt, "US"), table.load, rejects
    )
    loaded = 10 if last else 30
    assert (report.rows, report.loaded, report.rejected) == (loaded + 1, loaded, 1)
    ((reject),) = rejects.items
    assert reject.line == first + 10 and reject.raw == long[:20]
    assert reject.reason == (
        "expected a record of at most 1000 characters, got a longer line"
        " (raw: its first 20 characters)"
    )
    assert sorted(table.rows) == sorted(f"+1415555{i:04d}" for i in range(loaded))
