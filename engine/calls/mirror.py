"""Mirrors live calls into the Redis registry in the background.

Call state changes are decided and kept in memory; this mirror carries the
latest state of each changed call to Redis (``CallRegistry``) without the
change ever waiting on Redis:

- ``put``/``end`` only mark the call dirty (coalescing: ten changes while
  Redis is slow become one write of the newest state).
- The task writes dirty calls with a timeout per write; a failed write is
  retried with backoff, unless a newer state was marked meanwhile.
- Every ``refresh_s`` it re-writes every live call with the registry TTL.
  That keeps the entries of live calls from expiring (the TTL only bites for
  a crashed engine's calls) and rebuilds the registry after Redis lost its
  data. The re-write goes ``REFRESH_CHUNK`` calls per round: thousands of
  live calls serialised in one go stalled the event loop for tens of ms,
  which was the API's p99 at 200 originates/s (docs/bench-cpu.md).
- A crash must not lose a call the registry has not been told about yet (the
  201 of ``POST /v1/calls`` goes out before the mirror's next round): each
  new call, each change of state and each end is first appended to the
  ``registry`` journal of the outbox (one ``os.write``; engine/store/outbox/
  journal.py), acknowledged once a round carried it to Redis. At start the
  records not acknowledged are merged over what the registry holds
  (:meth:`RegistryMirror.recovered`), so those calls are adopted too, even
  while Redis is away.
- Ended calls are removed from the registry and kept, for ``GET
  /v1/calls/{id}``, in the ``EndedCalls`` store and in a bounded in-memory
  cache (so a call that just ended can be read even while Redis is away).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from engine.calls.model import Call
from engine.core import clock
from engine.core.worker import WorkerSignals
from engine.store.outbox.journal import Journal
from engine.store.redis.registry import CallRegistry
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics

log = get_logger("engine.calls.mirror")

ENDED_TTL_S = 24 * 3600
RECENT_ENDED_MAX = 10_000
LINGER_S = 0.02
# At most one registry write round per interval under load (WorkerSignals.pace).
ROUND_S = 0.1
# Live calls re-written per round by the periodic refresh.
REFRESH_CHUNK = 50


class EndedCalls:
    """Recently ended calls kept in Redis for ``GET /calls/{id}`` (the CDR is
    the permanent record)."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int = ENDED_TTL_S) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_s

    async def put(self, call: Call) -> None:
        await self._redis.set(*self.entry(call)[:2], ex=self._ttl)

    def entry(self, call: Call) -> tuple[str, str, int]:
        """(key, value, ttl) of the ended call's copy, for a batched write."""
        return f"{self._prefix}ended:{call.call_id}", call.to_json(), self._ttl

    async def get(self, call_id: str) -> Call | None:
        text = await self._redis.get(f"{self._prefix}ended:{call_id}")
        return Call.from_json(text) if text else None


def registry_fields(call: Call) -> dict[str, str]:
    return {"json": call.to_json(), "switch": call.switch, "state": call.state.value}


def recovered_calls(journal: Journal) -> list[Call]:
    """Open the registry journal: the newest state of every call whose
    records were not acknowledged (a crash cut its registry write off)."""
    newest: dict[str, Call] = {}
    for record in journal.open():
        try:
            call = Call.from_dict(record.payload)
        except (KeyError, ValueError, TypeError) as err:
            log.error("unreadable registry journal record skipped", seq=record.seq, error=str(err))
            continue
        newest[call.call_id] = call
    return list(newest.values())


