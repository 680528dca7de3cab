"""The durable local outbox: journal (append, replay, ack) and lane (delivery)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.store.outbox import Journal, Lane, Record
from engine.store.outbox.journal import COMPACT_BYTES
from engine.store.outbox.lane import Screened
from engine.telemetry.metrics import Metrics


def test_unacknowledged_records_are_replayed_after_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path, "cdrs")
    assert j.open() == []
    for n in range(5):
        j.append({"n": n}, ts=1000.0 + n)
    j.ack(2)  # 1 and 2 delivered
    j.close()  # as if the process died here

    again = Journal(tmp_path, "cdrs")
    replay = again.open()
    assert [r.payload["n"] for r in replay] == [2, 3, 4]
    # Sequence numbers go on after the replayed ones, never reused.
    assert again.append({"n": 5}, ts=2000.0).seq == 6


def test_a_torn_last_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    j = Journal(tmp_path, "events")
    j.open()
    j.append({"a": 1}, ts=1.0)
    j.close()
    with (tmp_path / "events.jsonl").open("ab") as fh:
        fh.write(b'{"seq": 2, "ts": 2.0, "payl')  # power lost mid-write
    j = Journal(tmp_path, "events")
    replay = j.open()
    assert [r.payload for r in replay] == [{"a": 1}]
    # A record accepted after the reopen is not glued onto the torn fragment (it would
    # be unreadable, and lost, at the next replay).
    j.append({"a": 3}, ts=3.0)
    j.close()
    replay = Journal(tmp_path, "events").open()
    assert [r.payload for r in replay] == [{"a": 1}, {"a": 3}]


def test_a_fully_drained_big_journal_is_truncated(tmp_path: Path) -> None:
    j = Journal(tmp_path, "events")
    j.open()
    blob = "x" * 4096
    last = 0
    while j.path.stat().st_size < COMPACT_BYTES:
        last = j.append({"blob": blob}, ts=1.0).seq
    j.ack(last - 1)
    assert j.path.stat().st_size > COMPACT_BYTES  # one record still pending: kept
    j.ack(last)
    assert j.path.stat().st_size == 0
    j.close()
    assert Journal(tmp_path, "events").open() == []


def test_ack_markers_survive_a_restart_without_truncation(tmp_path: Path) -> None:
    j = Journal(tmp_path, "cdrs")
    j.open()
    seqs = [j.append({"n": n}, ts=1.0).seq for n in range(4)]
    j.ack(seqs[-1])  # all delivered; small file: a marker, no truncate
    j.append({"n": 4}, ts=2.0)
    j.close()
    assert [r.payload["n"] for r in Journal(tmp_path, "cdrs").open()] == [4]


class FlakySink:
    """Fails while ``down`` is set; records what it delivered."""

    def __init__(self) -> None:
        self.down = True
        self.delivered: list[int] = []
        self.tries = 0

    async def __call__(self, records: Sequence[Record]) -> None:
        self.tries += 1
        if self.down:
            raise ConnectionRefusedError("storage away")
        self.delivered.extend(r.payload["n"] for r in records)


async def test_lane_keeps_records_while_the_sink_is_away_and_delivers_in_order(
    tmp_path: Path,
) -> None:
    sink = FlakySink()
    metrics = Metrics()
    lane = Lane(Journal(tmp_path, "cdrs"), sink, metrics, batch=3, backoff_s=(0.01, 0.05))
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        for n in range(10):
            lane.put({"n": n})  # never waits on the sink
        assert lane.journal.depth == 10
        deadline = asyncio.get_running_loop().time() + 10
        while sink.tries < 3:  # it keeps trying while the sink is away
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert sink.delivered == []
        assert metrics.outbox_failures.labels("cdrs")._value.get() >= 3
        sink.down = False  # storage is back: no restart needed
        assert await lane.wait_drained(10)
        assert sink.delivered == list(range(10))
        assert metrics.outbox_depth.labels("cdrs")._value.get() == 0
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
    # Everything was acknowledged: a restart replays nothing.
    lane.journal.close()
    assert Journal(tmp_path, "cdrs").open() == []


async def test_a_sink_that_hangs_is_cut_by_the_timeout_and_retried(tmp_path: Path) -> None:
    calls = 0
    release = asyncio.Event()

    async def sink(records: Sequence[Record]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()  # a black-holed server: never answers

    lane = Lane(Journal(tmp_path, "x"), sink, Metrics(), timeout_s=0.05, backoff_s=(0.01, 0.02))
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        lane.put({"n": 1})
        assert await lane.wait_drained(10)
        assert calls >= 2
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()


async def test_a_per_record_sink_cut_short_is_not_delivered_twice(tmp_path: Path) -> None:
    """A batch that fails half way: the records before the failure are acknowledged,
    not re-delivered (for the event stream a re-delivery is a duplicate event)."""
    delivered: list[int] = []
    calls = 0

    async def publish(record: Record) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionError("redis restarted")
        delivered.append(record.payload["n"])

    lane = Lane(Journal(tmp_path, "events"), None, Metrics(), each=publish, backoff_s=(0.01, 0.02))
    lane.open()
    for n in range(6):
        lane.put({"n": n})  # one batch: the lane has not run yet
    task = asyncio.create_task(lane.run())
    try:
        assert await lane.wait_drained(10)
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()
    assert delivered == [0, 1, 2, 3, 4, 5]
    assert lane.failures == 1


def test_a_lane_takes_exactly_one_sink() -> None:
    async def sink(records: Sequence[Record]) -> None:
        return None

    async def each(record: Record) -> None:
        return None

    with pytest.raises(ValueError, match="exactly one of sink"):
        Lane(Journal(Path("/nonexistent"), "x"), sink, Metrics(), each=each)
    with pytest.raises(ValueError, match="exactly one of sink"):
        Lane(Journal(Path("/nonexistent"), "x"), None, Metrics())


async def test_new_records_do_not_cut_a_backoff_short(tmp_path: Path) -> None:
    """While storage is away the lane tries at its backoff pace, not once per
    accepted record; close() still ends a backoff at once."""
    sink = FlakySink()
    lane = Lane(Journal(tmp_path, "cdrs"), sink, Metrics(), backoff_s=(60.0, 60.0))
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        lane.put({"n": 0})
        deadline = asyncio.get_running_loop().time() + 10
        while sink.tries < 1:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        for n in range(1, 50):  # fifty calls end while the database is down
            lane.put({"n": n})
            await asyncio.sleep(0.002)
        assert sink.tries == 1
        assert lane.journal.depth == 50
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)  # the 60 s backoff is cut by close()
        lane.journal.close()


def test_append_many_writes_the_lines_that_append_writes(tmp_path: Path) -> None:
    one, many = Journal(tmp_path / "one", "j"), Journal(tmp_path / "many", "j")
    one.open()
    many.open()
    payloads: list[dict[str, Any]] = [
        {"type": "A", "n": 1},
        {"type": "B", "text": "ü"},
        {"type": "C"},
    ]
    for p in payloads:
        one.append(p, 5.0)
    records = many.append_many(payloads, 5.0)
    one.close()
    many.close()
    assert [r.seq for r in records] == [1, 2, 3]
    assert many.path.read_bytes() == one.path.read_bytes()
    reopened = Journal(tmp_path / "many", "j")
    assert [r.payload for r in reopened.open()] == payloads
    reopened.close()


class CountingJournal(Journal):
    """A journal that counts its fsyncs (and what was on disk when the sink ran)."""

    def __init__(self, directory: Path, name: str) -> None:
        super().__init__(directory, name)
        self.syncs = 0

    def sync(self) -> None:
        self.syncs += 1
        super().sync()


async def test_a_screened_out_batch_is_acknowledged_without_fsync_or_sink(tmp_path: Path) -> None:
    """The webhook lane's screen: a batch nobody wants is done without an fsync; a wanted
    one is fsynced before the sink sees it, as without a screen."""
    wanted_types = {"wanted"}
    screened: list[list[str]] = []
    delivered: list[tuple[str, bool]] = []
    journal = CountingJournal(tmp_path, "webhooks")

    async def screen(records: Sequence[Record]) -> Screened:
        screened.append([r.payload["type"] for r in records])
        return Screened(any(r.payload["type"] in wanted_types for r in records))

    async def sink(records: Sequence[Record]) -> None:
        delivered.extend(
            (r.payload["type"], not journal.needs_sync(r.seq)) for r in records
        )  # (type, on disk when delivered)

    lane = Lane(journal, sink, Metrics(), screen=screen)
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        lane.put({"type": "nobody"})
        assert await lane.wait_drained(10)
        assert journal.syncs == 0
        assert delivered == []
        lane.put({"type": "wanted"})
        assert await lane.wait_drained(10)
        assert journal.syncs == 1
        assert delivered == [("wanted", True)]
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
    assert screened == [["nobody"], ["wanted"]]
    # Both were acknowledged: a restart replays nothing.
    journal.close()
    assert Journal(tmp_path, "webhooks").open() == []


async def test_a_failing_screen_keeps_the_batch_and_retries(tmp_path: Path) -> None:
    tries = 0
    delivered: list[int] = []

    async def screen(records: Sequence[Record]) -> Screened:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionRefusedError("database away")
        return Screened(True)

    async def sink(records: Sequence[Record]) -> None:
        delivered.extend(r.payload["n"] for r in records)

    lane = Lane(
        Journal(tmp_path, "webhooks"), sink, Metrics(), screen=screen, backoff_s=(0.01, 0.02)
    )
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        lane.put({"n": 1})
        assert await lane.wait_drained(10)
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()
    assert tries == 3
    assert lane.failures == 2
    assert delivered == [1]


async def test_a_quiet_screen_holds_the_next_round_until_hurried(tmp_path: Path) -> None:
    """No webhook subscription at all: the screen says so (``quiet_s``) and the next round
    waits (records that arrive meanwhile share it); a drain wait cuts the pause short."""
    screened: list[list[int]] = []
    asked = asyncio.Event()

    async def screen(records: Sequence[Record]) -> Screened:
        screened.append([r.payload["n"] for r in records])
        asked.set()
        return Screened(False, quiet_s=3600.0)

    async def sink(records: Sequence[Record]) -> None:
        raise AssertionError("a screened-out batch reached the sink")

    lane = Lane(Journal(tmp_path, "webhooks"), sink, Metrics(), screen=screen)
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        lane.put({"n": 1})
        await asyncio.wait_for(asked.wait(), 10)
        assert screened == [[1]]
        lane.put({"n": 2})
        lane.put({"n": 3})
        for _ in range(20):  # the lane runs, and is held by the pause
            await asyncio.sleep(0)
        assert screened == [[1]]
        assert lane.journal.depth == 2
        assert await lane.wait_drained(10)  # hurried: one round for both
        assert screened == [[1], [2, 3]]
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()


async def test_stretch_next_holds_one_round_only() -> None:
    from engine.core.worker import WorkerSignals

    signals = WorkerSignals(0.0)
    await signals.pace()  # a first round: nothing before it to wait for
    signals.stretch_next(3600.0)
    held = asyncio.create_task(signals.pace())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not held.done()  # the stretched round waits ...
    signals.work_arrived()
    drain = asyncio.create_task(signals.wait_idle(10))  # a drain wait hurries the pause
    await asyncio.wait_for(held, 5)  # ... until hurried
    signals.idle.set()
    assert await drain
    await asyncio.wait_for(signals.pace(), 5)  # and the next one is not stretched


async def test_a_full_batch_is_followed_by_the_next_round_at_once(tmp_path: Path) -> None:
    """Pacing batches what arrives between rounds; with a backlog (the last round took a
    full batch) there is nothing to batch, so the next round does not wait. Before, the
    interval capped a lane at batch / min_interval records per second, and the backlog
    grew for as long as the rate held. Here the interval is an hour: paced rounds would
    deliver one batch, then nothing for the test's whole life."""
    delivered: list[int] = []

    async def sink(records: Sequence[Record]) -> None:
        delivered.extend(r.payload["n"] for r in records)

    lane = Lane(Journal(tmp_path, "events"), sink, Metrics(), batch=10, min_interval_s=3600.0)
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        lane.put_many([{"n": n} for n in range(45)])
        deadline = asyncio.get_running_loop().time() + 30
        while len(delivered) < 45:
            assert asyncio.get_running_loop().time() < deadline, delivered
            await asyncio.sleep(0.01)
        assert delivered == list(range(45))
        # The last round was not full: the lane paces again, so a new record waits for
        # the interval (it is not delivered until a drain or close hurries the lane).
        lane.put({"n": 45})
        for _ in range(20):
            await asyncio.sleep(0)
        assert delivered == list(range(45))
        assert await lane.wait_drained(10)
        assert delivered == list(range(46))
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
