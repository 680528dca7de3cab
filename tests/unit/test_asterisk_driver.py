"""AsteriskDriver against the fake AMI server replaying real transcripts."""

from __future__ import annotations

import asyncio

import pytest

from engine.core.errors import ActionFailed, PbxUnavailable
from engine.pbx.asterisk.driver import AsteriskDriver, dial_string, escape_variable_value
from engine.pbx.base import (
    DialplanTarget,
    DialTarget,
    HungUp,
    IvrTarget,
    LinkChanged,
    LinkState,
    OriginateFailed,
    OriginateRequest,
    Park,
    PbxDriver,
    PbxEvent,
    Resynced,
)
from tests.fakes.fake_ami import FakeAmiServer


def _driver(fake: FakeAmiServer) -> AsteriskDriver:
    return AsteriskDriver(
        name="ast1",
        host="127.0.0.1",
        port=fake.port,
        username="engine",
        secret="enginesecret",
        action_timeout_s=1.0,
        ping_interval_s=30.0,
        agi_host="10.0.0.5",
        agi_port=4600,
        backoff_initial_s=0.05,
        backoff_max_s=0.1,
        clock_fn=lambda: 42.0,
    )


async def _until(stream: object, pred: object, limit_s: float = 3.0) -> list[PbxEvent]:
    got: list[PbxEvent] = []

    async def run() -> None:
        async for ev in stream:  # type: ignore[attr-defined]
            got.append(ev)
            if pred(ev):  # type: ignore[operator]
                return

    await asyncio.wait_for(run(), limit_s)
    return got


def test_is_a_pbx_driver() -> None:
    drv = AsteriskDriver("a", "127.0.0.1", 1, "u", "s")
    assert isinstance(drv, PbxDriver)
    assert drv.kind == "asterisk" and drv.name == "a"


def test_dial_strings() -> None:
    assert dial_string(DialTarget("trunk", "self-trunk", "2001")) == "PJSIP/2001@self-trunk"
    assert dial_string(DialTarget("endpoint", "agent7")) == "PJSIP/agent7"
    assert dial_string(DialTarget("raw", "Local/1001@agents")) == "Local/1001@agents"
    with pytest.raises(ActionFailed):
        dial_string(DialTarget("trunk", "self-trunk", "1&PJSIP/evil"))


def test_variable_escaping() -> None:
    assert escape_variable_value('a,b "c" (d) [e] \\') == 'a\\,b \\"c\\" \\(d\\) \\[e\\] \\\\'


@pytest.mark.parametrize(
    ("scenario", "number", "cause", "sip"),
    [
        ("originate-busy.ami", "2001", 17, 486),
        ("originate-congestion.ami", "3001", 34, 503),
        ("originate-noanswer.ami", "4001", 19, 480),
        ("originate-answered.ami", "1001", 16, None),
    ],
)
async def test_originate_outcomes(scenario: str, number: str, cause: int, sip: int | None) -> None:
    async with FakeAmiServer(scenario) as fake:
        drv = _driver(fake)
        stream = drv.events()
        await drv.start()
        try:
            await drv.wait_up(2)
            req = OriginateRequest(
                call_id="call-abc",
                target=DialTarget("trunk", "self-trunk", number),
                then=Park(),
                caller_id_num="5550001",
                caller_id_name="Campaign",
                timeout_s=5,
                variables={"CAMPAIGN_ID": "c42"},
            )
            await drv.originate(req)
            got = await _until(stream, lambda e: isinstance(e, HungUp) and e.call_id == "call-abc")
        finally:
            await drv.stop()
    final = got[-1]
    assert isinstance(final, HungUp)
    assert (final.cause, final.sip_code) == (cause, sip)
    assert not any(isinstance(e, OriginateFailed) for e in got)
    sent = fake.actions_named("Originate")
    assert len(sent) == 1
    h = sent[0].headers
    assert h.get("Channel") == f"PJSIP/{number}@self-trunk"
    assert (h.get("Context"), h.get("Exten"), h.get("Priority")) == ("engine-park", "s", "1")
    assert h.get("Async") == "true" and h.get("ChannelId") == "call-abc"
    assert h.get("Timeout") == "5000"
    assert h.get("CallerID") == '"Campaign" <5550001>'
    assert h.get_all("Variable") == ["CAMPAIGN_ID=c42"]
    # First events: link up after a resync.
    assert isinstance(got[0], LinkChanged)
    resynced = [e for e in got if isinstance(e, Resynced)]
    assert len(resynced) == 1 and resynced[0].live == ()
    up = [e for e in got if isinstance(e, LinkChanged) and e.state is LinkState.UP]
    assert got.index(resynced[0]) < got.index(up[0])


