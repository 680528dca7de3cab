"""Dead letters: a record a sink refuses for a data reason is set aside, not retried forever;
an availability failure is retried and sets nothing aside (engine/store/outbox/dead.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.store.errors import StoreError, StoreUnavailable
from engine.store.outbox import Journal, Lane, Record
from engine.store.outbox.dead import is_data_error
from engine.telemetry.metrics import Metrics
from tests.fakes.full_disk import Disk, disk

__all__ = ["disk"]  # the fixture


def wrapped(err: BaseException, cls: type[StoreError] = StoreError) -> StoreError:
    """``err`` as the repositories raise it: ``raise translate(err) from err``."""
    try:
        raise cls(f"postgres error: {err}") from err
    except StoreError as store_err:
        return store_err


UNAVAILABLE: dict[str, BaseException] = {
    "refused": wrapped(ConnectionRefusedError(111, "Connection refused"), StoreUnavailable),
    "timeout": TimeoutError(),
    "pool_closed": wrapped(asyncpg.InterfaceError("pool is closing"), StoreUnavailable),
    "too_many_connections": wrapped(asyncpg.TooManyConnectionsError("too many clients")),
    "admin_shutdown": wrapped(asyncpg.AdminShutdownError("terminating connection")),
    "starting_up": wrapped(asyncpg.CannotConnectNowError("the database system is starting up")),
    "connection_lost": wrapped(asyncpg.ConnectionDoesNotExistError("connection was closed")),
}

DATA: dict[str, BaseException] = {
    "data_error": wrapped(asyncpg.CharacterNotInRepertoireError("invalid byte sequence")),
    "check_violation": wrapped(asyncpg.CheckViolationError("violates check constraint")),
    "not_null": wrapped(asyncpg.NotNullViolationError("null value in column")),
    "foreign_key": wrapped(asyncpg.ForeignKeyViolationError("violates foreign key")),
    "type_error": TypeError("'<' not supported between instances of 'str' and 'int'"),
    "value_error": ValueError("invalid CdrRow: attempt: expected >= 1, got 0"),
    "key_error": KeyError("cdr"),
}


@pytest.mark.parametrize("name", sorted(UNAVAILABLE))
def test_availability_failures_are_not_data_errors(name: str) -> None:
    assert not is_data_error(UNAVAILABLE[name])


@pytest.mark.parametrize("name", sorted(DATA))
def test_data_failures_are_data_errors(name: str) -> None:
    assert is_data_error(DATA[name])


def test_a_data_error_met_while_storage_goes_away_is_availability() -> None:
    # A TypeError in the context of a lost connection: storage away wins.
    try:
        try:
            raise TypeError("half-built")
        except TypeError:
            raise ConnectionResetError("reset by peer") from None
    except ConnectionResetError as err:
        outer = err
    try:
        raise StoreUnavailable("lost") from outer
    except StoreUnavailable as err:
        assert not is_data_error(err)


class Sink:
    """A PostgreSQL-like batch sink: refuses a batch holding a record with ``poison``
    (a data error), or every batch while ``down`` is set (``error``)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.down = error is not None
        self.error = error
        self.delivered: list[int] = []
        self.tries = 0

    async def __call__(self, records: Sequence[Record]) -> None:
        self.tries += 1
        if self.down:
            assert self.error is not None
            raise self.error
        if any(r.payload.get("poison") for r in records):
            raise wrapped(asyncpg.CheckViolationError("violates check constraint"))
        self.delivered.extend(r.payload["n"] for r in records)


async def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def drain(lane: Lane, payloads: list[dict[str, Any]]) -> None:
    """Open ``lane``, put ``payloads``, run it until everything is delivered or set aside,
    then close it."""
    lane.open()
    for payload in payloads:
        lane.put(payload)
    task = asyncio.create_task(lane.run())
    try:
        assert await lane.wait_drained(10)
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()


@pytest.mark.parametrize("name", sorted(UNAVAILABLE))
async def test_an_availability_failure_is_retried_and_nothing_is_set_aside(
    name: str, tmp_path: Path
) -> None:
    sink = Sink(UNAVAILABLE[name])
    metrics = Metrics()
    lane = Lane(Journal(tmp_path, "cdrs"), sink, metrics, backoff_s=(0.01, 0.02), dead_letter=True)
    lane.open()
    task = asyncio.create_task(lane.run())
    try:
        for n in range(5):
            lane.put({"n": n})
        await wait_for(lambda: sink.tries >= 4)  # retried, again and again
        assert lane.journal.depth == 5
        assert sink.delivered == []
        assert not lane.dead_letters.path.exists()
        assert metrics.outbox_dead_letters.labels("cdrs")._value.get() == 0
        sink.down = False  # storage back
        assert await lane.wait_drained(10)
        assert sink.delivered == list(range(5))
        assert not lane.dead_letters.path.exists()
        assert lane.set_aside == 0
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()


