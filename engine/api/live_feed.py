"""Summary events for live views (the wallboard): ``QueueStats``, ``CampaignStats`` and
``TrunkStats`` on the event stream, each published when its figures change, looked at every
``interval_s`` (2 s by default).

Why events and not a route the page polls: the wallboard updates over the event WebSocket only
(issue 14), and several figures it shows change with no event of their own: a queue's service
level, ASA and AHT move when an entry ends or a wrap-up is over, a campaign's dial level with
every dial, a trunk's channels and call rate with every call. Computing them in the browser
would mean a second implementation of the KPI definitions (engine/acd/kpi.py), so the engine
publishes the numbers its own API shows (``GET /v1/queues``, the ``live`` part of
``GET /v1/campaigns/{id}/stats``, ``GET /v1/trunks``).

Each source yields ``(key, payload, fingerprint)``; a payload is published only when its
fingerprint differs from the last one published for that key, so an idle deployment publishes
nothing. The fingerprint leaves out what moves with the clock alone (the longest wait, the
occupancy): a page computes the wait from ``oldest_waiting_at`` itself.

Cost: a queue's KPIs add up its per-minute sums of the last 24 h (up to 1,441 small records,
engine/acd/kpi_window.py). Still, queues are looked at only when an event says they changed (the
feed taps the event lane: a caller's event names its queue, an agent's change marks every queue
the agent's skills fit), plus one queue per look in turn (entries leaving the 24 h window have
no event); at most ``budget_s`` of queue views per look (the rest waits for the next look,
oldest change first), and the loop is given back between two queues.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from engine.campaigns.stats import live_part
from engine.telemetry.logging import get_logger

log = get_logger("engine.api.live_feed")

DEFAULT_INTERVAL_S = 2.0

Item = tuple[tuple[str, str], dict[str, Any], tuple[Any, ...]]
Source = Callable[[float], Iterable[Item]]


class QueueViews(Protocol):
    @property
    def queues(self) -> Mapping[str, Any]: ...

    def queue_view(self, name: str) -> dict[str, Any]: ...

    def agent_ids(self) -> list[str]: ...

    def agent_view(self, agent_id: str) -> dict[str, Any]: ...


class Runners(Protocol):
    @property
    def runners(self) -> Mapping[str, Any]: ...


class TrunkViews(Protocol):
    def views(self) -> list[dict[str, Any]]: ...


_QUEUE_STABLE = (
    "waiting",
    "available",
    "staffed",
    "answered",
    "abandoned",
    "service_level_pct",
    "asa_s",
    "aht_s",
    "abandon_pct",
)


class QueueStatsSource:
    """``QueueStats`` of the queues that changed (see the module's "Cost")."""

    def __init__(self, acd: QueueViews, *, budget_s: float = 0.05) -> None:
        self._acd = acd
        self.budget_s = budget_s
        self._dirty: dict[str, None] = dict.fromkeys(sorted(acd.queues))  # oldest first
        self._turn = 0
        self._timer = time.perf_counter
        # Which queues an agent's change touches: the queues it serves (engine/acd/views.serves:
        # its skills and, after a supervisor's move, its roster), read once here, not on the
        # event path, and kept current from the moves' own events (AgentSupervised).
        self._agent_queues: dict[str, list[str]] = {
            a: list(acd.agent_view(a)["queues"]) for a in acd.agent_ids()
        }

    def observe(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "AgentStateChanged":
            for name in self._agent_queues.get(str(event.get("agent_id")), ()):
                self._dirty.setdefault(name)
        elif kind == "AgentSupervised" and event.get("action") == "move":
            # The agent's staffing leaves one queue and joins another: both rows change, and
            # its later changes count in its new queues.
            agent, queues = str(event.get("agent_id")), event.get("queues")
            if isinstance(queues, list):
                self._agent_queues[agent] = [q for q in queues if q in self._acd.queues]
            for moved in (event.get("from"), event.get("to")):
                if isinstance(moved, str) and moved in self._acd.queues:
                    self._dirty.setdefault(moved)
            return
        elif not (isinstance(kind, str) and kind.startswith("QueueCall")):
            return
        queue = event.get("queue")
        if isinstance(queue, str) and queue in self._acd.queues:
            self._dirty.setdefault(queue)

    def __call__(self, now: float) -> Iterator[Item]:
        names = sorted(self._acd.queues)
        if names:
            # One queue per look in turn, changed or not: entries leaving the KPI window.
            self._turn = (self._turn + 1) % len(names)
            self._dirty.setdefault(names[self._turn])
        started = self._timer()
        while self._dirty and self._timer() - started < self.budget_s:
            name = next(iter(self._dirty))
            del self._dirty[name]
            if name in self._acd.queues:
                yield self._item(name, now)

    def _item(self, name: str, now: float) -> Item:
        view = self._acd.queue_view(name)
        k = view["kpis"]
        agents: Mapping[str, list[str]] = view["agents"]
        longest = float(k["longest_wait_s"])
        payload = {
            "type": "QueueStats",
            "queue": name,
            "service_level_s": view["service_level_s"],
            "waiting": k["waiting"],
            "longest_wait_s": longest,
            "oldest_waiting_at": round(now - longest, 3) if k["waiting"] else None,
            "available": len(agents.get("available", ())),
            "staffed": sum(len(ids) for st, ids in agents.items() if st != "logged_out"),
            "answered": k["answered"],
            "abandoned": k["abandoned"],
            "service_level_pct": k["service_level_pct"],
            "asa_s": k["asa_s"],
            "aht_s": k["aht_s"],
            "abandon_pct": k["abandon_pct"],
            "occupancy_pct": k["occupancy_pct"],
        }
        return ("queue", name), payload, tuple(payload[f] for f in _QUEUE_STABLE)


def queue_stats(acd: QueueViews, *, budget_s: float = 0.05) -> QueueStatsSource:
    return QueueStatsSource(acd, budget_s=budget_s)


def campaign_stats(campaigns: Runners) -> Source:
    def items(now: float) -> Iterator[Item]:
        for campaign_id, runner in sorted(campaigns.runners.items()):
            live = live_part(runner)
            payload = {
                "type": "CampaignStats",
                "campaign_id": campaign_id,
                "dialing": live["dialing"],
                "dial_level": live["dial_level"],
                "calls_in_progress": live["calls_in_progress"],
                "ringing": live["ringing"],
                "waiting_for_agent": live["waiting_for_agent"],
                "agents": live["agents"],
                "abandon_estimate_pct": live["abandon_estimate_pct"],
                "guard_tripped": live["guard_tripped"],
                "effective_policy": live["effective_policy"],
                "since_start": live["since_start"],
            }
            fingerprint = tuple(
                sorted((k, repr(v)) for k, v in payload.items() if k not in ("type", "ts"))
            )
            yield ("campaign", campaign_id), payload, fingerprint

    return items


def trunk_stats(trunks: TrunkViews) -> Source:
    """Channels in use and the call rate (attempts per second since the last look)."""
    last: dict[str, tuple[int, float]] = {}

    def items(now: float) -> Iterator[Item]:
        for view in trunks.views():
            name = view["name"]
            attempts = int(view["counters"]["attempts"])
            before = last.get(name)
            last[name] = (attempts, now)
            cps = 0.0
            if before is not None and now > before[1]:
                cps = round(max(0, attempts - before[0]) / (now - before[1]), 1)
            failure = view["last_failure"]
            payload = {
                "type": "TrunkStats",
                "trunk": name,
                "switch": view["switch"],
                "state": view["state"],
                "admin": view["admin"],
                "in_use": view["channels"]["in_use"],
                "max_channels": view["channels"]["max"],
                "cps": cps,
                "max_cps": view["cps"]["max"],
                "attempts": attempts,
                "answered": view["counters"]["answered"],
                "failovers": view["counters"]["failovers"],
                "last_failure": failure,
            }
            fingerprint = (
                payload["state"],
                payload["admin"],
                payload["in_use"],
                cps,
                repr(failure),
            )
            yield ("trunk", name), payload, fingerprint

    return items


class LiveFeed:
    """Looks at its sources every ``interval_s`` and publishes what changed."""

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], None],
        sources: Iterable[Source],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s: expected > 0, got {interval_s}")
        self._publish = publish
        self._sources = list(sources)
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[Any, ...]] = {}

    def observe(self, event: Mapping[str, Any]) -> None:
        """Every event on its way to the stream (a tap on the event lane): sources that look
        only at what changed learn what did. Synchronous and cheap, like every tap."""
        for source in self._sources:
            observe = getattr(source, "observe", None)
            if observe is not None:
                observe(event)

    def collect(self) -> list[dict[str, Any]]:
        """Publish what changed since the last look; returns the events published."""
        out: list[dict[str, Any]] = []
        for items in self._looks(self._clock()):
            out.extend(items)
        return out

    def _looks(self, now: float) -> Iterator[list[dict[str, Any]]]:
        """One list of published events per item looked at (the loop may run between two)."""
        for source in self._sources:
            try:
                for key, payload, fingerprint in source(now):
                    yield self._publish_if_changed(key, payload, fingerprint, now)
            except Exception:
                # One failing source (a runner mid-stop) must not end the feed or the others.
                log.exception("live feed source failed")

    def _publish_if_changed(
        self,
        key: tuple[str, str],
        payload: dict[str, Any],
        fingerprint: tuple[Any, ...],
        now: float,
    ) -> list[dict[str, Any]]:
        if self._last.get(key) == fingerprint:
            return []
        self._last[key] = fingerprint
        event = {**payload, "ts": now}
        self._publish(event)
        return [event]

    async def run(self, stopped: Callable[[], bool]) -> None:
        while not stopped():
            for _ in self._looks(self._clock()):
                await asyncio.sleep(0)  # a queue's view can take ~20 ms: let the loop breathe
            await asyncio.sleep(self.interval_s)
