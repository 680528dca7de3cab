"""AMI -> normalized events, driven by the real Asterisk 22 transcripts.

The recorded Originates did not set ``ChannelId``, so Asterisk chose the
outbound channel's Uniqueid itself. With ChannelId (what the driver sends) that
Uniqueid would be our call id, so each test registers the recorded Originate's
ActionID for the Uniqueid the transcript shows.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from engine.pbx.asterisk import events as events_module
from engine.pbx.asterisk.ami_codec import AmiParser, Event, EventFilter
from engine.pbx.asterisk.events import (
    EVENT_FILTERS,
    AmiEventTranslator,
    live_channel_from_event,
)
from engine.pbx.base import (
    AmdResult,
    Answered,
    Bridged,
    ChannelCreated,
    Dtmf,
    HungUp,
    LinkChanged,
    LinkState,
    LiveChannel,
    OriginateFailed,
    PbxEvent,
    RecordingStarted,
    RecordingStopped,
    Resynced,
    Ringing,
    TrunkStatus,
    Unbridged,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22" / "transcripts"
ROOT = Path(__file__).resolve().parents[2]
MANAGER_CONF = ROOT / "telephony-config" / "asterisk" / "manager.conf"


def _events(name: str) -> list[Event]:
    msgs = AmiParser().feed((TRANSCRIPTS / name).read_bytes())
    return [m for m in msgs if isinstance(m, Event)]


def _run(name: str, action_id: str, call_id: str) -> list[PbxEvent]:
    tr = AmiEventTranslator("ast1")
    tr.expect_originate(action_id, call_id)
    out: list[PbxEvent] = []
    for i, ev in enumerate(_events(name)):
        out += tr.translate(ev, now=1000.0 + i)
    return out


def _of_call(events: list[PbxEvent], call_id: str) -> list[PbxEvent]:
    return [e for e in events if e.call_id == call_id]


@pytest.mark.parametrize(
    ("name", "action_id", "call_id", "cause", "sip", "text"),
    [
        ("originate-answered.ami", "orig-1", "1795318471.0", 16, None, "Normal Clearing"),
        ("originate-busy.ami", "orig-busy", "1795318483.2", 17, 486, "User busy"),
        (
            "originate-congestion.ami",
            "orig-cong",
            "1795318490.4",
            34,
            503,
            "Circuit/channel congestion",
        ),
        (
            "originate-noanswer.ami",
            "orig-noans",
            "1795318496.6",
            19,
            480,
            "User alerting, no answer",
        ),
    ],
)
def test_final_event_of_each_carrier_outcome(
    name: str, action_id: str, call_id: str, cause: int, sip: int | None, text: str
) -> None:
    ours = _of_call(_run(name, action_id, call_id), call_id)
    final = ours[-1]
    assert isinstance(final, HungUp)
    assert (final.cause, final.sip_code, final.cause_text) == (cause, sip, text)
    assert final.switch == "ast1"
    assert final.channel.startswith("PJSIP/self-trunk-")
    # The OriginateResponse (Reason 0 for busy) must not add an OriginateFailed.
    assert not any(isinstance(e, OriginateFailed) for e in ours)
    assert isinstance(ours[0], ChannelCreated) and ours[0].direction == "outbound"


def test_answered_call_sequence() -> None:
    ours = _of_call(_run("originate-answered.ami", "orig-1", "1795318471.0"), "1795318471.0")
    assert [e.type for e in ours] == ["ChannelCreated", "Ringing", "Answered", "HungUp"]
    assert ours[1].ts < ours[2].ts < ours[3].ts
    assert ours[0].raw["Channel"] == "PJSIP/self-trunk-00000000"


def test_noanswer_rang_but_never_answered() -> None:
    ours = _of_call(_run("originate-noanswer.ami", "orig-noans", "1795318496.6"), "1795318496.6")
    assert any(isinstance(e, Ringing) for e in ours)
    assert not any(isinstance(e, Answered) for e in ours)


def test_far_leg_is_inbound_and_has_its_own_cause() -> None:
    events = _run("originate-noanswer.ami", "orig-noans", "1795318496.6")
    far = _of_call(events, "1795318496.7")
    assert isinstance(far[0], ChannelCreated) and far[0].direction == "inbound"
    assert far[0].destination == "4001"
    assert isinstance(far[-1], HungUp) and (far[-1].cause, far[-1].sip_code) == (19, 487)


def test_dead_trunk_gives_originate_failed() -> None:
    events = _run("originate-deadtrunk.ami", "orig-dead", "call-dead")
    assert len(events) == 1
    failed = events[0]
    assert isinstance(failed, OriginateFailed)
    assert failed.call_id == "call-dead"
    assert failed.cause == 38
    assert "Reason 0" in failed.cause_text


def test_originate_response_for_unknown_action_is_ignored() -> None:
    tr = AmiEventTranslator("ast1")
    out = []
    for ev in _events("originate-deadtrunk.ami"):
        out += tr.translate(ev, now=1.0)
    assert out == []


def test_dtmf_from_far_end() -> None:
    ours = _of_call(_run("dtmf-from-far-end.ami", "orig-dtmf", "1795318521.8"), "1795318521.8")
    digits = [e.digit for e in ours if isinstance(e, Dtmf)]
    assert "".join(digits) == "1234#"
    assert all(e.direction == "received" for e in ours if isinstance(e, Dtmf))
    final = ours[-1]
    # Asterisk says "Cause: 0 Unknown" when the dialplan ends an answered call.
    assert isinstance(final, HungUp) and final.cause == 16 and final.raw["Cause"] == "0"


def test_amd_result_from_varset() -> None:
    ours = _of_call(_run("amd-machine.ami", "orig-amd", "1795318544.14"), "1795318544.14")
    amd = [e for e in ours if isinstance(e, AmdResult)]
    assert len(amd) == 1
    assert (amd[0].status, amd[0].cause) == ("MACHINE", "MAXWORDS-3-2")
    assert ours.index(amd[0]) < len(ours) - 1  # before the hangup


def test_amd_result_from_user_event() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: UserEvent\r\nPrivilege: user,all\r\nChannel: PJSIP/t-1\r\nUniqueid: c1\r\n"
        b"UserEvent: AmdResult\r\nStatus: HUMAN\r\nCause: HUMAN-1000-1000\r\n\r\n"
    )
    tr = AmiEventTranslator("ast1")
    ev = next(m for m in AmiParser().feed(data) if isinstance(m, Event))
    out = tr.translate(ev, now=5.0)
    assert out == [
        AmdResult(
            switch="ast1",
            call_id="c1",
            ts=5.0,
            channel="PJSIP/t-1",
            status="HUMAN",
            cause="HUMAN-1000-1000",
        )
    ]


def test_amd_varsets_and_user_event_give_one_result() -> None:
    # [engine-amd] runs AMD() (VarSet AMDSTATUS, AMDCAUSE) and then UserEvent AmdResult: both
    # reach the engine (seen live on the sandbox), the call must get one AmdResult.
    head = b"Privilege: dialplan,all\r\nChannel: PJSIP/t-1\r\nUniqueid: c1\r\n"
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: VarSet\r\n" + head + b"Variable: AMDSTATUS\r\nValue: HUMAN\r\n\r\n"
        b"Event: VarSet\r\n" + head + b"Variable: AMDCAUSE\r\nValue: HUMAN-500-500\r\n\r\n"
        b"Event: UserEvent\r\n" + head + b"UserEvent: AmdResult\r\nStatus: HUMAN\r\n"
        b"Cause: HUMAN-500-500\r\n\r\n"
    )
    tr = AmiEventTranslator("ast1")
    out = [e for m in AmiParser().feed(data) if isinstance(m, Event) for e in tr.translate(m, 1.0)]
    amd = [e for e in out if isinstance(e, AmdResult)]
    assert [(e.status, e.cause) for e in amd] == [("HUMAN", "HUMAN-500-500")]


def test_mixmonitor_recording_events() -> None:
    ours = _of_call(_run("mixmonitor.ami", "orig-rec", "1795318569.18"), "1795318569.18")
    started = [e for e in ours if isinstance(e, RecordingStarted)]
    stopped = [e for e in ours if isinstance(e, RecordingStopped)]
    path = "/var/spool/asterisk/monitor/1795318569.18.wav"
    assert [e.path for e in started] == [path]
    assert [e.path for e in stopped] == [path]
    assert ours.index(stopped[0]) == len(ours) - 2 and isinstance(ours[-1], HungUp)


def test_queue_call_bridge_events() -> None:
    events = _run("queue-call.ami", "orig-q", "1795318530.10")
    bridged = [e for e in events if isinstance(e, Bridged)]
    assert [(e.call_id, e.other_call_id) for e in bridged] == [
        ("1795318531.12", ""),
        ("1795318530.10", "1795318531.12"),
    ]
    assert bridged[0].bridge_id == "a55518f4-bf92-4d9f-9d57-b848d19cb2c0"
    unbridged = [e.call_id for e in events if isinstance(e, Unbridged)]
    assert unbridged == ["1795318531.12", "1795318530.10"]
    final = _of_call(events, "1795318530.10")[-1]
    assert isinstance(final, HungUp) and final.cause == 16


def test_unknown_events_ignored_in_every_transcript() -> None:
    tr = AmiEventTranslator("ast1")
    for path in sorted(TRANSCRIPTS.glob("*.ami")):
        for ev in _events(path.name):
            if ev.name in ("TestEvent", "FullyBooted", "SuccessfulAuth", "QueueMemberStatus"):
                assert tr.translate(ev, now=0.0) == []


def test_channel_map_follows_events() -> None:
    tr = AmiEventTranslator("ast1")
    evs = _events("originate-answered.ami")
    seen = set()
    for ev in evs:
        tr.translate(ev, now=0.0)
        if ev.name == "Newchannel":
            seen.add(ev.get("Uniqueid"))
            assert tr.channel_of(ev.get("Uniqueid") or "") == ev.get("Channel")
    assert seen == {"1795318471.0", "1795318471.1"}
    assert tr.live_call_ids() == []  # both hung up


def test_contact_status_to_trunk_status() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: ContactStatus\r\nPrivilege: system,all\r\nURI: sip:127.0.0.1:5099\r\n"
        b"ContactStatus: Unreachable\r\nAOR: dead-trunk\r\nEndpointName: dead-trunk\r\n"
        b"RoundtripUsec: 0\r\n\r\n"
        b"Event: ContactStatus\r\nPrivilege: system,all\r\nURI: sip:127.0.0.1:5060\r\n"
        b"ContactStatus: Reachable\r\nAOR: self-trunk\r\nEndpointName: self-trunk\r\n"
        b"RoundtripUsec: 1520\r\n\r\n"
    )
    tr = AmiEventTranslator("ast1")
    out = [x for m in AmiParser().feed(data) if isinstance(m, Event) for x in tr.translate(m, 2.0)]
    assert [(e.trunk, e.status, e.rtt_ms) for e in out if isinstance(e, TrunkStatus)] == [
        ("dead-trunk", "unreachable", None),
        ("self-trunk", "reachable", 1.52),
    ]


def test_resync_replaces_stale_channels() -> None:
    tr = AmiEventTranslator("ast1")
    evs = _events("originate-answered.ami")
    for ev in evs[:6]:
        tr.translate(ev, now=0.0)
    assert tr.channel_of("1795318471.0") == "PJSIP/self-trunk-00000000"
    tr.begin_resync()
    tr.reset_from_live([LiveChannel("other", "PJSIP/x-1", "answered")])
    assert tr.channel_of("1795318471.0") is None
    assert tr.channel_of("other") == "PJSIP/x-1"


def test_live_channel_from_core_show_channel_item() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: CoreShowChannel\r\nActionID: a\r\nChannel: PJSIP/self-trunk-00000010\r\n"
        b"ChannelState: 6\r\nChannelStateDesc: Up\r\nUniqueid: call-9\r\nLinkedid: call-9\r\n"
        b"BridgeId: \r\nApplication: Wait\r\n\r\n"
    )
    ev = next(m for m in AmiParser().feed(data) if isinstance(m, Event))
    assert live_channel_from_event(ev) == LiveChannel(
        call_id="call-9", channel="PJSIP/self-trunk-00000010", state="answered", linked_id="call-9"
    )


# ----------------------------------------------------------------------------- event filters


def _passes(ev: Event, filters: tuple[EventFilter, ...]) -> bool:
    """Asterisk's include-only filtering: an event goes out when some filter
    names it (case-sensitively) and, for a header filter, that header's value
    is exactly the filter's value."""
    return any(f.name == ev.name and (not f.header or ev.get(f.header) == f.value) for f in filters)


