"""Carries out one step of the call state machine, without waiting on storage.

A step decided by ``calls.fsm`` is committed here: kept in the live table,
handed to the ``RegistryMirror`` (which writes Redis in the background),
published through the events lane of the durable outbox and, when the call
ends, its CDR accepted by the ``CdrWriter`` (the cdrs lane). Every one of
those hand-offs is synchronous and local, which is why :meth:`commit` is a
plain method: a state change can never wait on PostgreSQL or Redis
(docs/architecture.md "Durability"; engine/store/outbox/).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.calls.cdr import CdrWriter
from engine.calls.fsm import Step, apply_input
from engine.calls.live import LiveCalls
from engine.calls.mirror import RegistryMirror
from engine.calls.model import Call, CallState
from engine.pbx.base import PbxEvent
from engine.store.outbox import Lane
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics

log = get_logger("engine.calls")

# Called when a call ends, before its CDR is written: gives back what the call
# held (a trunk channel) and returns the call as its last CDR row should read.
OnEnd = Callable[[Call], Call]


def _unchanged(call: Call) -> Call:
    return call


class StateCommitter:
    def __init__(
        self,
        live: LiveCalls,
        *,
        mirror: RegistryMirror,
        events: Lane,
        cdrs: CdrWriter,
        metrics: Metrics,
        now: Callable[[], float],
        on_end: OnEnd = _unchanged,
    ) -> None:
        self._live = live
        self._mirror = mirror
        self._events = events
        self._cdrs = cdrs
        self._metrics = metrics
        self._now = now
        self._on_end = on_end
        # Synchronous observers of every committed step (the campaign runner):
        # called with (before, after) after memory is updated; they must not block.
        self.watchers: list[Callable[[Call, Call], None]] = []
        self._live_gauges: dict[str, Any] = {}
        self._live_counts: dict[str, int] = {}

    @property
    def mirror(self) -> RegistryMirror:
        return self._mirror

    async def feed(
        self, call_id: str, value: str, *, leg: str | None = None, **kwargs: Any
    ) -> None:
        """Apply one state-machine input to a live call, under its lock."""
        async with self._live.lock(call_id):
            call = self._live.get(call_id)
            if call is None:
                return
            if leg is not None and call.current_leg != leg:
                return  # about an attempt that is already over
            self.commit(call, apply_input(call, value, self._now(), **kwargs), value)

    async def update(self, call_id: str, change: Callable[[Call], Call]) -> Call | None:
        """Change a live call outside the state machine; None if it is not live."""
        async with self._live.lock(call_id):
            call = self._live.get(call_id)
            if call is None:
                return None
            new = change(call)
            self._live.put(new)
            self.save(new)
            return new

    def commit(self, before: Call, step: Step, value: str, event: PbxEvent | None = None) -> None:
        """Carry out ``step`` (``value`` fed to ``before``); ``event`` is the driver event
        that made it, published on the stream ahead of the state change it caused.

        The event and the state change go into the events journal in one write when nothing
        is published between them; a step that ends the call publishes its event first, as
        a separate write, so that it still precedes what the end publishes (the CDR is
        accepted, the trunk channel given back) before the state change itself."""
        call = step.call
        records: list[dict[str, Any]] = []
        if event is not None:
            data = self.event_data(event, before)
            if call.is_ended:
                self.publish(data)
            else:
                records.append(data)
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
            self._finish(call)
        else:
            self._live.put(call)
            self.save(call)
        if step.changed:
            records.append(self.state_data(call, before.state))
        if records:
            self._events.put_many(records)
        if call.is_ended:
            # The registry's end record is the LAST journal write of an end. A SIGKILL
            # can fall between any two writes (one os.write each), and at the next start
            # that record decides: without it the call is adopted again and the resync
            # ends it, writing its end again (the CDR is idempotent); with it the call is
            # taken as ended and nothing is written again, so the CDR, its webhook and the
            # "ended" state change must all be on disk before it
            # (tests/unit/test_call_end_crash_points.py).
            self._mirror.end(call)
        for watch in self.watchers:
            try:
                watch(before, call)
            except Exception:
                log.exception("call watcher failed", call_id=call.call_id)

    def _finish(self, call: Call) -> None:
        self._metrics.calls_ended.labels(call.switch, str(call.cause)).inc()
        log.info(
            "call ended",
            call_id=call.call_id,
            cause=call.cause,
            sip_code=call.sip_code,
            cause_text=call.cause_text,
            interrupted=call.interrupted,
        )
        row = self._on_end(call)
        try:
            self._cdrs.write(row)
        except Exception:
            # The outbox refused the row (disk full, an invalid row): the call
            # still ends; the log carries the whole call for a manual fix.
            log.exception("CDR not accepted", call_id=call.call_id, call=call.to_json())
        self._live.remove(call.call_id)
        self.refresh_live_gauge(call.switch)

    def save(self, call: Call) -> None:
        self._mirror.put(call)
        self.refresh_live_gauge(call.switch)

    def refresh_live_gauge(self, switch: str) -> None:
        # The child per switch looked up once: labels() on every state change
        # was a measurable share of the CPU per call.
        # Set only when the count moved: most state changes (ringing, answered) leave it
        # as it was, and a set takes the value's lock.
        count = self._live.on_switch(switch)
        if self._live_counts.get(switch) == count:
            return
        self._live_counts[switch] = count
        gauge = self._live_gauges.get(switch)
        if gauge is None:
            gauge = self._live_gauges[switch] = self._metrics.calls_live.labels(switch)
        gauge.set(count)

    def write_cdr(self, row: Call) -> None:
        """One CDR row for a leg that ended while its call goes on (failover)."""
        self._cdrs.write(row)

    def publish_state(self, call: Call, previous: CallState | None) -> None:
        self.publish(self.state_data(call, previous))

    def state_data(self, call: Call, previous: CallState | None) -> dict[str, Any]:
        return {
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

    def publish(self, data: Mapping[str, Any]) -> None:
        """Accept an event for the stream: journalled now, published by the
        outbox lane (after the state change it reports was made)."""
        self._events.put(dict(data))

    def event_data(self, event: PbxEvent, call: Call) -> dict[str, Any]:
        data = event.to_dict()
        if call.trunk_group is not None:
            # Clients follow the call, not its legs: the call id stays the
            # same across attempts; the leg and attempt say which one.
            data["call_id"] = call.call_id
            data["leg_id"] = event.call_id
            data["attempt"] = call.attempt
        return data
