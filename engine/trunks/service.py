"""The trunks service: holds the one live :class:`Fleet` and carries out what
the pure core decides.

Everything that decides is pure (``planner``, ``fleet``, ``health``...); this
module only keeps the current value, turns switch reports into
``Fleet.report``, mirrors the fleet into Prometheus, wakes up when time alone
changes a trunk (a breaker half-opening) and publishes ``TrunkStateChanged``
on the event stream whenever a trunk's state, breaker phase, admin state or
reachability changes.

The calls service asks it for plans (``begin`` / ``result`` / ``retry``) and
tells it when an answered leg hangs up (``release``). Every method that
changes the fleet is synchronous, so on one event loop there is no race
between reading the fleet and replacing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.core import clock
from engine.pbx.base import PbxDriver, TrunkStatus
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks import breaker as brk
from engine.trunks import planner
from engine.trunks.errors import TrunkNotFound
from engine.trunks.fleet import Fleet
from engine.trunks.model import GroupSpec, Health, Reachability, TrunkSpec

log = get_logger("engine.trunks")

Publish = Callable[[Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Seen:
    """What a TrunkStateChanged compares: the fields an operator acts on."""

    state: str
    phase: str
    reason: str
    admin: str
    reachability: str


class _ListEvent(Protocol):
    name: str

    def get(self, name: str, default: str | None = None) -> str | None: ...


class _ListResult(Protocol):
    @property
    def events(self) -> Sequence[_ListEvent]: ...


class _AmiLists(Protocol):
    async def send_list_action(self, action: str) -> Any: ...


def endpoint_reachability(events: Iterable[_ListEvent]) -> dict[str, Reachability]:
    """``PJSIPShowEndpoints`` list items -> reachability per endpoint. Pure.

    Why this action: ``PJSIPShowContacts`` only lists *dynamic* contacts
    ("No Contacts found" for trunks with a static ``contact=``, checked on
    the sandbox), while every ``EndpointList`` item carries ``DeviceState``,
    which res_pjsip derives from its contacts' qualify status:
    ``Unavailable`` when every contact is unreachable. Any in-use/idle state
    means a contact answers; ``Unknown``/``Invalid`` say nothing.
    """
    out: dict[str, Reachability] = {}
    for ev in events:
        if ev.name.lower() != "endpointlist":
            continue
        name = ev.get("ObjectName") or ""
        if not name:
            continue
        state = (ev.get("DeviceState") or "").strip().lower()
        if state == "unavailable":
            out[name] = "unreachable"
        elif state in ("", "unknown", "invalid"):
            out[name] = "unknown"
        else:
            out[name] = "reachable"
    return out


class TrunkService:
    def __init__(
        self,
        trunks: Iterable[TrunkSpec],
        groups: Iterable[GroupSpec],
        *,
        metrics: Metrics,
        publish: Publish | None = None,
        now: Callable[[], float] = clock.now,
        rng: random.Random | None = None,
    ) -> None:
        self._fleet = Fleet.build(trunks, groups)
        self._metrics = metrics
        self._publish = publish
        self._now = now
        self._rng = rng or random.Random()
        self._released = asyncio.Event()
        self._kick = asyncio.Event()
        self._outbox: list[dict[str, Any]] = []
        self._seen: dict[str, _Seen] = {}
        self._closed = False
        self._poll_now = False
        for name in self._fleet.trunks:
            self._seen[name] = self._snapshot(name, self._now())
        self._export(self._fleet.trunks)

    # ------------------------------------------------------------------ queries

    @property
    def fleet(self) -> Fleet:
        return self._fleet

    def has_group(self, name: str) -> bool:
        return name in self._fleet.groups

    @property
    def group_names(self) -> list[str]:
        return sorted(self._fleet.groups)

    def views(self) -> list[dict[str, Any]]:
        return self._fleet.views(self._now())

    def view(self, name: str) -> dict[str, Any]:
        self._known(name)
        return self._fleet.view(name, self._now())

    def _known(self, name: str) -> None:
        if name not in self._fleet.trunks:
            raise TrunkNotFound(
                f"no trunk named {name!r}",
                details={"trunk": name, "known": sorted(self._fleet.trunks)},
            )

    # ------------------------------------------------------------------ plans

    def begin(self, call_id: str, group: str) -> planner.Step:
        return self._apply(planner.start(call_id, group, self._fleet, self._now(), self._rng))

    def result(self, plan: planner.CallPlan, outcome: planner.AttemptOutcome) -> planner.Step:
        return self._apply(
            planner.on_attempt_result(plan, outcome, self._fleet, self._now(), self._rng)
        )

    def retry(self, plan: planner.CallPlan) -> planner.Step:
        return self._apply(planner.retry(plan, self._fleet, self._now(), self._rng))

    async def wait_capacity(self, until: float) -> None:
        """Sleep until ``until`` or until a channel is released, whichever first
        (the planner's ``Wait``: a release may make a member available)."""
        released = self._released
        delay = until - self._now()
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), delay)

    def release(self, trunk: str) -> None:
        """An answered leg on ``trunk`` ended, or an attempt was abandoned
        without a verdict (link lost): free its channel."""
        if trunk not in self._fleet.trunks:
            return
        self._fleet = self._fleet.release(trunk)
        self._after_change([trunk])
        self._signal_release()

    def _apply(self, step: planner.Step) -> planner.Step:
        before = self._fleet
        self._fleet = step.fleet
        touched = [n for n, st in step.fleet.states.items() if before.states.get(n) is not st]
        self._count(before, step.fleet, touched)
        self._after_change(touched)
        if any(
            n in before.states and step.fleet.states[n].in_use < before.states[n].in_use
            for n in touched
        ):
            self._signal_release()
        return step

    def _signal_release(self) -> None:
        # Wake every waiter once; the next ones wait on a fresh event.
        self._released.set()
        self._released = asyncio.Event()

    # ------------------------------------------------------------------ switch reports

    def on_status(self, event: TrunkStatus) -> str | None:
        """A ``TrunkStatus`` from a driver (ContactStatus/PeerStatus, sofia
        gateway). Returns the trunk it was about, if any."""
        name = self._fleet.trunk_for(event.switch, event.trunk)
        if name is None:
            return None
        self._fleet = self._fleet.report(name, event.status, self._now(), event.rtt_ms)
        self._after_change([name])
        return name

    async def poll(self, drivers: Mapping[str, PbxDriver]) -> None:
        """Refresh reachability from every Asterisk switch that has trunks.

        Asterisk sends ContactStatus only on a change, so a trunk already
        unreachable when we connected is never reported by an event; the
        poll also refreshes "unreachable" reports before their TTL ends.
        Failures are logged and skipped (the next poll tries again).
        """
        switches = {t.switch for t in self._fleet.trunks.values()}
        for name in sorted(switches):
            driver = drivers.get(name)
            if driver is None or driver.kind != "asterisk":
                continue  # FreeSWITCH reports gateways itself at every resync
            client: _AmiLists | None = getattr(driver, "client", None)
            if client is None:
                continue
            try:
                result = await client.send_list_action("PJSIPShowEndpoints")
            except Exception as err:  # link down, timeout: not fatal for a poll
                log.info("trunk poll failed", switch=name, error=str(err))
                continue
            now = self._now()
            for endpoint, status in endpoint_reachability(result.events).items():
                trunk = self._fleet.trunk_for(name, endpoint)
                if trunk is not None:
                    self._fleet = self._fleet.report(trunk, status, now)
            self._after_change()

    # ------------------------------------------------------------------ admin

    def drain(self, name: str) -> dict[str, Any]:
        self._known(name)
        self._fleet = self._fleet.drain(name)
        self._after_change([name])
        return self.view(name)

    def enable(self, name: str) -> dict[str, Any]:
        self._known(name)
        self._fleet = self._fleet.enable(name)
        self._after_change([name])
        self._signal_release()  # waiting calls may use it now
        return self.view(name)

    # ------------------------------------------------------------------ background

    def request_poll(self) -> None:
        """Poll reachability soon (a switch link just came up: events sent
        while it was down are lost)."""
        self._poll_now = True
        self._kick.set()

    def close(self) -> None:
        self._closed = True
        self._kick.set()

    async def run(self, drivers: Mapping[str, PbxDriver], poll_interval_s: float) -> None:
        """Until :meth:`close`: publish state changes, wake at the fleet's next
        timed transition, poll reachability every ``poll_interval_s``."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while not self._closed:
            if self._poll_now or loop.time() >= next_poll:
                self._poll_now = False
                await self.poll(drivers)
                next_poll = loop.time() + poll_interval_s
            # A breaker half-opening is a change by time alone: look again then.
            self._after_change()
            await self.flush()
            wake = self._fleet.next_wakeup()
            delay = next_poll - loop.time()
            if wake is not None:
                # +1 ms: at exactly open_until the breaker has just half-opened.
                delay = min(delay, max(0.0, wake - self._now()) + 0.001)
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), max(0.0, delay))
        await self.flush()

    async def flush(self) -> None:
        """Publish the queued TrunkStateChanged events, in order."""
        while self._outbox:
            data = self._outbox.pop(0)
            if self._publish is not None:
                try:
                    await self._publish(data)
                except Exception:
                    log.exception("TrunkStateChanged not published", trunk=data.get("trunk"))

    # ------------------------------------------------------------------ change tracking

    def _snapshot(self, name: str, now: float) -> _Seen:
        st = self._fleet.states[name]
        params = self._fleet.trunks[name].breaker
        b = brk.advance(st.breaker, params, now)
        return _Seen(
            state=self._fleet.health(name, now).value,
            phase=b.phase.value,
            reason=b.reason or "",
            admin="enabled" if st.enabled else "drained",
            reachability=st.reach,
        )

    def _after_change(self, names: Iterable[str] | None = None) -> None:
        """Look for state changes of ``names`` (default: every trunk, which
        the background loop does after timed transitions)."""
        now = self._now()
        changed = False
        todo = list(self._fleet.trunks) if names is None else list(names)
        for name in todo:
            seen = self._snapshot(name, now)
            old = self._seen.get(name)
            if old != seen:
                self._seen[name] = seen
                changed = True
                if old is not None:
                    self._queue_change(name, old, seen, now)
        self._export(todo)
        if changed:
            self._kick.set()

    def _queue_change(self, name: str, old: _Seen, new: _Seen, now: float) -> None:
        spec = self._fleet.trunks[name]
        view = self._fleet.view(name, now)
        if new.phase == "open" and old.phase != "open":
            self._metrics.trunk_breaker_opened.labels(name).inc()
        log.info("trunk state", trunk=name, state=new.state, previous=old.state, reason=new.reason)
        self._outbox.append(
            {
                "type": "TrunkStateChanged",
                "trunk": name,
                "switch": spec.switch,
                "call_id": "",
                "ts": now,
                "state": new.state,
                "previous": old.state,
                "breaker": view["breaker"],
                "admin": new.admin,
                "reachability": new.reachability,
                "last_failure": view["last_failure"],
            }
        )

    def _count(self, before: Fleet, after: Fleet, names: Iterable[str]) -> None:
        for name in names:
            st = after.states[name]
            old = before.states.get(name)
            if old is None or old is st:
                continue
            a, b = old.counters, st.counters
            m = self._metrics
            if b.attempts > a.attempts:
                m.trunk_attempts.labels(name).inc(b.attempts - a.attempts)
            if b.failovers > a.failovers:
                m.trunk_failures.labels(name).inc(b.failovers - a.failovers)
            if b.answered > a.answered:
                m.trunk_answered.labels(name).inc(b.answered - a.answered)

    def _export(self, names: Iterable[str]) -> None:
        now = self._now()
        m = self._metrics
        states: tuple[Literal["up", "degraded", "down", "probing"], ...] = (
            "up",
            "degraded",
            "down",
            "probing",
        )
        for name in names:
            health: Health = self._fleet.health(name, now)
            for s in states:
                m.trunk_state.labels(name, s).set(1 if health.value == s else 0)
            st = self._fleet.states[name]
            m.trunk_channels_in_use.labels(name).set(st.in_use)
            m.trunk_drained.labels(name).set(0 if st.enabled else 1)


class _Stream(Protocol):
    async def publish(self, data: Mapping[str, Any]) -> Any: ...


def stream_publish(stream: _Stream, metrics: Metrics) -> Publish:
    """Publish to the engine's event stream (what the WebSocket relays)."""

    async def publish(data: Mapping[str, Any]) -> None:
        await stream.publish(data)
        metrics.events_published.inc()

    return publish
