"""A ``CallService`` running over a real Redis registry, with its CDR and event lanes on
local journals: the part of the engine the call-recovery and switch-handback tests drive
with a scripted driver and gate (tests/unit/test_call_recovery.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.calls.cdr import CdrWriter
from engine.calls.mirror import EndedCalls, RegistryMirror
from engine.calls.service import CallService
from engine.calls.settings import CallSettings
from engine.store.outbox import Journal, Lane, Record
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.telemetry.metrics import Metrics


@dataclass
class Running:
    calls: CallService
    registry: CallRegistry
    mirror: RegistryMirror


@contextlib.asynccontextmanager
async def running_call_service(
    client: Any,
    prefix: str,
    work: Path,
    *,
    gate: Any,
    driver: Any,
    cdrs: list[dict[str, Any]],
    settings: CallSettings,
) -> AsyncIterator[Running]:
    """The service, its lanes and registry mirror running; CDRs land in ``cdrs`` (one list
    may serve several services, as one PostgreSQL table would); events are dropped."""
    metrics = Metrics()

    async def collect(records: Sequence[Record]) -> None:
        cdrs.extend(rec.payload["cdr"] for rec in records)

    async def drop(records: Sequence[Record]) -> None:
        return None

    cdr_lane = Lane(Journal(work, "cdrs"), collect, metrics)
    event_lane = Lane(Journal(work, "events"), drop, metrics)
    for lane in (cdr_lane, event_lane):
        lane.open()
    registry = CallRegistry(client, prefix)
    mirror = RegistryMirror(registry, EndedCalls(client, prefix), metrics)
    calls = CallService(
        gate=gate,
        drivers={"sw": driver},
        registry=registry,
        mirror=mirror,
        events=event_lane,
        idempotency=IdempotencyStore(client, prefix),
        cdrs=CdrWriter(None, cdr_lane),  # type: ignore[arg-type]
        metrics=metrics,
        settings=settings,
    )
    tasks = [
        asyncio.create_task(cdr_lane.run()),
        asyncio.create_task(event_lane.run()),
        asyncio.create_task(mirror.run(calls.tracked)),
    ]
    try:
        yield Running(calls, registry, mirror)
    finally:
        calls.close()
        mirror.close()
        for lane in (cdr_lane, event_lane):
            lane.close()
        await asyncio.gather(*tasks)
        for lane in (cdr_lane, event_lane):
            lane.journal.close()
