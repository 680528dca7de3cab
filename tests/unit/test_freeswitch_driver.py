"""FreeSwitchDriver against the fake FreeSWITCH: normalized outcomes per carrier number."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from engine.core.errors import ActionFailed, PbxUnavailable
from engine.pbx import base
from engine.pbx.freeswitch.driver import FreeSwitchDriver, dial_string, parse_gateway_table
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.fs_driver_harness import Harness, driver_on_fake


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with driver_on_fake() as harness:
        yield harness


def req(call_id: str, number: str, then: base.Then | None = None) -> base.OriginateRequest:
    return base.OriginateRequest(
        call_id=call_id,
        target=base.DialTarget("trunk", "carrier", number),
        then=then or base.Park(),
        timeout_s=5,
    )


@pytest.mark.parametrize(
    ("number", "cause", "sip", "text", "answered"),
    [
        ("61234", 16, 200, "NORMAL_CLEARING", True),
        ("62000", 17, 486, "USER_BUSY", False),
        ("63999", 34, 503, "NORMAL_TEMPORARY_FAILURE", False),
        ("64001", 19, None, "NO_ANSWER", False),
        ("65001", 16, 200, "NORMAL_CLEARING", True),
        # Second batch: the far end declines (originate-decline-603-gateway.esl).
        ("68002", 21, 603, "CALL_REJECTED", False),
    ],
)
async def test_outcome_per_carrier_number(
    h: Harness, number: str, cause: int, sip: int | None, text: str, answered: bool
) -> None:
    call_id = f"call-{number}"
    await h.driver.originate(req(call_id, number))
    final = await h.final(call_id)
    assert isinstance(final, base.HungUp)
    assert (final.cause, final.sip_code, final.cause_text) == (cause, sip, text)
    types = [e.type for e in h.of(call_id)]
    assert types[0] == "ChannelCreated"
    assert ("Answered" in types) is answered
    assert "OriginateFailed" not in types
    created = h.of(call_id)[0]
    assert isinstance(created, base.ChannelCreated) and number in created.channel
    sent = [c for c in h.fs.received if c.startswith("bgapi originate")][-1]
    assert (
        f"origination_uuid={call_id}" in sent and f"sofia/gateway/carrier/{number} &park()" in sent
    )


async def test_dtmf_from_far_end(h: Harness) -> None:
    await h.driver.originate(req("dt1", "65001"))
    await h.final("dt1")
    assert "".join(e.digit for e in h.of("dt1") if isinstance(e, base.Dtmf)) == "1234"


async def test_gateway_down_is_originate_failed_at_once(h: Harness) -> None:
    await h.driver.originate(
        base.OriginateRequest(
            call_id="gw1", target=base.DialTarget("trunk", "rig_down", "61001"), then=base.Park()
        )
    )
    final = await h.final("gw1")
    assert isinstance(final, base.OriginateFailed)
    assert (final.cause, final.cause_text) == (27, "GATEWAY_DOWN")
    assert [e.type for e in h.of("gw1")] == ["OriginateFailed"]


async def test_resync_reports_trunks_and_live_calls(h: Harness) -> None:
    trunks = {e.trunk: e.status for e in h.events if isinstance(e, base.TrunkStatus)}
    assert trunks == {"rig_down_reg": "unreachable", "rig_down": "unknown"}
    assert await h.driver.trunk_status() == trunks
    # 66XXX stays up 30 s (x 0.2 here): still alive after the resync's settle time.
    h.fs.time_scale = 0.2
    await h.driver.originate(req("live1", "66001"))
    await h.wait_for(lambda e: e.call_id == "live1" and e.type == "Ringing")
    live = await h.driver.live_calls()
    assert "live1" in {c.call_id for c in live}
    # a dropped link comes back through SYNCING with a Resynced carrying the live call
    h.fs.drop_connections()
    resynced = await h.wait_for(
        lambda e: isinstance(e, base.Resynced) and any(c.call_id == "live1" for c in e.live)
    )
    assert isinstance(resynced, base.Resynced)
    # Resynced is emitted inside the resync, before the link goes UP: wait for UP.
    assert await h.driver.wait_up() == base.LinkState.UP
    await h.wait_for(
        lambda e: (
            isinstance(e, base.LinkChanged)
            and e.state == base.LinkState.UP
            and h.events.index(e) > h.events.index(resynced)
        )
    )
    states = [e.state for e in h.events if isinstance(e, base.LinkChanged)]
    assert states[-4:] == [
        base.LinkState.DOWN,
        base.LinkState.CONNECTING,
        base.LinkState.SYNCING,
        base.LinkState.UP,
    ]
    await h.driver.hangup("live1")
    await h.final("live1")


async def test_hangup_with_cause_record_and_variables(h: Harness) -> None:
    await h.driver.originate(req("ans1", "61001"))
    await h.wait_for(lambda e: e.call_id == "ans1" and e.type == "Answered")
    await h.driver.record_start("ans1", "/tmp/rec-ans1.wav")
    await h.driver.set_var("ans1", "campaign", "c42")
    assert await h.driver.get_var("ans1", "campaign") == "c42"
    assert await h.driver.get_var("ans1", "nope") is None
    await h.driver.record_stop("ans1", "/tmp/rec-ans1.wav")
    await h.driver.send_dtmf("ans1", "12")
    await h.driver.hangup("ans1", cause=17)
    final = await h.final("ans1")
    assert isinstance(final, base.HungUp) and (final.cause, final.cause_text) == (17, "USER_BUSY")
    paths = [
        (e.type, e.path)
        for e in h.of("ans1")
        if isinstance(e, base.RecordingStarted | base.RecordingStopped)
    ]
    assert paths == [
        ("RecordingStarted", "/tmp/rec-ans1.wav"),
        ("RecordingStopped", "/tmp/rec-ans1.wav"),
    ]
    assert "api uuid_kill ans1 USER_BUSY" in h.fs.received


async def test_commands_on_a_missing_channel_fail(h: Harness) -> None:
    with pytest.raises(ActionFailed, match="No such channel"):
        await h.driver.hangup("00000000-0000-0000-0000-000000000000")
    with pytest.raises(ActionFailed, match="must be a non-empty token"):
        await h.driver.play("x y", "a.wav")
    with pytest.raises(ActionFailed, match="DTMF"):
        await h.driver.send_dtmf("x", "12\n")


async def test_wrong_password_is_rejected_and_commands_refused() -> None:
    async with FakeFreeSwitch() as fs:
        driver = FreeSwitchDriver("fs1", fs.host, fs.port, "nope")
        await driver.start()
        assert await driver.wait_up() == base.LinkState.REJECTED
        with pytest.raises(PbxUnavailable):
            await driver.originate(req("x", "61001"))
        await driver.stop()


def test_dial_strings_and_then() -> None:
    assert dial_string(base.DialTarget("trunk", "gw1", "61001")) == "sofia/gateway/gw1/61001"
    assert dial_string(base.DialTarget("endpoint", "1000")) == "user/1000"
    assert dial_string(base.DialTarget("raw", "loopback/9999")) == "loopback/9999"
    driver = FreeSwitchDriver("fs1", "127.0.0.1", ivr_host="10.0.0.5", ivr_port=9000)
    assert driver._then(base.Park()) == "&park()"
    assert driver._then(base.DialplanTarget("default", "1000")) == "1000 XML default"
    assert driver._then(base.IvrTarget("main")) == "'&socket(10.0.0.5:9000 async full)'"
    with pytest.raises(ActionFailed):
        dial_string(base.DialTarget("trunk", "gw 1", "61001"))


def test_gateway_table_from_the_transcript() -> None:
    from tests.fakes.fake_esl import _recorded_api

    table = parse_gateway_table(_recorded_api("originate-gateway-down.esl", 1))
    assert table == {"rig_down_reg": "unreachable", "rig_down": "unknown"}


async def test_a_full_event_queue_never_drops_the_hangup() -> None:
    """Issue 8 defect 4: the driver's bounded queue dropped events, a HungUp among them.
    Nobody reads this stream while a DTMF call runs through a 3-slot queue: the DTMF
    digits may be shed (and are counted), the lifecycle events all arrive."""
    async with FakeFreeSwitch(time_scale=0.02) as fs:
        driver = FreeSwitchDriver("fs1", fs.host, fs.port, fs.password, event_queue_size=3)
        stream = driver.events()
        await driver.start()
        try:
            assert await driver.wait_up() == base.LinkState.UP
            await driver.originate(req("flood1", "65001"))
            deadline = asyncio.get_running_loop().time() + 10
            while fs.calls or fs.channels:
                assert asyncio.get_running_loop().time() < deadline, "call did not end"
                await asyncio.sleep(0.01)
            # Only now read the stream: everything queued while nobody read it.
            got: list[base.PbxEvent] = []
            while not any(isinstance(e, base.HungUp) and e.call_id == "flood1" for e in got):
                got.append(await asyncio.wait_for(anext(stream), 10))
            ours = [e.type for e in got if e.call_id == "flood1"]
            assert ours[0] == "ChannelCreated" and "Answered" in ours
            assert ours.count("HungUp") == 1 and ours[-1] == "HungUp"
            assert driver.fanout.shed["Dtmf"] + ours.count("Dtmf") == 4
            assert driver.fanout.shed["Dtmf"] > 0
            assert set(driver.fanout.shed) <= {"Dtmf", "Ringing"}
        finally:
            await driver.stop()


async def test_declined_call_through_the_external_profile(h: Harness) -> None:
    await h.driver.originate(
        base.OriginateRequest(
            call_id="dec1",
            target=base.DialTarget("raw", "sofia/external/68001@127.0.0.1:5080"),
            then=base.Park(),
        )
    )
    final = await h.final("dec1")
    assert isinstance(final, base.HungUp)
    assert (final.cause, final.sip_code, final.cause_text) == (21, 603, "CALL_REJECTED")
    assert "Answered" not in [e.type for e in h.of("dec1")]


async def test_engine_hangup_of_an_answered_call_has_no_sip_code(h: Harness) -> None:
    """originate-answered-engine-hangup.esl: the leg that sends the BYE (ours) carries no
    sip_term_status; only the far leg gets 200."""
    await h.driver.originate(req("eh1", "61026"))
    await h.wait_for(lambda e: e.call_id == "eh1" and e.type == "Answered")
    await h.driver.hangup("eh1", cause=16)
    final = await h.final("eh1")
    assert isinstance(final, base.HungUp)
    assert (final.cause, final.sip_code, final.cause_text) == (16, None, "NORMAL_CLEARING")
    assert final.raw.get("variable_sip_hangup_disposition") == "send_bye"


@pytest.mark.parametrize(
    ("call", "reply"),
    [
        ("hangup", "-ERR No such channel!"),
        ("answer", "-ERROR"),
        ("play", "-ERR invalid uuid"),
        ("bridge", "-ERR Invalid uuid"),
        ("send_dtmf", "-ERR Cannot locate session!"),
        ("record_start", "-ERR Cannot locate session!"),
        ("get_var", "-ERR No such channel!"),
        ("park", "-ERR No such channel!"),
    ],
)
async def test_commands_on_an_unknown_uuid_fail_with_the_recorded_reply(
    h: Harness, call: str, reply: str
) -> None:
    zero = "00000000-0000-0000-0000-000000000000"
    d = h.driver
    actions: dict[str, Callable[[], Awaitable[object]]] = {
        "hangup": lambda: d.hangup(zero),
        "answer": lambda: d.answer(zero),
        "play": lambda: d.play(zero, "tone_stream://%(500,0,600)"),
        "bridge": lambda: d.bridge(zero, "11111111-aaaa-4bbb-8ccc-000000000028"),
        "send_dtmf": lambda: d.send_dtmf(zero, "1"),
        "record_start": lambda: d.record_start(zero, "/tmp/x.wav"),
        "get_var": lambda: d.get_var(zero, "engine_tag"),
        "park": lambda: d.redirect(zero, base.Park()),
    }
    with pytest.raises(ActionFailed) as err:
        await actions[call]()
    assert str(err.value).endswith(reply)


async def test_gateway_flap_reports_the_trunk_down_then_up(h: Harness) -> None:
    """gateway-state-flap.esl: pings fail (NOREG, Ping-Status DOWN 503), then succeed
    (Ping-Status UP 200); the driver reports unreachable, then reachable."""
    mark = len(h.events)
    h.fs.flap_gateway("carrier", "down")
    h.fs.flap_gateway("carrier", "up")
    await h.wait_for(
        lambda e: (
            isinstance(e, base.TrunkStatus)
            and e.trunk == "carrier"
            and e.status == "reachable"
            and h.events.index(e) >= mark
        )
    )
    flaps = [
        e.status
        for e in h.events[mark:]
        if isinstance(e, base.TrunkStatus) and e.trunk == "carrier"
    ]
    assert flaps == ["unreachable", "reachable"]


async def test_bridge_play_transfer_and_park_on_live_calls(h: Harness) -> None:
    """uuid-commands-live.esl on two answered 66XXX calls: bridge gives one Bridged (on A,
    other leg B); parking A while bridged hangs B up and unbridges A."""
    h.fs.time_scale = 0.2  # 66XXX stays up 6 s: longer than the test
    for call_id in ("la", "lb"):
        await h.driver.originate(req(call_id, "66001"))
    for call_id in ("la", "lb"):
        await h.wait(base.Answered, call_id)
    await h.driver.play("la", "tone_stream://%(500,0,600)")
    await h.driver.redirect("lb", base.DialplanTarget("default", "engine_park"))
    await h.driver.bridge("la", "lb")
    bridged = await h.wait_for(lambda e: e.call_id == "la" and e.type == "Bridged")
    assert isinstance(bridged, base.Bridged) and bridged.other_call_id == "lb"
    await h.driver.redirect("la", base.Park())
    final_b = await h.final("lb")
    assert isinstance(final_b, base.HungUp) and final_b.cause == 16
    await h.wait_for(lambda e: e.call_id == "la" and e.type == "Unbridged")
    assert not any(isinstance(e, base.HungUp) for e in h.of("la"))
    assert [c.call_id for c in await h.driver.live_calls() if c.call_id in ("la", "lb")] == ["la"]
    await h.driver.hangup("la")
    assert isinstance(await h.final("la"), base.HungUp)


MOH = "tone_stream://%(400,200,440,480);loops=-1"  # the third batch's hold music


def test_hold_music_streams_come_from_the_switch_config() -> None:
    """`[[switches]] moh_streams` reaches the driver (on the base there was no way to
    configure it: every class played local_stream://<class>, FILE NOT FOUND on a switch
    without music files); a stream that would split the api command line is refused."""
    from pydantic import ValidationError

    from engine.core.config import FreeSwitchSwitch
    from engine.pbx.factory import build_driver

    sw = FreeSwitchSwitch(
        kind="freeswitch",
        name="fs1",
        password="x",  # type: ignore[arg-type]
        moh_streams={"default": MOH, "vip": "/usr/share/moh/vip.wav"},
    )
    driver = build_driver(sw)
    assert isinstance(driver, FreeSwitchDriver)
    assert driver.moh_streams == {"default": MOH, "vip": "/usr/share/moh/vip.wav"}
    for bad in ({"default": "a b"}, {"default": ""}, {"bad class": MOH}, {"x": "{a=b}c"}):
        with pytest.raises(ValidationError):
            FreeSwitchSwitch(kind="freeswitch", name="fs1", password="x", moh_streams=bad)  # type: ignore[arg-type]


async def test_a_bridge_before_the_hold_music_started_flushes_it_first(h: Harness) -> None:
    """An agent who answers at once can be bridged before the caller's session thread has
    picked up the hold music's uuid_broadcast (the fake: BROADCAST_PICKUP_S). FreeSWITCH
    would then play the queued looping stream INSIDE the bridge (switch_ivr_bridge.c runs a
    queued private event, the bridge suspended): music forever, the agent unheard. The
    driver sends `uuid_break <caller> all` first, which flushes the queue (mod_commands);
    music already playing is left for the bridge to break, as recorded."""
    h.driver.moh_streams["default"] = MOH
    await h.driver.originate(req("c-early", "66001"))
    await h.driver.originate(
        base.OriginateRequest(
            call_id="a-early", target=base.DialTarget("endpoint", "agent1"), then=base.Park()
        )
    )
    await h.wait(base.Answered, "c-early")
    await h.wait(base.Answered, "a-early")
    await h.driver.moh_start("c-early")
    await h.driver.bridge("c-early", "a-early", keep_call=True)
    await h.wait(base.Bridged, "c-early")
    # The broadcast was flushed, or it plays on once picked up (base: in the bridge).
    await h.wait_for(lambda _: "c-early" not in h.fs.pending_moh, 5)
    assert h.fs.channels["c-early"].playing == ""
    assert not any(isinstance(e, base.MohStarted) for e in h.of("c-early"))
    sent = [c for c in h.fs.received if "c-early" in c and c.startswith("api uuid_b")]
    assert sent[-2:] == ["api uuid_break c-early all", "api uuid_bridge c-early a-early"], sent

    # Music that is playing: no break, the bridge breaks it (recorded).
    await h.driver.originate(req("c-late", "66002"))
    await h.driver.originate(
        base.OriginateRequest(
            call_id="a-late", target=base.DialTarget("endpoint", "agent2"), then=base.Park()
        )
    )
    await h.wait(base.Answered, "c-late")
    await h.wait(base.Answered, "a-late")
    await h.driver.moh_start("c-late")
    await h.wait(base.MohStarted, "c-late")
    await h.driver.bridge("c-late", "a-late", keep_call=True)
    await h.wait(base.Bridged, "c-late")
    assert [type(e).__name__ for e in h.of("c-late") if "Moh" in type(e).__name__] == [
        "MohStarted",
        "MohStopped",
    ]
    assert not any(c.startswith("api uuid_break c-late") for c in h.fs.received)
