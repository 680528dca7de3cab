"""Issue 8 defect 11: the resync must not trust a ``show channels`` snapshot older than the
events already seen. The real rows lag the events (show-channels-lag.esl): RINGING up to
198 ms after CHANNEL_ANSWER, a hung-up leg listed up to 191 ms after HANGUP_COMPLETE."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.pbx import base
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from engine.pbx.freeswitch.live_view import LiveView
from tests.fakes.fake_esl import FakeFreeSwitch


def row(call_id: str, state: str) -> base.LiveChannel:
    return base.LiveChannel(call_id=call_id, channel=f"sofia/external/{call_id}", state=state)  # type: ignore[arg-type]


def ev(cls: type[base.PbxEvent], call_id: str, **kw: object) -> base.PbxEvent:
    return cls(switch="fs1", call_id=call_id, ts=0.0, **kw)  # type: ignore[arg-type]


def test_a_leg_seen_answered_never_reads_ringing_again() -> None:
    view = LiveView()
    view.observe(ev(base.ChannelCreated, "a"))
    view.observe(ev(base.Answered, "a"))
    view.observe(ev(base.Ringing, "a"))  # a late duplicate cannot downgrade either
    assert view.merge([row("a", "ringing"), row("b", "ringing")]) == [
        row("a", "answered"),
        row("b", "ringing"),
    ]


def test_a_leg_seen_hung_up_is_never_resurrected() -> None:
    view = LiveView()
    view.observe(ev(base.Answered, "a"))
    view.observe(ev(base.HungUp, "a", cause=16))
    view.observe(ev(base.OriginateFailed, "f", cause=27))
    assert view.merge([row("a", "answered"), row("f", "ringing"), row("c", "other")]) == [
        row("c", "other")
    ]
    assert view.ended("a") and view.ended("f")


def test_a_fresher_snapshot_still_wins_over_older_events() -> None:
    # Events lost while the link was down: the rows know better than our "ringing".
    view = LiveView()
    view.observe(ev(base.Ringing, "a"))
    assert view.merge([row("a", "answered")]) == [row("a", "answered")]


def test_tombstones_are_bounded_and_missing_legs_are_forgotten() -> None:
    view = LiveView(max_tombstones=2)
    for uid in "abc":
        view.observe(ev(base.HungUp, uid, cause=16))
    assert not view.ended("a") and view.ended("b") and view.ended("c")
    view.observe(ev(base.Answered, "x"))
    view.observe(ev(base.Answered, "y"))
    view.forget_missing([row("x", "answered")], keep=set())
    assert view.merge([row("y", "ringing")]) == [row("y", "ringing")]


async def _wait(pred: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_resync_right_after_answer_and_after_hangup_trusts_the_events() -> None:
    """Drive the driver against the fake with its database lag made longer than the
    resync's settle time: the rows say RINGING for an answered call, and still list a
    call that hung up. The Resynced must say answered, and must not list the ended call."""
    # 66XXX stays up 30 s x 0.2; the rows lag 3 s, far above the 0.05 s settle time.
    async with FakeFreeSwitch(time_scale=0.2) as fs:
        fs.db_lag = (3.0, 3.0)
        driver = FreeSwitchDriver(
            "fs1", fs.host, fs.port, fs.password, backoff_initial=0.01, resync_settle_s=0.05
        )
        events: list[base.PbxEvent] = []

        async def collect() -> None:
            async for e in driver.events():
                events.append(e)

        collector = asyncio.create_task(collect())
        await driver.start()
        try:
            assert await driver.wait_up() == base.LinkState.UP
            target = base.DialTarget("trunk", "carrier", "66001")
            for call_id in ("kept", "ended"):
                await driver.originate(
                    base.OriginateRequest(call_id=call_id, target=target, then=base.Park())
                )
            await _wait(
                lambda: (
                    {e.call_id for e in events if isinstance(e, base.Answered)} >= {"kept", "ended"}
                ),
                "both answered",
            )
            await driver.hangup("ended")
            await _wait(
                lambda: any(isinstance(e, base.HungUp) and e.call_id == "ended" for e in events),
                "HungUp of ended",
            )
            # The rows lag: the switch itself still says RINGING / still lists "ended".
            raw = await driver.client.api("show channels as json")
            assert '"callstate":"RINGING"' in raw and "ended" in raw
            # So does the driver's own channel list, corrected by the events.
            live = {lc.call_id: lc.state for lc in await driver.live_calls()}
            assert live.get("kept") == "answered" and "ended" not in live
            mark = len(events)
            fs.drop_connections()
            await _wait(
                lambda: any(isinstance(e, base.Resynced) for e in events[mark:]), "Resynced"
            )
            resynced = next(e for e in events[mark:] if isinstance(e, base.Resynced))
            assert isinstance(resynced, base.Resynced)
            states = {lc.call_id: lc.state for lc in resynced.live}
            assert states.get("kept") == "answered", states
            assert "ended" not in states, states
        finally:
            collector.cancel()
            await driver.stop()
