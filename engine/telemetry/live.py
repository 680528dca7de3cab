"""Metrics read from the engine's live state when Prometheus scrapes, not pushed per event.

Queues, campaigns and trunks already hold their state in memory (the ACD state, the
campaign runners, the trunk fleet); copying every change into a gauge would cost work on
every event for a value read once every 15 s. A :class:`LiveCollector` instead asks its
*sources* for metric families at scrape time:

- a source is a plain function returning families; it runs on the event loop (the
  domains' state is only ever touched there) and must only read memory;
- a source with a ``prepare`` coroutine gets it awaited first, by ``/v1/metrics``, so
  heavier work (the queues' windowed KPIs) can yield to the loop between pieces
  (:meth:`LiveCollector.prepare`);
- values that need storage (contacts left, webhook backlog) are *not* read at scrape
  time: a background task refreshes them with timeouts (:class:`StorageGauges`) and the
  source reads its cache, so a slow database never slows or fails a scrape.

A source that raises is skipped for that scrape and counted in
``engine_metrics_source_errors_total{source}``; the other sources still report.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.telemetry.cardinality import LabelBudget

log = structlog.get_logger(__name__)

Families = Callable[[], Iterable[Metric]]


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # bounded: a fixed word per domain ("queues", "campaigns", ...)
    families: Families
    prepare: Callable[[], Awaitable[None]] | None = None
    budget: LabelBudget | None = None  # the cap of its name label, reported below


class LiveCollector(Collector):
    def __init__(self) -> None:
        self._sources: list[Source] = []
        self._errors: dict[str, int] = {}

    def add(self, source: Source) -> None:
        self._sources = [s for s in self._sources if s.name != source.name] + [source]

    async def prepare(self) -> None:
        for s in self._sources:
            if s.prepare is not None:
                try:
                    await s.prepare()
                except Exception:  # a metrics bug must never fail the scrape
                    self._errors[s.name] = self._errors.get(s.name, 0) + 1
                    log.exception("metrics source prepare failed", source=s.name)

    def collect(self) -> Iterator[Metric]:
        for s in self._sources:
            try:
                out = list(s.families())
            except Exception:
                self._errors[s.name] = self._errors.get(s.name, 0) + 1
                log.exception("metrics source failed", source=s.name)
                continue
            yield from out
        errors = CounterMetricFamily(
            "engine_metrics_source_errors",
            "Scrapes in which a live metrics source failed (its families were left out)",
            labels=["source"],
        )
        folded = GaugeMetricFamily(
            "engine_metrics_labels_folded",
            "Distinct names folded into the label value 'other' because the cap was reached",
            labels=["kind"],
        )
        cap = GaugeMetricFamily(
            "engine_metrics_label_cap",
            "At most this many distinct names get their own label value",
            labels=["kind"],
        )
        for s in self._sources:
            errors.add_metric([s.name], self._errors.get(s.name, 0))
            if s.budget is not None:
                folded.add_metric([s.budget.kind], s.budget.folded)
                cap.add_metric([s.budget.kind], s.budget.cap)
        yield errors
        yield folded
        yield cap

    def describe(self) -> Iterable[Metric]:
        # Empty: the registry must not call collect() at registration (sources come later).
        return []


class StorageGauges:
    """Values read from storage by a background loop, with a timeout on every read.

    ``refresh`` is a coroutine returning the new values (one dict per family); the last
    good result is kept when a read fails or times out, and its age is exported so a
    dashboard can tell stale from fresh (``engine_metrics_storage_age_seconds``).
    """

    def __init__(
        self,
        name: str,
        refresh: Callable[[], Awaitable[dict[str, dict[tuple[str, ...], float]]]],
        *,
        every_s: float = 15.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._refresh = refresh
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._clock = clock
        self.values: dict[str, dict[tuple[str, ...], float]] = {}
        self.refreshed_at: float | None = None
        self.failures = 0
        self._stop = asyncio.Event()

    async def refresh_once(self) -> bool:
        try:
            values = await asyncio.wait_for(self._refresh(), self.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.failures += 1
            log.warning(
                "metrics storage read failed", source=self.name, error=f"{type(err).__name__}"
            )
            return False
        self.values = values
        self.refreshed_at = self._clock()
        return True

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.refresh_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every_s)

    def close(self) -> None:
        self._stop.set()

    def age(self) -> float:
        at = self.refreshed_at
        return -1.0 if at is None else self._clock() - at


class LoopLag:
    """Event-loop lag: how late a periodic wake-up runs. A loop blocked by a long
    synchronous step (or starved of CPU) shows here before anything else slows down."""

    def __init__(self, every_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self.last_s = 0.0
        self.max_s = 0.0  # the worst since the last scrape
        self.total_s = 0.0
        self.samples = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            start = self._clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every_s)
            lag = max(0.0, self._clock() - start - self.every_s)
            self.last_s = lag
            self.max_s = max(self.max_s, lag)
            self.total_s += lag
            self.samples += 1

    def close(self) -> None:
        self._stop.set()

    def families(self) -> list[Metric]:
        last = GaugeMetricFamily(
            "engine_event_loop_lag_seconds",
            "How late the event loop ran its last periodic wake-up (every 0.5 s)",
        )
        last.add_metric([], self.last_s)
        worst = GaugeMetricFamily(
            "engine_event_loop_lag_max_seconds",
            "The worst event-loop lag since the previous scrape",
        )
        worst.add_metric([], self.max_s)
        self.max_s = self.last_s
        total = CounterMetricFamily(
            "engine_event_loop_lag_accumulated_seconds",
            "Event-loop lag summed over all wake-ups (rate() / rate(samples) = mean lag)",
        )
        total.add_metric([], self.total_s)
        n = CounterMetricFamily("engine_event_loop_lag_samples", "Loop-lag wake-ups measured")
        n.add_metric([], self.samples)
        return [last, worst, total, n]
