"""A lane drains one journal into one sink, in order, forever.

The producer (call state changes) only appends to the journal and returns; it
never waits on PostgreSQL or Redis. The lane's task:

1. takes up to ``batch`` pending records;
   with a ``screen``, asks it first whether the sink would keep any of them:
   if not, the batch is acknowledged as it is (no fsync, no sink; see
   ``Lane.__init__``);
2. fsyncs the journal if they are not on disk yet (in a thread);
3. hands them to the sink under a timeout: the whole batch to ``sink``, or
   one record at a time to ``each`` (for a sink that is not idempotent, such
   as the event stream, where a retried batch would publish the records
   before the failure a second time);
4. on success acknowledges them; on any failure (timeout, connection refused,
   a bug in the sink) acknowledges what ``each`` delivered, counts the
   failure, waits with capped exponential backoff and tries the rest again.
   Order is kept: a later record is never delivered before an earlier one of
   the same lane.
5. with ``dead_letter``, a failure that is a data error (``dead.is_data_error``:
   the sink refused the record itself, not "storage away") is not retried as it
   is: the batch is bisected (records one at a time for ``each``) until the
   records refused on their own are found; each is written to
   ``<outbox>/<lane>.dead.jsonl`` (fsynced), then acknowledged, logged at error
   level and counted (``engine_outbox_dead_letters_total{lane}``); the records
   around it are delivered. One poison record no longer stops its lane.

A journal whose disk refuses writes keeps the records in memory (its unwritten
tail, engine/store/outbox/journal.py): the lane delivers what is written, then
retries writing the tail with the same backoff until the disk takes it, and
delivers it then, in order. ``engine_outbox_unwritten{lane}`` counts the records
waiting for the disk.

New records do not cut a backoff short: while storage is away the lane tries
at its backoff pace, not once per accepted record (a busy engine would
otherwise hammer a database that is down, once per ended call).

So storage coming back is noticed by the next try, not by a restart, and
records accepted while it was away are delivered then ("continuous replay").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core import clock
from engine.core.worker import WorkerSignals
from engine.store.outbox.dead import DeadLetters, fsync_dir, is_data_error, read_requeue
from engine.store.outbox.journal import Journal, Record
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics

log = get_logger("engine.store.outbox")

Sink = Callable[[Sequence[Record]], Awaitable[None]]
EachSink = Callable[[Record], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Screened:
    """A lane screen's answer about one batch (see ``Lane.__init__``)."""

    #: The sink would keep some record of the batch: fsync it and deliver it.
    wanted: bool
    #: With ``wanted`` False: nothing is likely to be wanted for a while (no webhook
    #: subscription exists at all), so the next round begins at least this long after
    #: this one (batching what comes meanwhile into one screen).
    quiet_s: float = 0.0


Screen = Callable[[Sequence[Record]], Awaitable[Screened]]
RecordKey = Callable[[Record], str]

_KEY_FIELDS = ("call_id", "attempt", "id", "campaign_id", "contact_id", "agent", "type", "kind")


def default_key(record: Record) -> str:
    """What names a record in a log line: its identifying fields, else its sequence."""
    payload = record.payload
    parts = [
        f"{name}={payload[name]}"
        for name in _KEY_FIELDS
        if isinstance(payload.get(name), str | int | float | bool)
    ]
    return ",".join(parts) if parts else f"seq={record.seq}"


class _Unavailable(Exception):
    """Finding or setting aside a refused record failed for a reason other than the
    record (storage away, the dead-letter file not writable): retried with backoff."""

    def __init__(self, err: Exception) -> None:
        super().__init__(str(err))
        self.err = err