class RegistryMirror:
    def __init__(
        self,
        registry: CallRegistry,
        ended: EndedCalls,
        metrics: Metrics,
        *,
        ttl_s: int = 120,
        refresh_s: float = 30.0,
        timeout_s: float = 2.0,
        round_s: float = ROUND_S,
        journal: Journal | None = None,
    ) -> None:
        self._registry = registry
        # Opened by the caller (recovered_calls) before the first put.
        self._journal = journal
        self._journalled: dict[str, str] = {}  # call id -> state last journalled
        self._recovered = recovered_calls(journal) if journal is not None else []
        self._ended = ended
        self._metrics = metrics
        self.ttl_s = ttl_s
        self._refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._dirty: dict[str, Call] = {}
        self._refresh_due: deque[str] = deque()  # call ids still to re-write
        self._recent: OrderedDict[str, Call] = OrderedDict()
        self._signals = WorkerSignals(round_s)

    # ------------------------------------------------------------ producer side (sync)

    def put(self, call: Call) -> None:
        self._mark(call)

    def end(self, call: Call) -> None:
        self._recent[call.call_id] = call
        self._recent.move_to_end(call.call_id)
        while len(self._recent) > RECENT_ENDED_MAX:
            self._recent.popitem(last=False)
        self._mark(call)

    @property
    def ended_store(self) -> EndedCalls:
        return self._ended

    def take_recovered(self) -> list[Call]:
        """The calls the journal knew and the registry may not (once, at start)."""
        calls, self._recovered = self._recovered, []
        return calls

    def recent_ended(self, call_id: str) -> Call | None:
        return self._recent.get(call_id)

    def _mark(self, call: Call) -> None:
        self._dirty[call.call_id] = call
        if self._journal is not None:
            self._journal_change(call, self._journal)
        self._signals.work_arrived()

    def _journal_change(self, call: Call, journal: Journal) -> None:
        # Only a new call, a new state or an end: the rest of a call's changes
        # (variables, a recording's name) can wait for the round, and one
        # record per state keeps the cost per call at ~4 appends.
        state = call.state.value
        if self._journalled.get(call.call_id) == state:
            return
        if call.is_ended:
            self._journalled.pop(call.call_id, None)
        else:
            self._journalled[call.call_id] = state
        try:
            journal.append(call.to_dict(), clock.now())
        except Exception as err:
            # A full disk must not stop call control: the round still carries
            # the call to Redis; only its crash safety is weaker meanwhile.
            self._metrics.registry_write_failures.inc()
            log.error("registry journal append failed", call_id=call.call_id, error=str(err))

    # ------------------------------------------------------------ direct reads/writes

    async def write_now(self, call: Call) -> None:
        """Write one call at once (the Idempotency-Key path needs it visible
        before the key is claimed). Raises StoreError on failure."""
        await asyncio.wait_for(
            self._registry.put(call.call_id, registry_fields(call), ttl_s=self.ttl_s),
            self._timeout_s,
        )

    async def remove_now(self, call_id: str) -> None:
        await asyncio.wait_for(self._registry.remove(call_id), self._timeout_s)

    async def wait_flushed(self, timeout_s: float) -> bool:
        return await self._signals.wait_idle(timeout_s)

    def close(self) -> None:
        self._signals.close()

    # ------------------------------------------------------------ the task

    async def run(self, live: Callable[[], Iterable[Call]]) -> None:
        try:
            await self._run(live)
        finally:
            if self._journal is not None:
                self._journal.close()

    async def _run(self, live: Callable[[], Iterable[Call]]) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self._refresh_s
        delay = 0.1
        while not self._signals.closed:
            if not self._dirty and not self._refresh_due:
                self._signals.idle.set()
                self._signals.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._signals.wake.wait(), max(0.0, next_refresh - loop.time())
                    )
                # Coalesce the changes that follow (a call's first states
                # come milliseconds apart): one write of the newest state. The
                # linger and the round's pacing share one timer: the round
                # begins at whichever ends later, as when they were two sleeps.
                linger = LINGER_S if self._dirty else 0.0
            else:
                linger = 0.0
            if not self._signals.closed:
                await self._signals.pace(at_least_s=linger)
            if self._signals.closed:
                return
            if loop.time() >= next_refresh:
                next_refresh = loop.time() + self._refresh_s
                self._refresh_due.extend(call.call_id for call in live())
            batch, self._dirty = self._dirty, {}
            # Every record journalled so far is about a call whose newest
            # state is in this batch or already in Redis: once the batch is
            # written they are all acknowledged.
            upto = self._journal.last_seq if self._journal is not None else 0
            if self._refresh_due:
                self._add_refresh_chunk(batch, live)
            failed = await self._flush(batch)
            if not failed and self._journal is not None and not self._ack(self._journal, upto):
                await self._pause(delay)  # the outbox disk failed: back off, the task goes on
                delay = min(5.0, delay * 2)
                continue
            if failed:
                for call_id, call in failed.items():
                    self._dirty.setdefault(call_id, call)  # a newer state wins
                await self._pause(delay)
                delay = min(5.0, delay * 2)
            else:
                delay = 0.1

    def _ack(self, journal: Journal, upto: int) -> bool:
        """Acknowledge the journal up to ``upto``; False (logged) if that failed. A failed
        acknowledgement never ends the task (and with it the engine's task group): at worst
        the next start re-applies states Redis already has. The journal keeps a marker the
        disk refuses in memory itself (engine/store/outbox/journal.py); this is the net for
        any other failure."""
        try:
            journal.ack(upto)
        except Exception as err:
            log.error(
                "registry journal acknowledgement failed; will retry",
                error=f"{type(err).__name__}: {err}",
            )
            return False
        return True

    def _add_refresh_chunk(
        self, batch: dict[str, Call], live: Callable[[], Iterable[Call]]
    ) -> None:
        """Up to REFRESH_CHUNK due calls, in their state as of now (a call
        changed since the refresh began is written as it is now; one that
        ended is skipped: its end is written by its own change)."""
        current = {call.call_id: call for call in live()}
        taken = 0
        while self._refresh_due and taken < REFRESH_CHUNK:
            call = current.get(self._refresh_due.popleft())
            if call is not None and not call.is_ended:
                batch.setdefault(call.call_id, call)
                taken += 1

    async def _pause(self, seconds: float) -> None:
        await self._signals.backoff(seconds)

    async def _flush(self, batch: dict[str, Call]) -> dict[str, Call]:
        """Write the whole batch in one MULTI round trip; on failure keep all of it."""
        puts = {cid: registry_fields(c) for cid, c in batch.items() if not c.is_ended}
        ended = [c for c in batch.values() if c.is_ended]
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._registry.apply(
                    puts,
                    [c.call_id for c in ended],
                    ttl_s=self.ttl_s,
                    extra=[self._ended.entry(c) for c in ended],
                )
        except Exception as err:
            self._metrics.registry_write_failures.inc()
            log.warning(
                "registry write failed; will retry",
                calls=len(batch),
                error=f"{type(err).__name__}: {err}",
            )
            return batch
        return {}