async def test_originate_dead_trunk_gives_originate_failed() -> None:
    async with FakeAmiServer("originate-deadtrunk.ami") as fake:
        drv = _driver(fake)
        stream = drv.events()
        await drv.start()
        try:
            await drv.wait_up(2)
            await drv.originate(
                OriginateRequest("call-dead", DialTarget("trunk", "dead-trunk", "1001"), Park())
            )
            got = await _until(stream, lambda e: isinstance(e, OriginateFailed))
        finally:
            await drv.stop()
    failed = got[-1]
    assert isinstance(failed, OriginateFailed)
    assert failed.call_id == "call-dead" and failed.cause == 38 and failed.ts == 42.0


async def test_ivr_and_dialplan_targets() -> None:
    async with FakeAmiServer("originate-answered.ami") as fake:
        drv = _driver(fake)
        await drv.start()
        try:
            await drv.wait_up(2)
            await drv.originate(
                OriginateRequest(
                    "call-ivr",
                    DialTarget("endpoint", "agent7"),
                    IvrTarget("survey"),
                    variables={"NOTE": "a,b"},
                )
            )
            # Not scripted in this transcript: the fake answers with the real "unknown" error.
            with pytest.raises(ActionFailed):
                await drv.redirect("call-ivr", DialplanTarget("customers", "s", 2))
        finally:
            await drv.stop()
    h = fake.actions_named("Originate")[0].headers
    assert (h.get("Context"), h.get("Exten")) == ("engine-ivr", "s")
    assert h.get_all("Variable") == [
        "NOTE=a\\,b",
        "ENGINE_IVR_FLOW=survey",
        "ENGINE_AGI_HOST=10.0.0.5",
        "ENGINE_AGI_PORT=4600",
    ]
    redirect = fake.actions_named("Redirect")[0].headers
    # No channel name known yet for call-ivr: the call id (== Uniqueid) is used.
    assert redirect.get("Channel") == "call-ivr"
    assert (redirect.get("Context"), redirect.get("Priority")) == ("customers", "2")


async def test_hangup_uses_channel_name_from_events() -> None:
    async with FakeAmiServer("originate-answered.ami", swallow={"Originate"}) as fake:
        drv = _driver(fake)
        stream = drv.events()
        await drv.start()
        try:
            await drv.wait_up(2)
            # Replay a Newchannel for our call id as Asterisk would send it.
            await fake.push(
                b"Event: Newchannel\r\nPrivilege: call,all\r\n"
                b"Channel: PJSIP/self-trunk-0000002a\r\nChannelState: 0\r\n"
                b"ChannelStateDesc: Down\r\nUniqueid: call-9\r\nLinkedid: call-9\r\n\r\n"
            )
            await _until(stream, lambda e: e.type == "ChannelCreated")
            with pytest.raises(ActionFailed, match="No such channel"):
                await drv.hangup("call-9", cause=21)
        finally:
            await drv.stop()
    h = fake.actions_named("Hangup")[0].headers
    assert (h.get("Channel"), h.get("Cause")) == ("PJSIP/self-trunk-0000002a", "21")


async def test_actions_refused_when_not_up() -> None:
    async with FakeAmiServer(reject_login=True) as fake:
        drv = _driver(fake)
        stream = drv.events()
        await drv.start()
        try:
            with pytest.raises(PbxUnavailable):
                await drv.wait_up(2)
            assert drv.state is LinkState.REJECTED
            with pytest.raises(PbxUnavailable):
                await drv.originate(
                    OriginateRequest("c", DialTarget("trunk", "self-trunk", "1001"), Park())
                )
            got = await _until(
                stream, lambda e: isinstance(e, LinkChanged) and e.state is LinkState.REJECTED
            )
        finally:
            await drv.stop()
    assert "Authentication failed" in got[-1].reason  # type: ignore[attr-defined]
    assert fake.actions_named("Originate") == []


async def test_invalid_dtmf_rejected_before_sending() -> None:
    async with FakeAmiServer() as fake:
        drv = _driver(fake)
        await drv.start()
        try:
            await drv.wait_up(2)
            with pytest.raises(ActionFailed, match="DTMF"):
                await drv.send_dtmf("c1", "12x")
        finally:
            await drv.stop()
    assert fake.actions_named("PlayDTMF") == []