def _translate_all(events: list[tuple[int, Event]]) -> list[PbxEvent]:
    tr = AmiEventTranslator("ast1")
    # Every recorded Originate belongs to "our" call, so OriginateResponse
    # handling is exercised too.
    for _, ev in events:
        if ev.name == "OriginateResponse" and ev.action_id:
            tr.expect_originate(ev.action_id, ev.get("Uniqueid") or ev.action_id)
    out: list[PbxEvent] = []
    for i, ev in events:
        out += tr.translate(ev, now=1000.0 + i)
    return out


@pytest.mark.parametrize("path", sorted(TRANSCRIPTS.glob("*.ami")), ids=lambda p: p.name)
def test_event_filters_keep_everything_the_translator_emits(path: Path) -> None:
    # What Asterisk would still send with EVENT_FILTERS, translated, must give
    # exactly the normalized events that the unfiltered recording gives.
    every = list(enumerate(_events(path.name)))
    kept = [(i, ev) for i, ev in every if _passes(ev, EVENT_FILTERS)]
    assert _translate_all(kept) == _translate_all(every)
    assert len(kept) < len(every), "the recording has events nobody reads; they must be cut"


def test_every_handled_event_has_a_filter() -> None:
    filtered = {f.name.lower() for f in EVENT_FILTERS}
    assert set(events_module._HANDLERS) == filtered


