"""AMI codec against the real Asterisk 22 transcripts."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.errors import ProtocolError
from engine.pbx.asterisk.ami_codec import (
    AmiParser,
    Banner,
    Event,
    EventFilter,
    ParserState,
    Response,
    encode_action,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-22" / "transcripts"
AMI_FILES = sorted(TRANSCRIPTS.glob("*.ami"))
SENT_FILES = sorted(TRANSCRIPTS.glob("*.ami.sent"))


def _blank_line_count(data: bytes) -> int:
    # Every message in these files ends with exactly one CRLF CRLF.
    return data.count(b"\r\n\r\n")


def test_fixtures_present() -> None:
    assert len(AMI_FILES) == 12
    assert len(SENT_FILES) == 12


@pytest.mark.parametrize("path", AMI_FILES, ids=lambda p: p.name)
def test_every_transcript_parses_without_error(path: Path) -> None:
    data = path.read_bytes()
    parser = AmiParser()
    msgs = parser.feed(data)
    assert isinstance(msgs[0], Banner)
    assert msgs[0].version == "11.0.0"
    assert len(msgs) - 1 == _blank_line_count(data)
    assert all(isinstance(m, (Response, Event)) for m in msgs[1:])
    assert parser.state is ParserState.IDLE
    # The first message after the banner is the login reply.
    login = msgs[1]
    assert isinstance(login, Response)
    assert login.ok and login.action_id == "login-1"
    assert login.message == "Authentication accepted"


@pytest.mark.parametrize("path", AMI_FILES, ids=lambda p: p.name)
def test_random_chunking_equals_whole(path: Path) -> None:
    data = path.read_bytes()
    whole = AmiParser().feed(data)
    rng = random.Random(path.name)
    for _ in range(5):
        parser = AmiParser()
        got = []
        pos = 0
        while pos < len(data):
            n = rng.randint(1, 300)
            got += parser.feed(data[pos : pos + n])
            pos += n
        assert got == whole


def test_byte_by_byte_equals_whole() -> None:
    data = (TRANSCRIPTS / "originate-busy.ami").read_bytes()
    parser = AmiParser()
    got = []
    for i in range(len(data)):
        got += parser.feed(data[i : i + 1])
    assert got == AmiParser().feed(data)


def test_interleaved_events_and_responses_in_order() -> None:
    msgs = AmiParser().feed((TRANSCRIPTS / "status-lists.ami").read_bytes())
    kinds = [
        (type(m).__name__, m.name if isinstance(m, Event) else getattr(m, "action_id", None))
        for m in msgs
    ]
    # The CoreShowChannels reply, then its Complete event, then the next reply.
    i = kinds.index(("Response", "csc-1"))
    assert kinds[i + 1] == ("Event", "CoreShowChannelsComplete")
    assert kinds[i + 2] == ("Response", "psc-1")
    # Unsolicited events sit between replies (the channel the sync Originate created).
    j = kinds.index(("Response", "bad-missing-async-ok"))
    assert kinds[j + 1] == ("Event", "Newchannel")
    assert kinds.index(("Response", "bad-1")) > j + 1


def test_value_with_colon_space_and_empty_value() -> None:
    msgs = AmiParser().feed((TRANSCRIPTS / "status-lists.ami").read_bytes())
    bad = next(m for m in msgs if isinstance(m, Response) and m.action_id == "bad-1")
    assert bad.status == "Error"
    assert bad.message == (
        "Invalid/unknown command: Bogus. Use Action: ListCommands to show available commands."
    )
    newchannel = next(m for m in msgs if isinstance(m, Event) and m.name == "Newchannel")
    assert newchannel.get("AccountCode") == ""
    assert "AccountCode" in newchannel.headers


def test_headers_keep_order_duplicates_and_fold_case() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Response: Success\r\nActionID: c1\r\nOutput: line one\r\nOutput: line two\r\n\r\n"
    )
    msgs = AmiParser().feed(data)
    reply = msgs[1]
    assert isinstance(reply, Response)
    assert reply.headers.get_all("output") == ["line one", "line two"]
    assert reply.headers.get("OUTPUT") == "line one"
    assert reply.headers.get("actionid") == "c1"
    assert [n for n, _ in reply.headers] == ["Response", "ActionID", "Output", "Output"]


def test_originate_response_is_an_event_despite_its_response_header() -> None:
    msgs = AmiParser().feed((TRANSCRIPTS / "originate-busy.ami").read_bytes())
    orig = [m for m in msgs if isinstance(m, Event) and m.name == "OriginateResponse"]
    assert len(orig) == 1
    assert orig[0].get("Response") == "Failure"
    assert orig[0].get("Reason") == "0"
    assert orig[0].action_id == "orig-busy"


def test_unknown_test_events_are_returned() -> None:
    msgs = AmiParser().feed((TRANSCRIPTS / "originate-busy.ami").read_bytes())
    assert any(isinstance(m, Event) and m.name == "TestEvent" for m in msgs)


def test_bare_lf_line_endings_accepted() -> None:
    data = (TRANSCRIPTS / "originate-deadtrunk.ami").read_bytes()
    assert AmiParser().feed(data.replace(b"\r\n", b"\n")) == AmiParser().feed(data)


def test_garbage_line_raises_naming_the_line_and_parser_recovers() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n"
        b"Event: Broken\r\nthis line has no colon\r\nMore: stuff\r\n\r\n"
        b"Response: Success\r\nActionID: p1\r\nPing: Pong\r\n\r\n"
    )
    parser = AmiParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(data)
    assert info.value.remote is True
    assert "this line has no colon" in str(info.value)
    assert "line 5" in str(info.value)
    rest = parser.feed(b"")
    # The message before the garbage and the one after survive; the broken one is skipped.
    assert [type(m).__name__ for m in rest] == ["Banner", "Event", "Response"]
    assert isinstance(rest[2], Response) and rest[2].action_id == "p1"


def test_garbage_byte_by_byte_gives_same_messages() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: A\r\n\r\nnot a header\r\n\r\nEvent: B\r\nX: 1\r\n\r\n"
    )
    parser = AmiParser()
    got, errors = [], 0
    for i in range(len(data)):
        try:
            got += parser.feed(data[i : i + 1])
        except ProtocolError:
            errors += 1
    got += parser.feed(b"")
    assert errors == 1
    assert [m.name for m in got if isinstance(m, Event)] == ["A", "B"]


def test_message_size_cap() -> None:
    parser = AmiParser(max_message_bytes=100)
    parser.feed(b"Asterisk Call Manager/11.0.0\r\n")
    with pytest.raises(ProtocolError, match="exceeds 100 bytes"):
        parser.feed(b"Event: Big\r\n" + b"X: " + b"a" * 200 + b"\r\n")
    # Still usable: the rest of the oversized message is skipped up to its blank line.
    msgs = parser.feed(b"Y: 2\r\n\r\nEvent: Small\r\n\r\n")
    assert [m.name for m in msgs if isinstance(m, Event)] == ["Small"]


def test_endless_line_is_capped_without_newline() -> None:
    parser = AmiParser(max_message_bytes=64)
    parser.feed(b"Asterisk Call Manager/11.0.0\r\n")
    with pytest.raises(ProtocolError):
        parser.feed(b"Event: " + b"z" * 1000)


def test_not_a_banner() -> None:
    parser = AmiParser()
    with pytest.raises(ProtocolError, match="banner"):
        parser.feed(b"SSH-2.0-OpenSSH_9.2\r\n")


def test_encode_action_matches_recorded_bytes() -> None:
    sent = (TRANSCRIPTS / "originate-answered.ami.sent").read_bytes()
    originate = encode_action(
        "Originate",
        "orig-1",
        [
            ("Channel", "PJSIP/1001@self-trunk"),
            ("Context", "customers"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Async", "true"),
            ("CallerID", '"Campaign" <5550001>'),
            ("Variable", "CAMPAIGN_ID=c42"),
        ],
    )
    assert sent.endswith(originate)


@pytest.mark.parametrize("path", SENT_FILES, ids=lambda p: p.name)
def test_sent_files_round_trip(path: Path) -> None:
    data = path.read_bytes()
    actions = AmiParser(role="server").feed_actions(data)
    assert actions
    rebuilt = b"".join(
        encode_action(
            a.name,
            a.action_id or "",
            [(n, v) for n, v in a.headers if n.lower() not in ("action", "actionid")],
        )
        for a in actions
    )
    assert rebuilt == data


def test_repeated_variable_headers() -> None:
    data = encode_action("Originate", "x1", [("Variable", "A=1"), ("Variable", "B=2")])
    action = AmiParser(role="server").feed_actions(data)[0]
    assert action.headers.get_all("Variable") == ["A=1", "B=2"]


@pytest.mark.parametrize(
    "headers",
    [
        [("Channel", "PJSIP/1\r\nAction: Hangup")],
        [("Chan\nnel", "x")],
        [("Variable", "A=1\r")],
        [("", "x")],
        [("Bad: name", "x")],
        [("ActionID", "sneaky")],
    ],
)
def test_encode_refuses_injection(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ProtocolError) as info:
        encode_action("Originate", "a1", headers)
    assert info.value.remote is False


def test_encode_refuses_crlf_in_action_and_id() -> None:
    with pytest.raises(ProtocolError):
        encode_action("Ping\r\n", "a1")
    with pytest.raises(ProtocolError):
        encode_action("Ping", "a1\n")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=400))
def test_property_any_split_of_a_transcript_is_equivalent(cuts: list[int]) -> None:
    data = (TRANSCRIPTS / "originate-noanswer.ami").read_bytes()
    parser = AmiParser()
    got = []
    pos = 0
    for n in cuts:
        got += parser.feed(data[pos : pos + n])
        pos += n
    got += parser.feed(data[pos:])
    assert got == AmiParser().feed(data)


def test_message_without_event_or_response_header() -> None:
    parser = AmiParser()
    data = b"Asterisk Call Manager/11.0.0\r\nFoo: bar\r\n\r\nEvent: Next\r\n\r\n"
    with pytest.raises(ProtocolError, match="expected an 'Event' or 'Response' header"):
        parser.feed(data)
    # Consumed, not re-parsed forever.
    assert [m.name for m in parser.feed(b"") if isinstance(m, Event)] == ["Next"]
    assert parser.feed(b"") == []


@pytest.mark.parametrize("path", AMI_FILES, ids=lambda p: p.name)
def test_fast_path_and_line_path_agree(path: Path) -> None:
    # Byte-by-byte feeding never has a whole message in the buffer, so it
    # exercises only the line-by-line path; whole-file feeding the fast path.
    data = path.read_bytes()
    parser = AmiParser()
    slow = []
    for i in range(len(data)):
        slow += parser.feed(data[i : i + 1])
    assert slow == AmiParser().feed(data)


# ----------------------------------------------------------------------------- event filters


def test_event_filter_by_name_encodes_as_action_and_conf_line() -> None:
    flt = EventFilter("Hangup")
    assert flt.criteria() == "action(include),name(Hangup)"
    assert flt.action_headers() == [
        ("Operation", "Add"),
        ("MatchCriteria", "action(include),name(Hangup)"),
        ("Filter", ""),
    ]
    assert flt.conf_line() == "eventfilter(action(include),name(Hangup)) ="
    # The bytes the sandbox accepted ("Response: Success"), ActionID last.
    assert encode_action("Filter", "f1", flt.action_headers()) == (
        b"Action: Filter\r\nOperation: Add\r\nMatchCriteria: action(include),name(Hangup)\r\n"
        b"Filter: \r\nActionID: f1\r\n\r\n"
    )


def test_event_filter_on_a_header_value_matches_exactly() -> None:
    flt = EventFilter("VarSet", "Variable", "AMDSTATUS")
    assert flt.criteria() == "action(include),name(VarSet),header(Variable),method(exact)"
    assert ("Filter", "AMDSTATUS") in flt.action_headers()
    assert flt.conf_line() == (
        "eventfilter(action(include),name(VarSet),header(Variable),method(exact)) = AMDSTATUS"
    )


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("Hang,up",), "bad event name"),
        (("Hangup)",), "bad event name"),
        (("",), "bad event name"),
        (("VarSet", "Vari able", "X"), "bad header name"),
        (("VarSet", "Variable", ""), "a header needs a value"),
        (("VarSet", "", "X"), "a header needs a value"),
        (("VarSet", "Variable", "X\r\nAction: Originate"), "CR or LF"),
    ],
)
def test_event_filter_refuses_what_would_break_the_criteria_syntax(
    args: tuple[str, ...], what: str
) -> None:
    with pytest.raises(ProtocolError, match=what):
        EventFilter(*args)