async def test_poison_records_are_found_by_bisection_and_the_rest_delivered_in_order(
    tmp_path: Path,
) -> None:
    sink = Sink()
    metrics = Metrics()
    lane = Lane(
        Journal(tmp_path, "acd"), sink, metrics, batch=8, backoff_s=(0.01, 0.02), dead_letter=True
    )
    lane.open()
    poison = {2, 3, 9}
    for n in range(12):
        lane.put({"n": n, "poison": n in poison})
    task = asyncio.create_task(lane.run())
    try:
        assert await lane.wait_drained(10)
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()
    assert sink.delivered == [n for n in range(12) if n not in poison]
    entries = [json.loads(line) for line in lane.dead_letters.path.read_text().splitlines()]
    assert [e["record"]["n"] for e in entries] == [2, 3, 9]
    assert {e["error_class"] for e in entries} == {"asyncpg.exceptions.CheckViolationError"}
    assert all(e["lane"] == "acd" and "check constraint" in e["error"] for e in entries)
    assert metrics.outbox_dead_letters.labels("acd")._value.get() == 3
    assert Journal(tmp_path, "acd").open() == []  # all acknowledged: nothing replayed


async def test_a_per_record_sink_sets_aside_the_refused_record_only(tmp_path: Path) -> None:
    delivered: list[int] = []

    async def each(record: Record) -> None:
        if record.payload["n"] == 1:
            raise ValueError("not a row")
        delivered.append(record.payload["n"])

    lane = Lane(
        Journal(tmp_path, "x"), None, Metrics(), each=each, backoff_s=(0.01, 0.02), dead_letter=True
    )
    await drain(lane, [{"n": n} for n in range(4)])
    assert delivered == [0, 2, 3]
    [entry] = [json.loads(line) for line in lane.dead_letters.path.read_text().splitlines()]
    assert entry["record"] == {"n": 1} and entry["error_class"] == "builtins.ValueError"


async def test_a_record_that_cannot_be_set_aside_stays_in_the_journal(tmp_path: Path) -> None:
    sink = Sink()
    lane = Lane(
        Journal(tmp_path, "cdrs"), sink, Metrics(), backoff_s=(0.01, 0.02), dead_letter=True
    )
    lane.open()
    lane.dead_letters.path.mkdir()  # the dead-letter file cannot be written
    for n in range(3):
        lane.put({"n": n, "poison": n == 1})
    task = asyncio.create_task(lane.run())
    try:
        await wait_for(lambda: lane.failures >= 3)
        assert sink.delivered == [0]  # delivered up to the poison record, no further
        assert [r.payload["n"] for r in lane.journal.peek(10)] == [1, 2]
        lane.dead_letters.path.rmdir()  # writable again
        assert await lane.wait_drained(10)
        assert sink.delivered == [0, 2]
        assert lane.set_aside == 1
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()


async def test_a_lane_without_dead_letters_retries_a_data_error(tmp_path: Path) -> None:
    """The event stream's lane (``dead_letter`` off): every failure is retried as before."""
    sink = Sink()
    lane = Lane(Journal(tmp_path, "events"), sink, Metrics(), backoff_s=(0.01, 0.02))
    lane.open()
    lane.put({"n": 0, "poison": True})
    task = asyncio.create_task(lane.run())
    try:
        await wait_for(lambda: sink.tries >= 3)
        assert lane.journal.depth == 1
        assert not lane.dead_letters.path.exists()
    finally:
        lane.close()
        await asyncio.wait_for(task, 5)
        lane.journal.close()


def test_an_unreadable_requeue_file_is_not_taken_and_stays(tmp_path: Path) -> None:
    lane = Lane(Journal(tmp_path, "acd"), Sink(), Metrics(), dead_letter=True)
    lane.open()
    requeue = tmp_path / "acd.requeue.jsonl"
    requeue.write_text('{"record": {"n": 1}}\n{"n": 2}\n')  # line 2 is not a dead-letter line
    try:
        assert lane.requeue() == 0
        assert lane.journal.depth == 0
        assert requeue.exists()
        requeue.write_text('{"record": {"n": 1}}\n\n{"lane": "acd", "record": {"n": 2}}\n')
        assert lane.requeue() == 2
        assert [r.payload for r in lane.journal.peek(5)] == [{"n": 1}, {"n": 2}]
        assert not requeue.exists() and (tmp_path / "acd.requeued.jsonl").exists()
    finally:
        lane.journal.close()