def test_filter_names_are_spelled_as_recorded() -> None:
    # Asterisk compares event names case-sensitively: "DtmfEnd" would
    # silently filter every DTMFEnd away.
    recorded = {ev.name for p in TRANSCRIPTS.glob("*.ami") for ev in _events(p.name)}
    by_lower = {name.lower(): name for name in recorded}
    for flt in EVENT_FILTERS:
        if flt.name.lower() in by_lower:
            assert flt.name == by_lower[flt.name.lower()]


def test_filters_cut_the_events_of_an_answered_call() -> None:
    every = _events("originate-answered.ami")
    kept = [ev for ev in every if _passes(ev, EVENT_FILTERS)]
    assert {ev.name for ev in kept} <= {f.name for f in EVENT_FILTERS}
    assert not any(ev.name in ("Newexten", "DialBegin", "TestEvent") for ev in kept)
    assert len(kept) * 3 < len(every)


def _conf_section(text: str, section: str) -> list[str]:
    lines: list[str] = []
    current = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif line and current == section:
            lines.append(line)
    return lines


def test_manager_conf_filters_for_the_engine_user_match_the_code() -> None:
    # The engine adds EVENT_FILTERS with Filter actions at login; manager.conf
    # carries the same list for user `engine` so the two cannot drift.
    lines = _conf_section(MANAGER_CONF.read_text(), "engine")
    in_conf = [line for line in lines if line.startswith("eventfilter")]
    assert in_conf == [f.conf_line() for f in EVENT_FILTERS]


