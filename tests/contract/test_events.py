"""The event stream: every subscriber gets every event (the call service, trunk health and
recorders each open their own ``events()``)."""

from __future__ import annotations

from engine.pbx.base import HungUp, OriginateFailed, OriginateRequest, Park
from tests.contract.drivers import DriverUnderTest, EventLog

FINAL_S = 30.0


async def test_every_event_stream_sees_every_event(dut: DriverUnderTest, call_id: str) -> None:
    second = EventLog()
    second.start(dut.driver.events())
    try:
        await dut.driver.originate(
            OriginateRequest(call_id=call_id, target=dut.target("busy"), then=Park(), timeout_s=5)
        )

        def final(e: object) -> bool:
            return isinstance(e, HungUp | OriginateFailed) and e.call_id == call_id

        await dut.log.wait_for(final, "final event (first stream)", FINAL_S)
        await second.wait_for(final, "final event (second stream)", FINAL_S)
        first_seen = [e.type for e in dut.log.of(call_id)]
        assert [e.type for e in second.of(call_id)] == first_seen
        assert first_seen[0] == "ChannelCreated" and first_seen[-1] == "HungUp"
    finally:
        await second.stop()
