"""The switch drivers (Asterisk AMI, FreeSWITCH ESL): built early, connected late."""

from __future__ import annotations

from contextlib import AsyncExitStack

from engine.acd.service import AcdService
from engine.calls.service import CallService
from engine.config import EngineConfig
from engine.pbx.base import PbxDriver
from engine.pbx.event_queue import EventFanout
from engine.pbx.factory import build_driver
from engine.recordings.service import RecordingService
from engine.telemetry.metrics import Metrics
from engine.wiring.background import Background


def build_drivers(cfg: EngineConfig, metrics: Metrics) -> dict[str, PbxDriver]:
    drivers = {sw.name: build_driver(sw) for sw in cfg.switches}
    shed = metrics.pbx_events_shed
    for driver in drivers.values():
        fanout = getattr(driver, "fanout", None)
        if isinstance(fanout, EventFanout):
            # Non-essential events shed under backpressure are counted.
            fanout.on_shed = lambda e: shed.labels(e.switch, e.type).inc()
    return drivers


async def connect_switches(
    drivers: dict[str, PbxDriver],
    calls: CallService,
    acd: AcdService,
    recordings: RecordingService,
    background: Background,
    stack: AsyncExitStack,
) -> None:
    """Each switch's consumers subscribe, then its link starts (stopped before the
    consumers are cancelled: LIFO)."""
    for driver in drivers.values():
        background.consume(calls.consume(driver), f"consume-{driver.name}")
        # The ACD follows the same switch events through its own
        # subscription (docs/acd.md "Who owns which leg").
        background.consume(acd.consume(driver), f"acd-consume-{driver.name}")
        background.consume(recordings.consume(driver), f"rec-consume-{driver.name}")
        await driver.start()
        stack.push_async_callback(driver.stop)