def test_to_dict_is_asdict_without_raw() -> None:
    # PbxEvent.to_dict skips asdict's deep copy of the raw headers; the
    # result must stay exactly what asdict gave, minus ``raw``.
    samples: list[PbxEvent] = []
    for path in sorted(TRANSCRIPTS.glob("*.ami")):
        samples += _translate_all(list(enumerate(_events(path.name))))
    live = LiveChannel(call_id="c1", channel="PJSIP/x-1", state="answered")
    samples += [
        Resynced(switch="ast1", call_id="", ts=1.0, live=(live,)),
        LinkChanged(switch="ast1", call_id="", ts=2.0, state=LinkState.UP, reason="ok"),
    ]
    assert {type(e) for e in samples} >= {ChannelCreated, HungUp, Dtmf, AmdResult, Bridged}
    for ev in samples:
        expected = {k: v for k, v in asdict(ev).items() if k != "raw"}
        expected["type"] = ev.type
        assert ev.to_dict() == expected
        assert "raw" not in ev.to_dict()
    assert all(e.raw for e in samples if isinstance(e, ChannelCreated | HungUp))


def test_amd_read_back_after_a_restart_is_reported_once() -> None:
    # A restarted engine learns the channel from CoreShowChannels; AMD() ended while nobody
    # listened, so its result is read with Getvar: one AmdResult, and AMD()'s own events,
    # should they still come, add none.
    tr = AmiEventTranslator("ast1")
    tr.begin_resync()
    tr.reset_from_live([LiveChannel("call-9", "PJSIP/self-trunk-00000010", "answered")])
    got = tr.amd_from_vars("call-9", "HUMAN", "HUMAN-500-500", 5.0)
    assert [(e.call_id, e.status, e.cause) for e in got if isinstance(e, AmdResult)] == [
        ("call-9", "HUMAN", "HUMAN-500-500")
    ]
    assert tr.amd_from_vars("call-9", "HUMAN", "HUMAN-500-500", 6.0) == []
    late = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: UserEvent\r\nChannel: PJSIP/self-trunk-00000010\r\nUniqueid: call-9\r\n"
        b"UserEvent: AmdResult\r\nStatus: HUMAN\r\nCause: HUMAN-500-500\r\n\r\n"
    )
    ev = next(m for m in AmiParser().feed(late) if isinstance(m, Event))
    assert [e for e in tr.translate(ev, now=7.0) if isinstance(e, AmdResult)] == []
    assert tr.amd_from_vars("unknown", "HUMAN", "", 8.0) == []


def test_amd_reported_before_a_link_loss_is_not_reported_again() -> None:
    tr = AmiEventTranslator("ast1")
    tr.expect_originate("orig-amd", "1795318544.14")
    evs = _events("amd-machine.ami")
    amd_at = next(
        i
        for i, ev in enumerate(evs)
        if any(isinstance(e, AmdResult) for e in tr.translate(ev, now=float(i)))
    )
    channel = tr.channel_of("1795318544.14")
    assert channel is not None and amd_at < len(evs)
    tr.begin_resync()
    tr.reset_from_live([LiveChannel("1795318544.14", channel, "answered")])
    assert tr.amd_from_vars("1795318544.14", "MACHINE", "MAXWORDS-3-2", 9.0) == []
