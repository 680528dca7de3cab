"""The event stream and the durable local outbox: one lane per kind of record.

What the engine accepted is journalled under ``<data_dir>/outbox`` first and
delivered by these lanes, whatever storage is doing (docs/durability.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from engine.acd.history import AcdRepository
from engine.auth.audit import lane_sink as audit_sink
from engine.calls.cdr import CdrWriter, cdr_key
from engine.campaigns.history import AttemptRepository
from engine.config import EngineConfig
from engine.recordings.service import RecordingService, recording_key
from engine.store.errors import StoreError
from engine.store.outbox import Journal, Lane, Record
from engine.store.outbox.lane import RecordKey, Sink, default_key
from engine.store.pg.audit import AuditLog
from engine.store.pg.cdr import CdrRepository
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.rounds import RedisRounds
from engine.store.redis.seq_floor import SeqFloor
from engine.store.redis.stream import EventStream
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.webhooks.service import (
    Dispatcher,
    DispatchSettings,
    WebhookTaps,
    ingest_screen,
    ingest_sink,
)
from engine.webhooks.store import WebhookStore

log = get_logger("engine.app")

#: How far back the stream is searched for a replayed batch (once per start, only when the
#: events journal replays records): the events every engine published meanwhile.
REPLAY_WINDOW = 5000


class EventPublisher:
    """The events lane's sink: a whole batch per round trip, in one atomic script run (a
    failed try leaves none of the batch on the stream, so the retry cannot duplicate part
    of it; a publish is not idempotent).

    A SIGKILL after the script ran and before the lane's acknowledgement was written makes
    the next start replay that batch: it would be on the stream twice, under two seqs. So
    the records the journal replays are first looked for among the stream's newest events
    and those already there are acknowledged without a second publish. Not with
    ``wait_replicas``: a batch the old master holds may not be on a replica yet, and is sent
    again as before (docs/storage.md "Redis Sentinel")."""

    def __init__(self, stream: EventStream, metrics: Metrics) -> None:
        self._stream = stream
        self._metrics = metrics
        self._replayed_upto = 0

    def replayed(self, journal: Journal) -> None:
        """After the events journal was opened: the records it replays are those up to here."""
        self._replayed_upto = journal.last_seq if journal.depth else 0

    async def publish(self, records: Sequence[Record]) -> None:
        payloads = [r.json() for r in records]
        upto = self._replayed_upto
        if upto and records and records[0].seq <= upto and not self._stream.wait_replicas:
            candidates = [p for p, r in zip(payloads, records, strict=True) if r.seq <= upto]
            try:
                done = await self._stream.leading_on_stream(candidates, REPLAY_WINDOW)
            except StoreError as err:
                # The look is an optimisation: it must never hold the lane up (a retry
                # would look again). Published as before: at least once.
                log.warning("outbox: replayed events not looked for", error=str(err))
                done, self._replayed_upto = 0, 0
            if done:
                log.warning(
                    "outbox: replayed events already on the stream; not published again",
                    events=done,
                )
            payloads = payloads[done:]
            if done < len(candidates) or records[-1].seq >= upto:
                # The rest of the replay was never published: no more looking.
                self._replayed_upto = 0
        if payloads:
            await self._stream.publish_encoded(payloads)
        self._metrics.events_published.inc(len(payloads))


# At most one delivery round per lane per interval (engine.core.worker.pace):
# a lone record goes out at once; under load the round trips (and the fsyncs
# before them) are capped, and with them most of the engine's CPU per call
# (docs/bench-cpu.md). The event lane, the registry mirror and the trunk
# counters' releases share one Redis pipeline per round; that round, the
# event lane's and the mirror's all use ``[storage] write_round_s``.
CDR_ROUND_S = 0.5


@dataclass
class Outbox:
    """The stream, the CDR writer and the lanes, opened (their journals close at stop)."""

    directory: Path
    rounds: RedisRounds
    stream: EventStream
    cdr_repo: CdrRepository
    cdrs: CdrWriter
    cdr: Lane
    events: Lane
    acd: Lane
    campaigns: Lane
    recordings: Lane
    audit: Lane
    audit_log: AuditLog
    webhooks: Lane
    webhook_store: WebhookStore
    dispatcher: Dispatcher
    #: The recordings lane's sink is the recording service's, built later
    #: (engine/wiring/recordings.py appends it here).
    recordings_box: list[RecordingService] = field(default_factory=list)
    #: Journals of the outbox directory that no lane drains (the registry mirror's).
    other_journals: list[Journal] = field(default_factory=list)

    def unwritable(self) -> list[str]:
        """The journals whose disk refuses writes (a full or read-only data_dir), after one
        more try (at most one per ``RETRY_S``) to write what each holds in memory
        (engine/store/outbox/journal.py)."""
        journals = [lane.journal for lane in self.lanes] + self.other_journals
        return [j.name for j in journals if not j.retry()]

    @property
    def lanes(self) -> tuple[Lane, ...]:
        """Every lane, in the order they are opened, run, drained and closed."""
        return (
            self.events,
            self.cdr,
            self.acd,
            self.campaigns,
            self.recordings,
            self.audit,
            self.webhooks,
        )


def build_outbox(
    cfg: EngineConfig,
    pg: PgStore,
    redis: RedisStore,
    data_dir: Path,
    metrics: Metrics,
    stack: AsyncExitStack,
) -> Outbox:
    client, prefix = redis.client, cfg.storage.redis_prefix
    timeout = cfg.calls.storage_timeout_s
    round_s = cfg.storage.write_round_s
    rounds = RedisRounds(client, interval_s=round_s, timeout_s=timeout)
    # The floor file keeps the event sequence going upward if Redis loses its data.
    stream = EventStream(
        client,
        prefix,
        maxlen=cfg.storage.event_stream_maxlen,
        floor=SeqFloor(data_dir / "event-seq.floor"),
        rounds=rounds,
        # A replicated master: an event is let go once a replica has it too. The WAIT
        # shares the round's timeout, so it gets at most half of it.
        wait_replicas=cfg.storage.wait_replicas,
        wait_timeout_ms=min(cfg.storage.redis_wait_timeout_ms, int(timeout * 500)),
    )
    stack.push_async_callback(stream.close)
    cdr_repo = CdrRepository(pg.pool, timeout_s=timeout, fence_namespace=cfg.storage.redis_prefix)
    cdrs = CdrWriter(cdr_repo)

    # The durable local outbox: what the engine accepted is journalled
    # here first and delivered by these lanes, whatever storage is doing.
    outbox_dir = data_dir / "outbox"

    def new_lane(
        name: str,
        sink: Sink,
        interval_s: float = CDR_ROUND_S,
        *,
        dead_letter: bool = True,
        key: RecordKey = default_key,
    ) -> Lane:
        # The PostgreSQL lanes set aside a record PostgreSQL refuses for a data reason
        # into <outbox>/<lane>.dead.jsonl, so one poison record cannot stop its lane
        # (docs/durability.md "The outbox").
        return Lane(
            Journal(outbox_dir, name),
            sink,
            metrics,
            timeout_s=timeout,
            min_interval_s=interval_s,
            dead_letter=dead_letter,
            key=key,
        )

    publisher = EventPublisher(stream, metrics)
    publish_events = publisher.publish

    cdr_lane = new_lane("cdrs", cdrs.sink, key=cdr_key)
    # The event stream takes any JSON: a failure there is Redis away, never the record.
    event_lane = new_lane("events", publish_events, round_s, dead_letter=False)
    # The ACD's history (agent sessions, state changes, queue entries).
    acd_lane = new_lane("acd", AcdRepository(pg.pool, timeout_s=timeout).write)
    # Campaign attempts' outcomes and contact updates (docs/campaigns.md).
    campaign_lane = new_lane("campaigns", AttemptRepository(pg.pool, timeout_s=timeout).write)
    # The recordings index (docs/recordings.md): a recording that ends while PostgreSQL
    # is away is indexed when it is back. The sink is the service's (set later).
    recordings_box: list[RecordingService] = []

    async def index_recordings(records: Sequence[Record]) -> None:
        await recordings_box[0].sink(records)

    recording_lane = new_lane("recordings", index_recordings, key=recording_key)
    # The audit trail (docs/security.md): one row per mutating API request, journalled
    # before the answer goes out, chained into audit_log by this lane.
    audit_log = AuditLog(pg.pool, timeout_s=timeout)
    audit_lane = new_lane("audit", audit_sink(audit_log))
    # Webhooks (docs/security.md): taps on the events and CDR lanes pick the events a
    # webhook carries into their own lane, which stores them and their deliveries in
    # PostgreSQL; the dispatcher sends them.
    wh = cfg.webhooks
    webhook_store = WebhookStore(pg.pool, timeout_s=timeout)
    dispatcher = Dispatcher(
        webhook_store,
        DispatchSettings(
            timeout_s=wh.timeout_s,
            concurrency=wh.concurrency,
            backoff_base_s=wh.backoff_base_s,
            backoff_max_s=wh.backoff_max_s,
            poll_interval_s=wh.poll_interval_s,
            storage_timeout_s=timeout,
        ),
    )
    webhook_lane = Lane(
        Journal(outbox_dir, "webhooks"),
        ingest_sink(webhook_store, dispatcher.wake),
        metrics,
        timeout_s=timeout,
        min_interval_s=round_s,
        dead_letter=True,
        # Most batches go to no subscription: asked first, they skip the fsync too;
        # with no subscription at all, one question per CDR round, not per call.
        screen=ingest_screen(webhook_store, quiet_s=CDR_ROUND_S),
    )
    taps = WebhookTaps(webhook_lane)
    event_lane.tap(taps.on_event)
    cdr_lane.tap(taps.on_cdr)
    outbox = Outbox(
        directory=outbox_dir,
        rounds=rounds,
        stream=stream,
        cdr_repo=cdr_repo,
        cdrs=cdrs,
        cdr=cdr_lane,
        events=event_lane,
        acd=acd_lane,
        campaigns=campaign_lane,
        recordings=recording_lane,
        audit=audit_lane,
        audit_log=audit_log,
        webhooks=webhook_lane,
        webhook_store=webhook_store,
        dispatcher=dispatcher,
        recordings_box=recordings_box,
    )
    for lane in outbox.lanes:
        lane.open()
        stack.callback(lane.journal.close)
    publisher.replayed(event_lane.journal)
    for lane in outbox.lanes:
        # Records an operator fixed and put back (<lane>.requeue.jsonl; docs/durability.md).
        lane.requeue()
    cdrs.attach(cdr_lane)
    moved = cdrs.import_legacy_spool(data_dir / "cdr-spool.jsonl")
    if moved:
        log.info("pre-outbox spooled CDRs moved into the outbox", count=moved)
    return outbox
