"""Change detection for the trunks: after every change of the fleet, compare what an
operator acts on (state, breaker phase, admin state, reachability) with what was last
seen, queue a ``TrunkStateChanged`` for each trunk that moved, in order, and have the
gauges follow (engine/trunks/exporter.py). :meth:`ChangeReporter.flush` publishes the
queued events on the event stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks import breaker as brk
from engine.trunks import health as hl
from engine.trunks.exporter import MetricsExporter
from engine.trunks.live import LiveFleet
from engine.trunks.model import BreakerParams, Phase

log = get_logger("engine.trunks")

Publish = Callable[[Mapping[str, Any]], Awaitable[None]]
#: ``ChangeReporter.after_change``: the trunks to look at, ``None`` for every trunk.
Changed = Callable[[Iterable[str] | None], None]


@dataclass(frozen=True, slots=True)
class Seen:
    """What a TrunkStateChanged compares: the fields an operator acts on."""

    state: str
    phase: str
    reason: str
    admin: str
    reachability: str


# A Seen and what it was read from: (breaker, window, params, bucket, enabled, reach, seen).
_Snapshot = tuple[brk.BreakerState, hl.Window, BreakerParams, int, bool, str, Seen]


class ChangeReporter:
    def __init__(
        self,
        live: LiveFleet,
        exporter: MetricsExporter,
        *,
        metrics: Metrics,
        publish: Publish | None,
        now: Callable[[], float],
        wall: Callable[[], float],
        wake: Callable[[], None],
    ) -> None:
        self._live = live
        self._exporter = exporter
        self._metrics = metrics
        self._publish = publish
        self._now = now
        self._wall = wall
        self._wake = wake
        self._outbox: list[dict[str, Any]] = []
        self._seen: dict[str, Seen] = {}
        # name -> (breaker, window, params, bucket, enabled, reach, snapshot): _snapshot's
        # last answer while the breaker is closed.
        self._snapshots: dict[str, _Snapshot] = {}
        for name in live.fleet.trunks:
            self._seen[name] = self._snapshot(name, self._now())

    @property
    def seen(self) -> Mapping[str, Seen]:
        return self._seen

    def _snapshot(self, name: str, now: float) -> Seen:
        fleet = self._live.fleet
        st = fleet.states[name]
        params = fleet.trunks[name].breaker
        # A closed breaker does not change with time, and the window's totals change
        # only with its bucket: while neither the breaker, the window, the admin state,
        # the reachability nor the bucket moved (a take or a release moves only the
        # channel count), the last snapshot is still exact. Open and half-open
        # breakers change with time alone, so they are always read afresh.
        closed = st.breaker.phase is Phase.CLOSED
        if closed:
            bucket = int(now // (params.window_s / hl.BUCKETS))
            last = self._snapshots.get(name)
            if (
                last is not None
                and last[0] is st.breaker
                and last[1] is st.window
                and last[2] is params
                and last[3] == bucket
                and last[4] == st.enabled
                and last[5] == st.reach
            ):
                return last[6]
        b = brk.advance(st.breaker, params, now)
        seen = Seen(
            state=fleet.health(name, now).value,
            phase=b.phase.value,
            reason=b.reason or "",
            admin="enabled" if st.enabled else "drained",
            reachability=st.reach,
        )
        if closed:
            self._snapshots[name] = (
                st.breaker,
                st.window,
                params,
                bucket,
                st.enabled,
                st.reach,
                seen,
            )
        return seen

    def after_change(self, names: Iterable[str] | None = None) -> None:
        """Look for state changes of ``names`` (default: every trunk, which
        the background loop does after timed transitions)."""
        now = self._now()
        changed = False
        todo = list(self._live.fleet.trunks) if names is None else list(names)
        for name in todo:
            seen = self._snapshot(name, now)
            old = self._seen.get(name)
            if old is not seen and old != seen:
                self._seen[name] = seen
                changed = True
                if old is not None:
                    self._queue_change(name, old, seen, now)
        self._exporter.export(self._live.fleet, todo, self._seen)
        if changed:
            self._wake()

    def _queue_change(self, name: str, old: Seen, new: Seen, now: float) -> None:
        fleet = self._live.fleet
        spec = fleet.trunks[name]
        offset = self._wall() - self._now()
        view = fleet.view(name, now, offset)
        if new.phase == "open" and old.phase != "open":
            self._metrics.trunk_breaker_opened.labels(name).inc()
        log.info("trunk state", trunk=name, state=new.state, previous=old.state, reason=new.reason)
        self._outbox.append(
            {
                "type": "TrunkStateChanged",
                "trunk": name,
                "switch": spec.switch,
                "call_id": "",
                "ts": now + offset,
                "state": new.state,
                "previous": old.state,
                "breaker": view["breaker"],
                "admin": new.admin,
                "reachability": new.reachability,
                "last_failure": view["last_failure"],
            }
        )

    async def flush(self) -> None:
        """Publish the queued TrunkStateChanged events, in order."""
        while self._outbox:
            data = self._outbox.pop(0)
            if self._publish is not None:
                try:
                    await self._publish(data)
                except Exception:
                    log.exception("TrunkStateChanged not published", trunk=data.get("trunk"))
