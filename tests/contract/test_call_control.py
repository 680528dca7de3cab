"""DTMF from the far end, record start/stop, hangup with a cause: on an established call."""

from __future__ import annotations

from engine.pbx.base import (
    Answered,
    Dtmf,
    HungUp,
    OriginateRequest,
    Park,
    RecordingStarted,
    RecordingStopped,
)
from tests.contract.drivers import DriverUnderTest

ANSWER_S = 20.0
FINAL_S = 30.0


async def _answered_call(dut: DriverUnderTest, call_id: str, scenario: str = "answered") -> None:
    await dut.driver.originate(
        OriginateRequest(call_id=call_id, target=dut.target(scenario), then=Park(), timeout_s=10)
    )
    await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, Answered), "Answered", ANSWER_S
    )


def _hung_up(call_id: str):  # type: ignore[no-untyped-def]
    return lambda e: e.call_id == call_id and isinstance(e, HungUp)


async def test_dtmf_from_the_far_end(dut: DriverUnderTest, call_id: str) -> None:
    expected = dut.quirk("dtmf.far_end_digits")
    await _answered_call(dut, call_id, "dtmf")
    # The far end sends its digits, then hangs up: the HungUp closes the window.
    await dut.log.wait_for(_hung_up(call_id), "far-end hangup after DTMF", FINAL_S)
    digits = [e for e in dut.log.of(call_id) if isinstance(e, Dtmf)]
    assert "".join(e.digit for e in digits) == expected
    assert {e.direction for e in digits} == {"received"}


async def test_record_start_and_stop(dut: DriverUnderTest, call_id: str) -> None:
    path = f"{dut.quirk('record.dir')}/contract-{call_id}.wav"
    await _answered_call(dut, call_id)
    await dut.driver.record_start(call_id, path)
    started = await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, RecordingStarted),
        "RecordingStarted",
        10,
    )
    await dut.driver.record_stop(call_id, path)
    stopped = await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, RecordingStopped),
        "RecordingStopped",
        10,
    )
    assert isinstance(started, RecordingStarted) and started.path == path
    assert isinstance(stopped, RecordingStopped) and stopped.path == path
    ours = dut.log.of(call_id)
    assert ours.index(started) < ours.index(stopped)
    await dut.driver.hangup(call_id)
    await dut.log.wait_for(_hung_up(call_id), "HungUp", FINAL_S)
    # Stopped once: the hangup must not report a second stop for a recording already ended.
    assert [e.type for e in dut.log.of(call_id) if isinstance(e, RecordingStopped)] == [
        "RecordingStopped"
    ]


async def test_record_mute_pause_and_dual_channel(dut: DriverUnderTest, call_id: str) -> None:
    fmt = dut.driver.record_format(True)
    path = f"{dut.quirk('record.dir')}/contract-{call_id}{fmt.extension}"
    await _answered_call(dut, call_id)

    def recording_events() -> list[str]:
        return [
            e.type
            for e in dut.log.of(call_id)
            if isinstance(e, RecordingStarted | RecordingStopped)
        ]

    await dut.driver.record_start(call_id, path, stereo=True)
    await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, RecordingStarted), "RecordingStarted", 10
    )
    await dut.driver.record_mute(call_id, path, True)
    await dut.driver.record_mute(call_id, path, False)
    await dut.driver.record_pause(call_id, path, True, stereo=True)
    await dut.driver.record_pause(call_id, path, False, stereo=True)
    gap = dut.quirk("record.gap_pause_events")
    await dut.log.wait_for(
        lambda e: recording_events() == ["RecordingStarted", *gap], "the pause's events", 10
    )
    await dut.driver.record_stop(call_id, path)
    await dut.log.wait_for(
        lambda e: recording_events() == ["RecordingStarted", *gap, "RecordingStopped"],
        "RecordingStopped",
        10,
    )
    await dut.driver.hangup(call_id)
    await dut.log.wait_for(_hung_up(call_id), "HungUp", FINAL_S)
    assert recording_events() == ["RecordingStarted", *gap, "RecordingStopped"]


async def test_hangup_with_cause(dut: DriverUnderTest, call_id: str) -> None:
    await _answered_call(dut, call_id)
    await dut.driver.hangup(call_id, cause=21)
    final = await dut.log.wait_for(_hung_up(call_id), "HungUp", FINAL_S)
    assert isinstance(final, HungUp)
    assert final.cause == 21, final
    # The call is gone from the switch too, not only from the event stream.
    assert call_id not in {lc.call_id for lc in await dut.side.live_calls()}
