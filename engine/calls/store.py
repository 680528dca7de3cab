"""Live call state and its persistence: the base of the calls service.

Holds the in-memory calls (each change under the call's lock), mirrors them to
Redis, publishes every state change on the event stream, and writes the CDR
when a call ends. No decisions are made here: ``calls.fsm`` decides,
``GroupDialing`` and ``CallService`` carry out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine.calls.cdr import CdrWriter
from engine.calls.errors import CallNotFound
from engine.calls.fsm import Step, apply_input
from engine.calls.model import Call, CallState
from engine.core import clock
from engine.pbx.base import PbxDriver, PbxEvent
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.store.redis.stream import EventStream
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService

if TYPE_CHECKING:
    from engine.calls.group_dialing import _GroupCall

log = get_logger("engine.calls")

ENDED_TTL_S = 24 * 3600


class CallStore:
    def __init__(
        self,
        *,
        drivers: Mapping[str, PbxDriver],
        registry: CallRegistry,
        stream: EventStream,
        idempotency: IdempotencyStore,
        cdrs: CdrWriter,
        metrics: Metrics,
        ended_store: EndedCalls,
        now: Callable[[], float] = clock.now,
        trunks: TrunkService | None = None,
    ) -> None:
        self._drivers = dict(drivers)
        self._registry = registry
        self._stream = stream
        self._idem = idempotency
        self._cdrs = cdrs
        self._metrics = metrics
        self._ended = ended_store
        self._now = now
        self._calls: dict[str, Call] = {}
        self._closed = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._trunks = trunks
        self._groups: dict[str, _GroupCall] = {}
        self._legs: dict[str, str] = {}  # leg id of attempts 2.. -> call id
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ queries

    async def get(self, call_id: str) -> Call:
        if call := self._calls.get(call_id):
            return call
        fields = await self._registry.get(call_id)
        if fields and "json" in fields:
            return Call.from_json(fields["json"])
        if ended := await self._ended.get(call_id):
            return ended
        raise CallNotFound(f"no call with id {call_id!r}", details={"call_id": call_id})

    async def list_live(self) -> list[Call]:
        calls = [Call.from_json(f["json"]) for f in await self._registry.all() if "json" in f]
        return sorted(calls, key=lambda c: c.created_at)

    # ------------------------------------------------------------------ commands

    def _lock(self, call_id: str) -> asyncio.Lock:
        lock = self._locks.get(call_id)
        if lock is None:
            lock = self._locks[call_id] = asyncio.Lock()
        return lock

    async def _feed(
        self, call_id: str, value: str, *, leg: str | None = None, **kwargs: Any
    ) -> None:
        async with self._lock(call_id):
            call = self._calls.get(call_id)
            if call is None:
                return
            if leg is not None and call.current_leg != leg:
                return  # about an attempt that is already over
            await self._commit(call, apply_input(call, value, self._now(), **kwargs), value)

    async def _end_rejected(self, call_id: str, text: str) -> None:
        await self._feed(call_id, "originate_rejected", cause_text=text)

    async def _update(self, call_id: str, change: Callable[[Call], Call]) -> Call:
        async with self._lock(call_id):
            call = self._calls.get(call_id)
            if call is None:
                return await self.get(call_id)
            new = change(call)
            self._calls[call_id] = new
            await self._save(new)
            return new

    async def _commit(self, before: Call, step: Step, value: str) -> None:
        call = step.call
        if step.illegal is not None:
            self._metrics.illegal_transitions.labels(step.illegal.state.value, value).inc()
            log.warning(
                "illegal call transition",
                call_id=call.call_id,
                state=step.illegal.state.value,
                input=value,
            )
        if call.is_ended:
            # The CDR is written before the end becomes visible anywhere, so a
            # client that sees "ended" can always read the CDR.
            await self._finish(call)
        else:
            self._calls[call.call_id] = call
            await self._save(call)
        if step.changed:
            await self._publish_state(call, before.state)

    async def _finish(self, call: Call) -> None:
        self._metrics.calls_ended.labels(call.switch, str(call.cause)).inc()
        log.info(
            "call ended",
            call_id=call.call_id,
            cause=call.cause,
            sip_code=call.sip_code,
            cause_text=call.cause_text,
            interrupted=call.interrupted,
        )
        gc = self._groups.pop(call.call_id, None)
        row = call
        if gc is not None:
            for leg in gc.legs.values():
                self._legs.pop(leg, None)
            if self._trunks is not None:
                # Ended without a verdict for its attempt (link lost, refused):
                # still give the channel back.
                cur = gc.plan.current
                if gc.answered_trunk is not None:
                    self._trunks.release(gc.answered_trunk, call.call_id)
                elif cur is not None:
                    self._trunks.release(cur.trunk, call.call_id)
            if 1 < call.attempt <= len(gc.plan.attempts):
                # This row is the last attempt's: it started when it was dialled.
                row = call.evolve(created_at=gc.plan.attempts[call.attempt - 1].started_at)
        await self._cdrs.write(row)
        await self._ended.put(call)
        await self._registry.remove(call.call_id)
        self._calls.pop(call.call_id, None)
        self._locks.pop(call.call_id, None)
        self._refresh_live_gauge(call.switch)

    async def _save(self, call: Call) -> None:
        await self._registry.put(
            call.call_id, {"json": call.to_json(), "switch": call.switch, "state": call.state}
        )
        self._refresh_live_gauge(call.switch)

    def _refresh_live_gauge(self, switch: str) -> None:
        count = sum(1 for c in self._calls.values() if c.switch == switch)
        self._metrics.calls_live.labels(switch).set(count)

    async def _publish_state(self, call: Call, previous: CallState | None) -> None:
        await self._publish(
            {
                "type": "CallStateChanged",
                "call_id": call.call_id,
                "switch": call.switch,
                "ts": self._now(),
                "state": call.state.value,
                "previous": previous.value if previous else None,
                "cause": call.cause,
                "sip_code": call.sip_code,
                "cause_text": call.cause_text,
                "interrupted": call.interrupted,
            }
        )

    async def _publish(self, data: Mapping[str, Any]) -> None:
        await self._stream.publish(data)
        self._metrics.events_published.inc()

    async def _persist_created(self, call: Call, lock: asyncio.Lock, *, save: bool) -> None:
        try:
            if save:
                await self._save(call)
            await self._publish_state(call, None)
        finally:
            lock.release()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _event_dict(self, event: PbxEvent, call: Call) -> dict[str, Any]:
        data = event.to_dict()
        if call.trunk_group is not None:
            # Clients follow the call, not its legs: the call id stays the
            # same across attempts; the leg and attempt say which one.
            data["call_id"] = call.call_id
            data["leg_id"] = event.call_id
            data["attempt"] = call.attempt
        return data

    async def handle(self, event: PbxEvent) -> None:
        """Fold one driver event into its call (implemented by CallService)."""
        raise NotImplementedError


class EndedCalls:
    """Recently ended calls kept in Redis for ``GET /calls/{id}`` (the CDR is
    the permanent record)."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int = ENDED_TTL_S) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_s

    async def put(self, call: Call) -> None:
        await self._redis.set(f"{self._prefix}ended:{call.call_id}", call.to_json(), ex=self._ttl)

    async def get(self, call_id: str) -> Call | None:
        text = await self._redis.get(f"{self._prefix}ended:{call_id}")
        return Call.from_json(text) if text else None
