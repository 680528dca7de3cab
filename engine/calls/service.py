"""The calls service: the only place in the calls domain with side effects.

It carries out what the pure state machine (``calls.fsm``) decides: it places
originates through a :class:`PbxDriver`, folds driver events into calls,
mirrors live calls into Redis, publishes every change on the event stream and
writes one CDR per leg when it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.calls.cdr import CdrWriter
from engine.calls.errors import (
    CallAlreadyEnded,
    CallNotFound,
    IdempotencyKeyReused,
    SwitchActionFailed,
    SwitchUnavailable,
    UnknownSwitch,
)
from engine.calls.fsm import Step, apply_event, apply_input
from engine.calls.model import Call, CallState, dial_target, then_to_dict
from engine.core import clock
from engine.core.errors import ActionFailed, OutcomeUnknown, PbxUnavailable
from engine.core.ids import new_call_id
from engine.pbx.base import (
    LinkChanged,
    LinkState,
    OriginateRequest,
    PbxDriver,
    PbxEvent,
    Resynced,
    Then,
    TrunkStatus,
)
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.store.redis.stream import EventStream
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics

log = get_logger("engine.calls")

ENDED_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class OriginateCommand:
    to: str
    then: Then
    switch: str | None = None
    trunk: str | None = None
    endpoint: str | None = None
    caller_id_num: str = ""
    caller_id_name: str = ""
    timeout_s: float = 30.0
    variables: Mapping[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        body = {
            "to": self.to,
            "then": then_to_dict(self.then),
            "switch": self.switch,
            "trunk": self.trunk,
            "endpoint": self.endpoint,
            "cid": [self.caller_id_num, self.caller_id_name],
            "timeout": self.timeout_s,
            "vars": dict(sorted(self.variables.items())),
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


class CallService:
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

    # ------------------------------------------------------------------ queries

    def driver(self, name: str) -> PbxDriver:
        try:
            return self._drivers[name]
        except KeyError:
            raise UnknownSwitch(
                f"unknown switch {name!r}",
                details={"switch": name, "known": sorted(self._drivers)},
            ) from None

    @property
    def drivers(self) -> Mapping[str, PbxDriver]:
        return self._drivers

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

    def _pick_switch(self, wanted: str | None) -> PbxDriver:
        if wanted is not None:
            return self.driver(wanted)
        up = [d for d in self._drivers.values() if d.state is LinkState.UP]
        if not up:
            raise SwitchUnavailable(
                "no switch link is up",
                details={"switches": {n: d.state.value for n, d in self._drivers.items()}},
            )

        # Least loaded first; the name breaks ties so the choice is stable.
        def load(d: PbxDriver) -> tuple[int, str]:
            return (sum(1 for c in self._calls.values() if c.switch == d.name), d.name)

        return min(up, key=load)

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]:
        """Place one call. Returns the call and whether it was created now
        (False when an earlier request with the same Idempotency-Key placed it)."""
        driver = self._pick_switch(cmd.switch)
        call_id = new_call_id()
        fingerprint = cmd.fingerprint()

        call = Call(
            call_id=call_id,
            switch=driver.name,
            state=CallState.CREATED,
            to=cmd.to,
            then=then_to_dict(cmd.then),
            created_at=self._now(),
            trunk=cmd.trunk,
            endpoint=cmd.endpoint,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            variables=dict(cmd.variables),
        )
        if idempotency_key:
            # Save before claiming the key: whoever finds the key taken can then
            # always read the call it points to.
            await self._save(call)
            previous = await self._idem.claim(idempotency_key, f"{call_id} {fingerprint}")
            if previous is not None:
                await self._registry.remove(call_id)
                prev_id, _, prev_fp = previous.partition(" ")
                if prev_fp != fingerprint:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used for a different request",
                        details={"idempotency_key": idempotency_key, "call_id": prev_id},
                    )
                return await self.get(prev_id), False
        self._metrics.calls_originated.labels(driver.name).inc()
        request = OriginateRequest(
            call_id=call_id,
            target=dial_target(call),
            then=cmd.then,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            timeout_s=cmd.timeout_s,
            variables=dict(cmd.variables),
        )
        # The call is tracked in memory before the originate is written, so its
        # first event always finds it. Mirroring it to Redis and publishing
        # "created" run concurrently with the AMI round trip (they are off the
        # latency path), under the call's lock: every later change of this
        # call waits for that lock, so "created" is always published first.
        lock = self._lock(call_id)
        await lock.acquire()  # a fresh lock: returns at once
        self._calls[call_id] = call
        persisted = asyncio.create_task(
            self._persist_created(call, lock, save=idempotency_key is None)
        )
        started = clock.monotonic()
        try:
            await driver.originate(request)
        except OutcomeUnknown as err:
            # Written but unacknowledged: never re-send. The resync after the
            # reconnect (or the channel's own events) decides what happened.
            log.warning("originate outcome unknown", call_id=call_id, error=str(err))
            await self._update(call_id, lambda c: c.evolve(outcome_unknown=True))
        except PbxUnavailable as err:
            await self._end_rejected(call_id, f"not placed: switch unavailable ({err})")
            if idempotency_key:
                # Nothing reached the switch, so a retry with the same key may place it.
                await self._idem.release(idempotency_key)
            raise SwitchUnavailable(
                f"switch {driver.name!r} is not available: {err}",
                details={"switch": driver.name, "state": driver.state.value, "call_id": call_id},
            ) from err
        except ActionFailed as err:
            await self._end_rejected(call_id, f"switch refused the originate: {err}")
            raise SwitchActionFailed(
                f"switch {driver.name!r} refused the originate: {err}",
                details={"switch": driver.name, "call_id": call_id, "response": err.response},
            ) from err
        else:
            self._metrics.originate_latency.labels(driver.name).observe(clock.monotonic() - started)
            await self._feed(call_id, "originate_accepted")
        finally:
            await persisted
        return await self.get(call_id), True

    async def _persist_created(self, call: Call, lock: asyncio.Lock, *, save: bool) -> None:
        try:
            if save:
                await self._save(call)
            await self._publish_state(call, None)
        finally:
            lock.release()

    async def hangup(self, call_id: str, cause: int = 16) -> Call:
        call = await self._live(call_id)
        await self._driver_call(call, lambda d: d.hangup(call_id, cause))
        return call

    async def redirect(self, call_id: str, then: Then) -> Call:
        call = await self._live(call_id)
        await self._driver_call(call, lambda d: d.redirect(call_id, then))
        return await self._update(call_id, lambda c: c.evolve(then=then_to_dict(then)))

    async def send_dtmf(self, call_id: str, digits: str) -> Call:
        call = await self._live(call_id)
        await self._driver_call(call, lambda d: d.send_dtmf(call_id, digits))
        return call

    async def _live(self, call_id: str) -> Call:
        call = await self.get(call_id)
        if call.is_ended:
            raise CallAlreadyEnded(
                f"call {call_id!r} has already ended",
                details={"call_id": call_id, "cause": call.cause, "ended_at": call.ended_at},
            )
        return call

    async def _driver_call(self, call: Call, action: Callable[[PbxDriver], Any]) -> None:
        driver = self.driver(call.switch)
        try:
            await action(driver)
        except PbxUnavailable as err:
            raise SwitchUnavailable(
                f"switch {call.switch!r} is not available: {err}",
                details={"switch": call.switch, "call_id": call.call_id},
            ) from err
        except ActionFailed as err:
            raise SwitchActionFailed(
                f"switch {call.switch!r} refused the action: {err}",
                details={"switch": call.switch, "call_id": call.call_id, "response": err.response},
            ) from err

    # ------------------------------------------------------------------ events

    def close(self) -> None:
        """Make every ``consume`` loop return after its current event."""
        self._closed = True

    async def consume(self, driver: PbxDriver) -> None:
        """Fold a driver's event stream into calls until the stream ends or
        :meth:`close` is called.

        Why a flag and not only task cancellation: redis-py 8.1's asyncio
        client swallows a CancelledError that lands while a command is in
        flight (measured: most cancels during a publish are lost), so a
        cancelled consumer could go back to waiting for the next event
        forever. The flag is checked before every wait.
        """
        events = aiter(driver.events())
        while not self._closed:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            try:
                await self.handle(event)
            except Exception:
                # One bad event must never stop the engine from tracking calls.
                log.exception("event handling failed", switch=driver.name, event=event.type)

    async def handle(self, event: PbxEvent) -> None:
        if isinstance(event, LinkChanged):
            self._metrics.switch_up.labels(event.switch).set(
                1 if event.state is LinkState.UP else 0
            )
            log.info(
                "switch link", switch=event.switch, state=event.state.value, reason=event.reason
            )
            await self._publish(event.to_dict())
            return
        if isinstance(event, Resynced):
            await self._reconcile(event)
            return
        if isinstance(event, TrunkStatus):
            await self._publish(event.to_dict())
            return
        if event.call_id not in self._calls:
            return  # a leg the engine does not own (e.g. the far end of a dial)
        async with self._lock(event.call_id):
            call = self._calls.get(event.call_id)
            if call is None:
                return
            step = apply_event(call, event, self._now())
            await self._publish(event.to_dict())
            await self._commit(call, step, event.type)

    async def _reconcile(self, event: Resynced) -> None:
        live = {lc.call_id: lc for lc in event.live}
        mine = [c for c in self._calls.values() if c.switch == event.switch and not c.is_ended]
        log.info("resync", switch=event.switch, live=len(live), tracked=len(mine))
        for call in mine:
            seen = live.get(call.call_id)
            if seen is None:
                await self._feed(
                    call.call_id,
                    "interrupted",
                    cause_text="switch link lost; the channel was gone after reconnect",
                )
                continue
            if call.outcome_unknown:
                await self._feed(call.call_id, "originate_accepted")
            if seen.state == "answered":
                await self._feed(call.call_id, "Answered")
        await self._publish(
            {"type": "Resynced", "switch": event.switch, "ts": event.ts, "live": len(live)}
        )

    # ------------------------------------------------------------------ plumbing

    def _lock(self, call_id: str) -> asyncio.Lock:
        lock = self._locks.get(call_id)
        if lock is None:
            lock = self._locks[call_id] = asyncio.Lock()
        return lock

    async def _feed(self, call_id: str, value: str, **kwargs: Any) -> None:
        async with self._lock(call_id):
            call = self._calls.get(call_id)
            if call is None:
                return
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
        await self._cdrs.write(call)
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
