"""The outbox when its disk refuses writes (ENOSPC: a full or read-only ``data_dir``).

The fault is injected where the journal writes (tests/fakes/full_disk.py):
``Journal._write_bytes`` (its one ``os.write``) raises ``OSError(ENOSPC)`` while the disk
is "full". A refused write never
reaches the producer (a call state change never waits on the disk): the records are kept in
memory, in order, and written (then delivered, in order, once each) when the disk takes
them again (docs/durability.md "A full or read-only data_dir").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from engine.store.outbox import Journal, Lane, Record
from engine.store.outbox import journal as journal_module
from engine.telemetry.metrics import Metrics
from tests.fakes.full_disk import Disk, disk
from tests.harness import wait_for

__all__ = ["disk"]  # the fixture


def test_a_refused_append_is_kept_in_memory_and_written_first_next_time(
    tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = Journal(tmp_path, "cdrs")
    j.open()
    j.append({"n": 1}, ts=1.0)
    disk.full = True
    j.append({"n": 2}, ts=2.0)
    # Within RETRY_S of a refusal an append does not try the (whole) tail again.
    tries = disk.refused
    j.append({"n": 3}, ts=3.0)
    assert disk.refused == tries == 1
    monkeypatch.setattr(journal_module, "RETRY_S", 0.0)
    j.close()
    disk.full = False
    j = Journal(tmp_path, "cdrs")
    assert [r.payload["n"] for r in j.open()] == [1]  # a close while full loses the tail
    disk.full = True
    # Never raises to the producer: the records wait in memory, in order.
    j.append({"n": 2}, ts=2.0)
    j.append_many([{"n": 3}, {"n": 4}], ts=3.0)
    j.ack(1)  # the marker waits too
    assert disk.refused >= 1
    assert j.degraded and j.unwritten == 3 and j.depth == 3
    assert j.peek(10) == []  # nothing is delivered that is not in the file
    disk.full = False
    j.append({"n": 5}, ts=5.0)  # the next write takes the tail first
    assert not j.degraded
    assert [r.payload["n"] for r in j.peek(10)] == [2, 3, 4, 5]
    j.close()
    replay = Journal(tmp_path, "cdrs").open()
    assert [(r.seq, r.payload["n"]) for r in replay] == [(2, 2), (3, 3), (4, 4), (5, 5)]


def test_a_short_write_keeps_only_the_rest_and_no_record_is_doubled(
    tmp_path: Path, disk: Disk
) -> None:
    j = Journal(tmp_path, "events")
    j.open()
    disk.short = 30  # the disk takes part of the first line, then is full
    j.append_many([{"n": 1, "pad": "x" * 40}, {"n": 2}], ts=1.0)
    assert j.degraded and j.peek(10) == []
    disk.full = False
    j.flush()
    assert [r.payload["n"] for r in j.peek(10)] == [1, 2]
    j.close()
    assert [r.payload["n"] for r in Journal(tmp_path, "events").open()] == [1, 2]


async def test_the_lane_writes_then_delivers_what_the_disk_refused_without_new_records(
    tmp_path: Path, disk: Disk
) -> None:
    got: list[int] = []

    async def sink(records: Sequence[Record]) -> None:
        got.extend(r.payload["n"] for r in records)

    metrics = Metrics()
    lane = Lane(Journal(tmp_path, "cdrs"), sink, metrics, backoff_s=(0.01, 0.05))
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        lane.put({"n": 1})
        assert await lane.wait_drained(10)
        disk.full = True
        for n in (2, 3, 4):
            lane.put({"n": n})  # accepted: the producer never sees the disk
        unwritten = metrics.outbox_unwritten.labels("cdrs")
        await wait_for(lambda: disk.refused >= 5, 10, "the lane's retries")  # with backoff
        assert got == [1] and unwritten._value.get() == 3
        disk.full = False  # space freed: no new record arrives, the lane's retry writes them
        assert await lane.wait_drained(10)
        assert got == [1, 2, 3, 4] and unwritten._value.get() == 0
    finally:
        lane.close()
        await task
    lane.journal.close()
    assert Journal(tmp_path, "cdrs").open() == []  # all acknowledged, none twice


def test_a_line_left_torn_by_a_full_disk_does_not_swallow_the_next_record(
    tmp_path: Path, disk: Disk
) -> None:
    j = Journal(tmp_path, "cdrs")
    j.open()
    j.append({"n": 1}, ts=1.0)
    disk.short = 10  # part of record 2 reaches the file; the engine dies holding the rest
    j.append({"n": 2}, ts=2.0)
    j.close()  # the disk is still full: the rest is lost (logged)
    disk.full = False
    again = Journal(tmp_path, "cdrs")
    assert [r.payload["n"] for r in again.open()] == [1]
    again.append({"n": 3}, ts=3.0)
    again.close()
    assert [r.payload["n"] for r in Journal(tmp_path, "cdrs").open()] == [1, 3]


def test_acknowledged_records_and_older_markers_leave_the_tail(tmp_path: Path, disk: Disk) -> None:
    # The registry mirror acks, every round, what reached Redis: written or not.
    j = Journal(tmp_path, "registry")
    j.open()
    j.append({"n": 0}, ts=0.0)
    disk.full = True
    for n in range(1, 200):
        j.append({"n": n}, ts=float(n))
        j.ack(j.last_seq)
    assert len(j._unwritten) <= 3  # not 400 lines: one record, one marker (and the first)
    disk.full = False
    assert j.try_flush()
    j.append({"n": 200}, ts=200.0)
    j.close()
    assert [r.payload["n"] for r in Journal(tmp_path, "registry").open()] == [200]


def test_the_unwritten_count_follows_the_tail(tmp_path: Path, disk: Disk) -> None:
    j = Journal(tmp_path, "events")
    j.open()
    disk.full = True
    j.append_many([{"n": 1}, {"n": 2}], ts=1.0)
    j.append({"n": 3}, ts=2.0)
    assert j.unwritten == 3
    disk.full = False
    disk.short = 10  # part of the tail is taken, then the disk is full again
    assert not j.try_flush()
    assert j.unwritten == 3  # the first line is cut, not written
    disk.full = False
    assert j.try_flush() and j.unwritten == 0
    j.close()
    assert [r.payload["n"] for r in Journal(tmp_path, "events").open()] == [1, 2, 3]
