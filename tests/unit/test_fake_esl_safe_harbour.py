"""The fake FreeSWITCH's ``engine_safe_harbour`` extension (dialplans/freeswitch/engine.xml):
a transfer there plays the channel's ENGINE_SAFE_HARBOUR_PROMPT and hangs the leg up.

Before this, the fake treated it like ``engine_park``: the released person stayed parked
until the far end's own timer, so a campaign's abandoned call never ended on its own."""

from __future__ import annotations

import asyncio

from engine.pbx import base
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from tests.fakes.esl_transcripts import TEvent
from tests.fakes.fake_esl import FakeFreeSwitch

# 66XXX stays up LONG_CALL_S (30 s) x SCALE = 15 s unless something ends it.
SCALE = 0.5


async def test_safe_harbour_transfer_plays_the_prompt_and_hangs_up() -> None:
    events: list[base.PbxEvent] = []
    async with FakeFreeSwitch(time_scale=SCALE) as fs:
        emitted: list[TEvent] = []
        emit = fs.emit

        def record(ev: TEvent) -> None:
            emitted.append(ev)
            emit(ev)

        fs.emit = record  # type: ignore[method-assign]
        driver = FreeSwitchDriver("fs1", fs.host, fs.port, fs.password)
        await driver.start()
        await driver.wait_up()

        async def collect() -> None:
            async for e in driver.events():
                events.append(e)

        task = asyncio.create_task(collect())
        try:
            await driver.originate(
                base.OriginateRequest(
                    call_id="sh-1",
                    target=base.DialTarget("trunk", "carrier", "66001"),
                    then=base.Park(),
                    variables={"ENGINE_SAFE_HARBOUR_PROMPT": "vm-goodbye"},
                )
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not any(e.call_id == "sh-1" and e.type == "Answered" for e in events):
                assert loop.time() < deadline, "not answered"
                await asyncio.sleep(0.01)
            transferred = loop.time()
            await driver.redirect("sh-1", base.DialplanTarget("default", "engine_safe_harbour", 1))
            while not any(e.call_id == "sh-1" and isinstance(e, base.HungUp) for e in events):
                assert loop.time() < deadline, "the safe-harbour extension never hung up"
                await asyncio.sleep(0.01)
            # Well before the far end would have ended the call (LONG_CALL_S x SCALE).
            assert loop.time() - transferred < 5
        finally:
            task.cancel()
            await driver.stop()
    assert "api uuid_transfer sh-1 engine_safe_harbour XML default" in fs.received
    # The leg's park ends, the prompt plays, then the leg hangs up (in that order).
    names = [e.name for e in emitted if e.uid == "sh-1"]
    after = names[names.index("CHANNEL_EXECUTE_COMPLETE") :]
    assert after[:2] == ["CHANNEL_EXECUTE_COMPLETE", "PLAYBACK_START"], names
    assert after.index("PLAYBACK_STOP") < after.index("CHANNEL_HANGUP"), names
    played = {
        e.get("Playback-File-Path")
        for e in emitted
        if e.name == "PLAYBACK_START" and e.uid == "sh-1"
    }
    assert played == {"vm-goodbye"}
    ours = [e for e in events if e.call_id == "sh-1"]
    hung = [e for e in ours if isinstance(e, base.HungUp)]
    assert len(hung) == 1 and hung[0].cause == 16
    # Nothing after the hangup: one HungUp, the leg gone from the switch.
    assert "sh-1" not in fs.channels
