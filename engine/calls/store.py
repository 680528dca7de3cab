"""Live call state and its persistence: the base of the calls service.

Holds the in-memory calls (each change under the call's lock). A change is
decided in memory and then handed on without waiting on storage: the Redis
registry is written by the background ``RegistryMirror``; events and CDRs go
into the durable local outbox (``engine/store/outbox``), whose lanes deliver
them to the Redis stream and PostgreSQL. No decisions are made here:
``calls.fsm`` decides, ``GroupDialing`` and ``CallService`` carry out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine.calls.cdr import CdrWriter
from engine.calls.errors import CallNotFound
from engine.calls.fsm import Step, apply_input
from engine.calls.mirror import RegistryMirror
from engine.calls.model import Call, CallState
from engine.calls.settings import CallSettings
from engine.core import clock
from engine.pbx.base import PbxDriver, PbxEvent
from engine.store.outbox import Lane
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService

if TYPE_CHECKING:
    from engine.calls.group_dialing import _GroupCall

log = get_logger("engine.calls")

STORE_READ_TIMEOUT_S = 2.0


class CallStore:
    def __init__(
        self,
        *,
        drivers: Mapping[str, PbxDriver],
        registry: CallRegistry,
        mirror: RegistryMirror,
        events: Lane,
        idempotency: IdempotencyStore,
        cdrs: CdrWriter,
        metrics: Metrics,
        now: Callable[[], float] = clock.now,
        trunks: TrunkService | None = None,
        settings: CallSettings | None = None,
    ) -> None:
        self._drivers = dict(drivers)
        self._registry = registry
        self._mirror = mirror
        self._events = events
        self._idem = idempotency
        self._cdrs = cdrs
        self._metrics = metrics
        self._now = now
        self._calls: dict[str, Call] = {}
        self._closed = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._trunks = trunks
        self._groups: dict[str, _GroupCall] = {}
        self._legs: dict[str, str] = {}  # leg id of attempts 2.. -> call id
        self._background: set[asyncio.Task[None]] = set()
        self._settings = settings or CallSettings()
        self._draining = False
        self._probing: set[str] = set()  # calls whose originate outcome is being asked
        self._swept: dict[str, float] = {}  # call id -> when the sweeper asked for a hangup

    def tracked(self) -> list[Call]:
        """The live calls this engine tracks (a snapshot)."""
        return list(self._calls.values())

    # ------------------------------------------------------------------ queries

    async def get(self, call_id: str) -> Call:
        if call := self._calls.get(call_id):
            return call
        if call := self._mirror.recent_ended(call_id):
            return call
        fields = await asyncio.wait_for(self._registry.get(call_id), STORE_READ_TIMEOUT_S)
        if fields and "json" in fields:
            return Call.from_json(fields["json"])
        if ended := await asyncio.wait_for(
            self._mirror.ended_store.get(call_id), STORE_READ_TIMEOUT_S
        ):
            return ended
        raise CallNotFound(f"no call with id {call_id!r}", details={"call_id": call_id})

    async def list_live(self) -> list[Call]:
        """Every instance's live calls (the registry), this engine's own from
        memory: the registry is written in the background, so a call just
        placed (or just ended) here may not be there yet."""
        rows = await asyncio.wait_for(self._registry.all(), STORE_READ_TIMEOUT_S)
        calls = {c.call_id: c for c in (Call.from_json(f["json"]) for f in rows if "json" in f)}
        for call_id in list(calls):
            if self._mirror.recent_ended(call_id) is not None:
                del calls[call_id]
        calls.update(self._calls)
        return sorted(calls.values(), key=lambda c: c.created_at)

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
            self._save(new)
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
            self._save(call)
        if step.changed:
            self._publish_state(call, before.state)

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
        elif self._trunks is not None and call.trunk:
            self._trunks.release_adopted(call.trunk, call.call_id)  # adopted after a restart
        try:
            self._cdrs.write(row)
        except Exception:
            # The outbox refused the row (disk full, an invalid row): the call
            # still ends; the log carries the whole call for a manual fix.
            log.exception("CDR not accepted", call_id=call.call_id, call=call.to_json())
        self._mirror.end(call)
        self._calls.pop(call.call_id, None)
        self._locks.pop(call.call_id, None)
        self._refresh_live_gauge(call.switch)

    def _save(self, call: Call) -> None:
        self._mirror.put(call)
        self._refresh_live_gauge(call.switch)

    def _refresh_live_gauge(self, switch: str) -> None:
        count = sum(1 for c in self._calls.values() if c.switch == switch)
        self._metrics.calls_live.labels(switch).set(count)

    def _publish_state(self, call: Call, previous: CallState | None) -> None:
        self._publish(
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

    def _publish(self, data: Mapping[str, Any]) -> None:
        """Accept an event for the stream: journalled now, published by the
        outbox lane (after the state change it reports was made)."""
        self._events.put(dict(data))

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
