"""The webhooks at run time: taps on the outbox lanes, and the dispatcher that sends.

Taps run inside ``Lane.put`` of the events and CDR lanes, so they are synchronous and cheap:
an event a webhook carries is appended to the ``webhooks`` journal (one ``os.write``) and
nothing else; PostgreSQL is never on the call-control path. The ``webhooks`` lane stores the
events and their deliveries (``WebhookStore.ingest``); the dispatcher claims due deliveries,
POSTs them signed, and records the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from engine.store.errors import StoreError
from engine.store.outbox import Lane, Record
from engine.store.outbox.lane import Screen, Screened
from engine.telemetry.logging import get_logger
from engine.webhooks import policy, signing
from engine.webhooks.store import Claimed, Outcome, WebhookStore

log = get_logger("engine.webhooks")


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    timeout_s: float = 10.0  # one POST, connect to last byte
    concurrency: int = 32  # POSTs in flight per engine
    backoff_base_s: float = 1.0
    backoff_max_s: float = 600.0
    poll_interval_s: float = 1.0  # how often other engines' work and due retries are looked for
    storage_timeout_s: float = 5.0

    @property
    def lease_s(self) -> float:
        # A delivery a crashed engine was sending is sent again once this runs out.
        return self.timeout_s + 2 * self.storage_timeout_s + 5.0


class WebhookTaps:
    """``on_event`` / ``on_cdr`` for ``Lane.tap``: the events a webhook carries go to the
    ``webhooks`` lane, each with the id receivers see as ``Webhook-Id``."""

    def __init__(self, lane: Lane, *, wall: Callable[[], float] = time.time) -> None:
        self._lane = lane
        self._wall = wall

    def _put(self, event: policy.WebhookEvent | None, event_id: str = "") -> None:
        if event is None:
            return
        self._lane.put(
            {
                "event_id": event_id or f"evt_{uuid.uuid4().hex}",
                "type": event.type,
                "order_key": event.order_key,
                "occurred_at": event.occurred_at,
                "data": event.data,
            }
        )

    def on_event(self, payload: Mapping[str, Any]) -> None:
        event = policy.from_event(payload, self._wall())
        self._put(event, event_event_id(payload) if event is not None else "")

    def on_cdr(self, payload: Mapping[str, Any]) -> None:
        event = policy.from_cdr(payload, self._wall())
        self._put(event, cdr_event_id(event.data["cdr"]) if event is not None else "")


#: Namespace of the derived webhook ids (uuid5): any fixed UUID, never to change.
_IDS = uuid.UUID("6f1d2c4e-8a57-4b1e-9a53-0c2d7e4f9b10")


def event_event_id(payload: Mapping[str, Any]) -> str:
    """The ``Webhook-Id`` of an event of the events lane: derived from the event itself (its
    type, ids and ``ts``), so the same event tapped twice (again at the start after a kill,
    ``Lane._replay_taps``) is one webhook event, stored once."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return f"evt_{uuid.uuid5(_IDS, 'event:' + text).hex}"


def cdr_event_id(cdr: Mapping[str, Any]) -> str:
    """The ``Webhook-Id`` of a CDR's call.ended: one per (call_id, attempt), as the CDR row
    itself. A call whose end was cut by a SIGKILL after its CDR was journalled and before its
    registry end record is adopted again at the next start and ended by the resync, which
    writes its CDR again: PostgreSQL keeps the first row (``ON CONFLICT``), and the webhook
    store keeps the first call.ended (``ON CONFLICT (event_id)``) instead of sending a second
    one, with a new id a receiver could not deduplicate."""
    key = f"call.ended:{cdr.get('call_id')}:{cdr.get('attempt')}"
    return f"evt_{uuid.uuid5(_IDS, key).hex}"


def ingest_sink(store: WebhookStore, wake: Callable[[], None]) -> Any:
    """The webhook lane's sink; goes with :func:`ingest_screen` (it skips the check the
    screen already made)."""

    async def sink(records: Sequence[Record]) -> None:
        if await store.ingest([r.payload for r in records], screened=True):
            wake()

    return sink


