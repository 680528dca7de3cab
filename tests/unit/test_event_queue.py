"""The shared backpressure policy (engine/pbx/event_queue.py): bounded queues shed only
non-essential events; lifecycle events are never dropped, whatever the flood."""

from __future__ import annotations

import asyncio

import pytest

from engine.pbx import base
from engine.pbx.event_queue import SHEDDABLE, EventFanout, EventQueue, is_essential
from engine.telemetry.metrics import Metrics


def ev(cls: type[base.PbxEvent], call_id: str = "c1", **kw: object) -> base.PbxEvent:
    return cls(switch="fs1", call_id=call_id, ts=0.0, **kw)  # type: ignore[arg-type]


LIFECYCLE = [
    ev(base.ChannelCreated),
    ev(base.Answered),
    ev(base.Bridged, other_call_id="c2"),
    ev(base.HungUp, cause=16),
    ev(base.OriginateFailed, cause=27),
    ev(base.LinkChanged, call_id="", state=base.LinkState.DOWN),
    ev(base.Resynced, call_id=""),
    ev(base.TrunkStatus, call_id="", trunk="carrier", status="unreachable"),
]


@pytest.mark.parametrize("event", LIFECYCLE, ids=lambda e: e.type)
def test_lifecycle_events_are_essential(event: base.PbxEvent) -> None:
    assert is_essential(event)


def test_only_progress_and_dtmf_are_sheddable() -> None:
    assert {c.__name__ for c in SHEDDABLE} == {"Ringing", "Dtmf"}
    assert not is_essential(ev(base.Ringing))
    assert not is_essential(ev(base.Dtmf, digit="1"))


def test_a_hungup_is_never_dropped_under_a_flood() -> None:
    queue = EventQueue(maxsize=100, name="t")
    for i in range(100):
        assert queue.put(ev(base.Dtmf, call_id=f"f{i}", digit="1"))
    # Full: a flood of DTMF is shed and counted, while every HungUp in it is kept.
    kept_hangups = 0
    for i in range(5000):
        if i % 500 == 0:
            assert queue.put(ev(base.HungUp, call_id=f"h{i}", cause=16))
            kept_hangups += 1
        else:
            assert not queue.put(ev(base.Dtmf, call_id=f"f{i}", digit="1"))
    assert queue.shed["Dtmf"] == 5000 - kept_hangups
    assert queue.overflowed == kept_hangups
    got = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [e.call_id for e in got if isinstance(e, base.HungUp)] == [
        f"h{i}" for i in range(0, 5000, 500)
    ]
    assert len(got) == 100 + kept_hangups  # bounded for everything but the essential


async def test_fanout_counts_sheds_per_subscriber_and_calls_the_metric_hook() -> None:
    metrics = Metrics()
    fanout = EventFanout(
        "fs1",
        maxsize=10,
        on_shed=lambda e: metrics.pbx_events_shed.labels(e.switch, e.type).inc(),
    )
    slow = fanout.subscribe()  # never read until the end
    fast_seen: list[base.PbxEvent] = []
    fast = fanout.subscribe()

    async def read_fast() -> None:
        async for e in fast:
            fast_seen.append(e)

    reader = asyncio.create_task(read_fast())
    calls = [f"call-{i}" for i in range(50)]
    for cid in calls:
        fanout.publish(ev(base.ChannelCreated, call_id=cid))
        for _ in range(20):
            fanout.publish(ev(base.Ringing, call_id=cid))
        fanout.publish(ev(base.HungUp, call_id=cid, cause=16))
        await asyncio.sleep(0)  # the fast reader keeps up
    # The slow subscriber shed Ringing only; it still holds every ChannelCreated/HungUp.
    slow_got = []
    while True:
        try:
            slow_got.append(await asyncio.wait_for(anext(slow), 0.01))
        except TimeoutError:
            break
    assert [e.call_id for e in slow_got if isinstance(e, base.HungUp)] == calls
    assert [e.call_id for e in slow_got if isinstance(e, base.ChannelCreated)] == calls
    shed = fanout.shed["Ringing"]
    assert shed > 0 and fanout.shed.keys() == {"Ringing"}
    assert metrics.pbx_events_shed.labels("fs1", "Ringing")._value.get() == shed
    assert [e.call_id for e in fast_seen if isinstance(e, base.HungUp)] == calls
    reader.cancel()
    await slow.aclose()  # type: ignore[attr-defined]
    assert fanout.subscribers == 1


def test_backlog_is_adopted_by_the_first_subscriber() -> None:
    fanout = EventFanout("fs1", keep_backlog=True)
    fanout.publish(ev(base.Resynced, call_id=""))
    first = fanout.subscribe()
    second = fanout.subscribe()
    assert fanout.subscribers == 2
    assert first is not second


async def test_a_dropped_subscriber_stops_receiving() -> None:
    fanout = EventFanout("fs1")
    stream = fanout.subscribe()
    assert fanout.subscribers == 1
    del stream
    import gc

    gc.collect()
    assert fanout.subscribers == 0


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        EventQueue(0)