class Lane:
    def __init__(
        self,
        journal: Journal,
        sink: Sink | None,
        metrics: Metrics,
        *,
        each: EachSink | None = None,
        batch: int = 100,
        timeout_s: float = 5.0,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        min_interval_s: float = 0.0,
        screen: Screen | None = None,
        dead_letter: bool = False,
        key: RecordKey = default_key,
        now: Callable[[], float] = clock.now,
    ) -> None:
        """``screen`` (optional, for a sink that keeps only some records, such as the webhook
        ingest, which stores only the events some subscription wants): asked under the
        timeout, before the fsync, whether the sink would keep any record of the batch.
        False: the batch is acknowledged without an fsync and without the sink. Nothing is
        delivered that is not on disk first, as before: only a batch that nothing would
        have been made of skips the fsync (a power loss may then drop it from the journal,
        which is what its delivery did too). A screen that fails counts as a failed
        delivery (kept, retried with backoff). A screened-out batch with ``quiet_s`` makes
        the next round wait at least that long.

        ``dead_letter`` (for the PostgreSQL lanes): a record the sink refuses for a data
        reason is set aside into ``<outbox>/<lane>.dead.jsonl`` and acknowledged (module
        docstring, step 5); ``key`` names a record in that log line."""
        if (sink is None) == (each is None):
            raise ValueError("Lane: give exactly one of sink (whole batches) or each (per record)")
        self.journal = journal
        self._sink = sink
        self._each = each
        self._screen = screen
        self._metrics = metrics
        self._batch = batch
        self._timeout_s = timeout_s
        self._backoff = backoff_s
        self._now = now
        # At most one delivery round per ``min_interval_s``: the records that
        # arrive meanwhile (one call state change brings several) share it.
        self._signals = WorkerSignals(min_interval_s)
        # The lane's metric children, looked up once (labels() per record
        # was a measurable share of the engine's CPU per call).
        name = journal.name
        self._depth = metrics.outbox_depth.labels(name)
        self._age = metrics.outbox_oldest_age.labels(name)
        self._failed = metrics.outbox_failures.labels(name)
        self._delivered = metrics.outbox_delivered.labels(name)
        self._unwritten = metrics.outbox_unwritten.labels(name)
        self._dead = metrics.outbox_dead_letters.labels(name)
        self._dead_letter = dead_letter
        self._key = key
        self.dead_letters = DeadLetters(journal.directory, name)
        self.delivered = 0
        self.failures = 0
        self.set_aside = 0
        self._taps: list[Callable[[dict[str, Any]], None]] = []
        # What a previous run accepted and did not deliver, for the taps (``run``).
        self._replayed: list[Record] = []

    @property
    def name(self) -> str:
        return self.journal.name

    def open(self) -> int:
        """Open the journal; returns how many records wait from a previous run."""
        replay = self.journal.open()
        self._replayed = list(replay)
        if replay:
            log.info("outbox: replaying", lane=self.name, records=len(replay))
            self._signals.idle.clear()
        self._update_metrics()
        return len(replay)

    def requeue(self) -> int:
        """Take ``<outbox>/<lane>.requeue.jsonl`` back into the lane, if the operator left
        one: lines of the dead-letter file with their ``record`` fixed. Called at start,
        once every lane is open (the engine is the journal's only writer). The records
        are appended and fsynced, then the file is renamed ``<lane>.requeued.jsonl`` and
        the directory fsynced; if a line is unreadable nothing is taken and the file
        stays (logged at error level); if the disk refuses, the file stays and is taken
        again at the next start (delivered twice then, as after a crash). Returns how
        many records were taken."""
        path = self.journal.directory / f"{self.name}.requeue.jsonl"
        if not path.exists():
            return 0
        try:
            payloads = read_requeue(path)
        except (OSError, ValueError) as err:
            log.error("outbox: requeue file not taken", lane=self.name, error=str(err))
            return 0
        try:
            if payloads:
                self.put_many(payloads)
            self.journal.sync()
            if self.journal.needs_sync(self.journal.last_seq):
                # The disk refused the write (kept in memory, engine/store/outbox/journal.py).
                raise OSError(f"journal {self.journal.path} not on disk after sync")
            path.rename(path.with_name(f"{self.name}.requeued.jsonl"))
            fsync_dir(path.parent)
        except OSError as err:
            log.error(
                "outbox: requeue file not retired; it is taken again at the next start",
                lane=self.name,
                records=len(payloads),
                error=f"{type(err).__name__}: {err}",
            )
            return len(payloads)
        log.warning(
            "outbox: records requeued by the operator", lane=self.name, records=len(payloads)
        )
        return len(payloads)

    def tap(self, observer: Callable[[dict[str, Any]], None]) -> None:
        """Call ``observer`` with every record this lane accepts, right after it is journalled
        (webhooks pick their events this way). Synchronous, like ``put``: an observer may only
        hand the record on (to another lane), never wait; its failure is logged, never raised
        to the producer."""
        self._taps.append(observer)

    def put(self, payload: dict[str, Any]) -> None:
        """Accept one record: appended to the journal at once, delivered later."""
        self.put_many((payload,))

    def put_many(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Accept records in this order, in one journal write (``put`` of each, cheaper)."""
        self.journal.append_many(payloads, self._now())
        self._signals.work_arrived()
        self._depth.set(self.journal.depth)
        if self.journal.degraded:
            self._unwritten.set(self.journal.unwritten)
        for payload in payloads:
            self._tapped(payload)

    def _tapped(self, payload: dict[str, Any]) -> None:
        for observer in self._taps:
            try:
                observer(payload)
            except Exception:
                log.exception("outbox: a tap failed", lane=self.name)

    def _replay_taps(self) -> None:
        """Hand the records a previous run accepted and did not deliver to the taps again.
        A tap writes another journal (the webhooks lane's), one ``os.write`` after the
        record's own: a SIGKILL between the two kept the record and lost what its tap makes
        (a failover leg's call.ended, a disposition's webhook), and nothing else would make
        it again. Done when the lane starts running, once every lane is open (the taps' lanes
        too). A tap must be idempotent: most of these records were tapped before the kill
        (webhook ids are derived from the record, engine/webhooks/service.py)."""
        replayed, self._replayed = self._replayed, []
        if not self._taps:
            return
        for record in replayed:
            self._tapped(record.payload)

    async def wait_drained(self, timeout_s: float) -> bool:
        """True when every accepted record was delivered within ``timeout_s``.

        A lane waiting out a backoff tries again at once (shutdown drains the
        outbox: storage may be back before the backoff is over)."""
        return await self._signals.wait_idle(timeout_s)

    def close(self) -> None:
        self._signals.close()

    async def run(self) -> None:
        self._replay_taps()
        loop = asyncio.get_running_loop()
        delay = self._backoff[0]
        backlog = False  # the last round delivered a full batch
        while not self._signals.closed:
            records = self.journal.peek(self._batch)
            if not records and self.journal.degraded:
                # Only records the disk refused wait: write them first (they are delivered
                # once in the file, like any other), backing off while it still refuses.
                try:
                    self.journal.flush()
                except OSError as err:
                    self.failures += 1
                    self._failed.inc()
                    self._update_metrics()
                    log.warning(
                        "outbox: journal still not writable; will retry",
                        lane=self.name,
                        records=self.journal.unwritten,
                        error=f"{type(err).__name__}: {err}",
                        retry_in_s=round(delay, 2),
                    )
                    delay = await self._back_off(delay)
                    continue
                delay = self._backoff[0]
                self._update_metrics()
                continue
            if not records:
                backlog = False
                self._signals.idle.set()
                self._signals.wake.clear()
                self._update_metrics()
                await self._signals.wake.wait()
                continue
            await self._signals.pace(backlog)
            backlog = False
            records = self.journal.peek(self._batch)
            done = 0
            try:
                wanted = True
                if self._screen is not None:
                    try:
                        async with asyncio.timeout(self._timeout_s):
                            verdict = await self._screen(records)
                    except Exception as refused:
                        if not (self._dead_letter and is_data_error(refused)):
                            raise
                        # A record the screen cannot read: delivered, so that the sink
                        # finds it and it is set aside (step 5), not screened forever.
                        verdict = Screened(True)
                    wanted = verdict.wanted
                    if not wanted and verdict.quiet_s > 0:
                        self._signals.stretch_next(verdict.quiet_s)
                if wanted and self.journal.needs_sync(records[-1].seq):
                    # run_in_executor, not to_thread: no context copy per round.
                    await loop.run_in_executor(None, self.journal.sync)
                if not wanted:
                    pass  # nothing would be kept: acknowledged as it is (see __init__)
                elif self._each is not None:
                    for record in tuple(records):
                        try:
                            async with asyncio.timeout(self._timeout_s):
                                await self._each(record)
                        except Exception as refused:
                            if not (self._dead_letter and is_data_error(refused)):
                                raise
                            if done:
                                self._acknowledge(records[:done])
                            records, done = records[done:], 0
                            # Tried once more before it is set aside (a race, e.g. a
                            # row deleted meanwhile, is not the record's fault).
                            try:
                                async with asyncio.timeout(self._timeout_s):
                                    await self._each(record)
                            except Exception as again:
                                if not is_data_error(again):
                                    raise
                                await self._set_aside(record, again)
                            else:
                                self._acknowledge(records[:1])
                            records = records[1:]
                            continue
                        done += 1
                else:
                    assert self._sink is not None
                    try:
                        async with asyncio.timeout(self._timeout_s):
                            await self._sink(records)
                    except Exception as refused:
                        if not (self._dead_letter and is_data_error(refused)):
                            raise
                        await self._isolate(records, refused)
                        records = []
            except Exception as failure:  # any failure: keep the records, try again
                if isinstance(failure, _Unavailable):
                    # Finding a refused record met storage away: what was delivered or
                    # set aside by then is acknowledged already.
                    cause: Exception = failure.err
                else:
                    cause = failure
                    if done:
                        self._try_acknowledge(records[:done])
                self.failures += 1
                self._failed.inc()
                self._update_metrics()
                log.warning(
                    "outbox: delivery failed; will retry",
                    lane=self.name,
                    records=len(records) - done,
                    error=f"{type(cause).__name__}: {cause}",
                    retry_in_s=round(delay, 2),
                )
                delay = await self._back_off(delay)
                continue
            if records and not self._try_acknowledge(records):
                # Delivered, not marked (the journal failed): the task goes on, backs off,
                # and the records are delivered again (sinks are idempotent or tolerate it).
                delay = await self._back_off(delay)
                continue
            delay = self._backoff[0]
            backlog = len(records) >= self._batch

    async def _back_off(self, delay: float) -> float:
        """Wait ``delay``, then give the next wait: doubled up to the cap, with jitter (so
        lanes that failed together do not retry together), never under the floor."""
        await self._sleep(delay)
        return max(min(self._backoff[1], delay * 2) * random.uniform(0.8, 1.0), self._backoff[0])

    def _try_acknowledge(self, records: Sequence[Record]) -> bool:
        """``_acknowledge``; False (logged, counted) if the journal failed. A failed ack never
        ends the lane's task (and with it the engine's task group)."""
        try:
            self._acknowledge(records)
        except Exception as err:
            self.failures += 1
            self._failed.inc()
            log.error(
                "outbox: acknowledgement failed; will retry",
                lane=self.name,
                records=len(records),
                error=f"{type(err).__name__}: {err}",
            )
            return False
        return True

    async def _isolate(self, records: Sequence[Record], first: Exception) -> None:
        """``records`` failed as a batch with a data error: deliver them in order in
        halves, down to single records; a record refused on its own for a data reason
        (each set-aside record failed at least twice) is set aside. Delivered parts are
        acknowledged as they go (in order, so each acknowledgement covers only records
        delivered or set aside). An availability failure on the way is raised as
        ``_Unavailable``: the rest stays in the journal."""
        assert self._sink is not None
        log.warning(
            "outbox: a batch was refused for a data reason; finding the record(s)",
            lane=self.name,
            records=len(records),
            error=f"{type(first).__name__}: {first}",
        )
        # A record is set aside only once it failed twice: in its batch and alone (a
        # batch of one is tried once more), so a race is not taken for a poison record.
        stack: list[tuple[Sequence[Record], Exception | None]] = [
            (records, first if len(records) > 1 else None)
        ]
        while stack:
            part, known = stack.pop()
            err = known
            if err is None:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        await self._sink(part)
                except Exception as failed:
                    if not is_data_error(failed):
                        raise _Unavailable(failed) from failed
                    err = failed
                else:
                    self._acknowledge(part)
                    continue
            if len(part) == 1:
                await self._set_aside(part[0], err)
                continue
            mid = len(part) // 2
            stack.append((part[mid:], None))
            stack.append((part[:mid], None))

    async def _set_aside(self, record: Record, err: BaseException) -> None:
        """Write ``record`` to the lane's dead-letter file (fsynced), then acknowledge it.
        If the file cannot be written the record stays in the journal (raised as
        ``_Unavailable``: retried with backoff)."""
        cause = _root(err)
        entry = {
            "lane": self.name,
            "seq": record.seq,
            "accepted_at": record.ts,
            "dead_at": self._now(),
            "key": self._key(record),
            "error_class": f"{type(cause).__module__}.{type(cause).__qualname__}",
            "error": f"{type(err).__name__}: {err}",
            "record": record.payload,
        }
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.dead_letters.append, entry)
        except OSError as failed:
            log.error(
                "outbox: a refused record could not be set aside; kept in the journal",
                lane=self.name,
                key=entry["key"],
                dead_letters=str(self.dead_letters.path),
                error=f"{type(failed).__name__}: {failed}",
            )
            raise _Unavailable(failed) from failed
        self.journal.ack(record.seq)
        self.set_aside += 1
        self._dead.inc()
        self._update_metrics()
        log.error(
            "outbox: record refused for a data reason; set aside in the dead-letter file",
            lane=self.name,
            key=entry["key"],
            seq=record.seq,
            error_class=entry["error_class"],
            error=entry["error"],
            dead_letters=str(self.dead_letters.path),
        )

    def _acknowledge(self, records: Sequence[Record]) -> None:
        self.journal.ack(records[-1].seq)
        self.delivered += len(records)
        self._delivered.inc(len(records))
        self._update_metrics()

    async def _sleep(self, seconds: float) -> None:
        # close() and wait_drained() end a backoff early, so shutdown never
        # waits one out; put() does not (see the module docstring).
        await self._signals.backoff(seconds)

    def _update_metrics(self) -> None:
        self._depth.set(self.journal.depth)
        self._unwritten.set(self.journal.unwritten)
        oldest = self.journal.oldest_ts()
        age = max(0.0, self._now() - oldest) if oldest is not None else 0.0
        self._age.set(age)


def _root(err: BaseException) -> BaseException:
    """The innermost cause of ``err`` (the asyncpg error behind a StoreError)."""
    while err.__cause__ is not None and err.__cause__ is not err:
        err = err.__cause__
    return err


class LanePublisher:
    """``publish(data)`` for code written against the event stream (IVR, trunk
    state): the event is journalled at once and published by the lane."""

    def __init__(self, lane: Lane) -> None:
        self._lane = lane

    async def publish(self, data: Mapping[str, Any]) -> None:
        self._lane.put(dict(data))