def test_engine_doctor_warns_while_records_are_set_aside(tmp_path: Path) -> None:
    from engine.doctor.probes import outbox_dead_letters
    from engine.doctor.verdicts import Status
    from tests.harness import engine_config

    cfg = engine_config(
        pg_dsn="postgresql://u@127.0.0.1:1/x",
        redis_url="redis://127.0.0.1:1/0",
        prefix="t:",
        data_dir=tmp_path,
    )
    [clean] = outbox_dead_letters(cfg)
    assert clean.status is Status.OK
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "cdrs.dead.jsonl").write_text('{"record": {}}\n{"record": {}}\n')
    (outbox / "acd.dead.jsonl").write_text("")
    [held] = outbox_dead_letters(cfg)
    assert held.status is Status.WARN
    assert "2 record(s)" in held.message and "cdrs 2" in held.message
    assert "acd" not in held.message and "requeue" in held.fix


@pytest.mark.parametrize("per_record", [False, True])
async def test_a_data_error_that_does_not_repeat_sets_nothing_aside(
    per_record: bool, tmp_path: Path
) -> None:
    """A race (a row deleted between two statements) refuses a record once: it is tried
    again alone before anything is set aside, and then delivered."""
    delivered: list[int] = []
    refusals = 0

    async def deliver(n: int) -> None:
        nonlocal refusals
        if n == 1 and refusals == 0:
            refusals += 1
            raise wrapped(asyncpg.ForeignKeyViolationError("violates foreign key"))
        delivered.append(n)

    async def sink(records: Sequence[Record]) -> None:
        for r in records:  # as one transaction: all or none
            if r.payload["n"] == 1 and refusals == 0:
                await deliver(1)
        for r in records:
            delivered.append(r.payload["n"])

    async def each(record: Record) -> None:
        await deliver(record.payload["n"])

    lane = Lane(
        Journal(tmp_path, "x"),
        None if per_record else sink,
        Metrics(),
        each=each if per_record else None,
        batch=1,
        backoff_s=(0.01, 0.02),
        dead_letter=True,
    )
    await drain(lane, [{"n": n} for n in range(3)])
    assert delivered == [0, 1, 2]
    assert refusals == 1
    assert lane.set_aside == 0 and not lane.dead_letters.path.exists()


async def test_a_record_the_screen_cannot_read_is_set_aside_by_the_sink(tmp_path: Path) -> None:
    """The webhooks lane asks its screen first: a record without a ``type`` made the screen
    raise KeyError on every round, forever."""
    from engine.store.outbox.lane import Screened

    delivered: list[str] = []

    async def screen(records: Sequence[Record]) -> Screened:
        return Screened("call.ended" in {r.payload["type"] for r in records})

    async def sink(records: Sequence[Record]) -> None:
        types = [r.payload["type"] for r in records]  # all or none, as a transaction
        delivered.extend(types)

    lane = Lane(
        Journal(tmp_path, "webhooks"),
        sink,
        Metrics(),
        screen=screen,
        backoff_s=(0.01, 0.02),
        dead_letter=True,
    )
    await drain(lane, [{"type": "call.ended"}, {"no_type": 1}, {"type": "call.ended"}])
    assert delivered == ["call.ended", "call.ended"]
    assert lane.set_aside == 1
    [entry] = [json.loads(line) for line in lane.dead_letters.path.read_text().splitlines()]
    assert entry["record"] == {"no_type": 1} and entry["error_class"] == "builtins.KeyError"


def test_a_requeue_file_stays_while_the_disk_refuses_the_journal(
    tmp_path: Path, disk: Disk
) -> None:
    """The journal keeps a refused write in memory (never raises): the requeue file must
    not be retired then, or a crash would lose the records it held."""
    lane = Lane(Journal(tmp_path, "acd"), Sink(), Metrics(), dead_letter=True)
    lane.open()
    requeue = tmp_path / "acd.requeue.jsonl"
    requeue.write_text('{"record": {"n": 1}}\n')
    try:
        disk.full = True
        lane.requeue()
        assert requeue.exists() and not (tmp_path / "acd.requeued.jsonl").exists()
        assert disk.refused >= 1
    finally:
        disk.full = False
        lane.journal.close()