def ingest_screen(store: WebhookStore, *, quiet_s: float) -> Screen:
    """The webhook lane's screen (``Lane``): a batch that no live subscription wants is
    acknowledged without an fsync and without the ingest (which would store nothing). While
    there is no live subscription at all, the lane's rounds are at least ``quiet_s`` apart,
    so a busy engine without webhooks asks once per ``quiet_s``, not once per ended call; the
    first events after the first subscription may then wait up to ``quiet_s``."""

    async def screen(records: Sequence[Record]) -> Screened:
        interest = await store.interest([r.payload["type"] for r in records])
        return Screened(interest.wanted, 0.0 if interest.subscribed else quiet_s)

    return screen


class Dispatcher:
    """Claims due deliveries, POSTs them (up to ``concurrency`` at once), and stores the
    outcomes in batches (one transaction per batch, not one per delivery)."""

    def __init__(
        self,
        store: WebhookStore,
        settings: DispatchSettings = DispatchSettings(),
        *,
        session: aiohttp.ClientSession | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._s = settings
        self._session = session
        self._rand = rand
        self._wake = asyncio.Event()
        self._closed = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._outcomes: list[Outcome] = []
        self._recorded = asyncio.Event()
        self._pending_outcomes = asyncio.Event()
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._pending_outcomes.set()

    async def run(self) -> None:
        own_session = self._session is None
        session = self._session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._s.timeout_s),
            connector=aiohttp.TCPConnector(limit=self._s.concurrency),
        )
        recorder = asyncio.create_task(self._record_outcomes(), name="webhook-outcomes")
        try:
            while not self._closed:
                room = self._s.concurrency - len(self._inflight)
                claimed: list[Claimed] = []
                if room > 0:
                    self._wake.clear()
                    try:
                        claimed = await self._store.claim(room, self._s.lease_s)
                    except StoreError as err:
                        log.warning("webhooks: cannot claim deliveries", error=str(err))
                    for item in claimed:
                        task = asyncio.create_task(self._deliver(session, item))
                        self._inflight.add(task)
                        task.add_done_callback(self._done)
                if claimed and len(claimed) == room:
                    # A full batch: more may be due; yield once and claim again.
                    await asyncio.sleep(0)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._s.poll_interval_s)
        finally:
            for task in list(self._inflight):
                task.cancel()
            if self._inflight:
                await asyncio.wait(self._inflight, timeout=2)
            self._pending_outcomes.set()
            # Outcomes of finished tries are stored if storage answers; otherwise their
            # leases run out and they are sent again (at least once).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recorder, self._s.storage_timeout_s + 1)
            recorder.cancel()
            if own_session:
                await session.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def _record_outcomes(self) -> None:
        delay = 0.1
        while True:
            await self._pending_outcomes.wait()
            if not self._outcomes:
                if self._closed:
                    return
                self._pending_outcomes.clear()
                continue
            # Let the tries that finish together share one transaction.
            await asyncio.sleep(0.005)
            batch, self._outcomes = self._outcomes, []
            try:
                await self._store.record(batch)
            except StoreError as err:
                log.warning("webhooks: outcomes not stored yet", error=str(err))
                self._outcomes = batch + self._outcomes
                if self._closed:
                    return
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            delay = 0.1
            # The next delivery of each finished chain may be due now.
            self._wake.set()

    async def _deliver(self, session: aiohttp.ClientSession, item: Claimed) -> None:
        body = item.body()
        head = signing.headers(item.secret, item.event_id, int(time.time()), body, item.attempts)
        status: int | None = None
        error = ""
        try:
            async with session.post(
                # Receivers' redirects are not followed (a signed body must not go elsewhere).
                item.url,
                data=body,
                headers=head,
                allow_redirects=False,
            ) as response:
                status = response.status
                await response.read()
            ok = 200 <= status < 300
            if not ok:
                error = f"HTTP {status}"
        except Exception as err:  # refused, timed out, or a URL aiohttp cannot use (port)
            ok = False
            error = f"{type(err).__name__}: {err}"[:500]
        retry: float | None = None
        if ok:
            self.sent += 1
        else:
            self.failed += 1
            if item.attempts < item.max_attempts:
                retry = policy.backoff(
                    item.attempts, self._s.backoff_base_s, self._s.backoff_max_s, self._rand()
                )
            log.info(
                "webhook delivery failed",
                delivery_id=item.delivery_id,
                attempt=item.attempts,
                error=error,
                retry_in_s=round(retry, 2) if retry is not None else None,
                dead=retry is None,
            )
        self._outcomes.append(
            Outcome(
                item.delivery_id,
                item.subscription_id,
                item.order_key,
                ok,
                status,
                error,
                retry,
            )
        )
        self._pending_outcomes.set()
