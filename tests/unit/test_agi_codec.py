"""AGI codec tests on the recorded Asterisk 22 FastAGI transcript and captured sandbox lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.errors import ProtocolError
from engine.pbx.asterisk.agi_codec import (
    MAX_ARGS,
    AgiReply,
    HangupNotice,
    ReplyParser,
    decode_command,
    encode_command,
    iter_transcript,
    parse_environment,
    parse_reply_line,
)

TRANSCRIPT = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "asterisk-22"
    / "transcripts"
    / "fastagi-ivr.ami.agi"
)

# Lines captured from the sandbox Asterisk 22.10.1 (same build as the transcript) while
# writing this codec; quoted byte for byte.
ENV_WITH_QUERY = (
    b"agi_network: yes\nagi_network_script: ivr?flow=main\n"
    b"agi_request: agi://127.0.0.1:41903/ivr?flow=main\nagi_channel: PJSIP/self-trunk-00000006\n"
    b"agi_language: en\nagi_type: PJSIP\nagi_uniqueid: 1795320884.6\n"
    b"agi_version: 22.10.1+dfsg+~cs6.17.60671434-1\nagi_callerid: unknown\n"
    b"agi_calleridname: unknown\nagi_callingpres: 67\nagi_callingani2: 0\nagi_callington: 0\n"
    b"agi_callingtns: 0\nagi_dnid: unknown\nagi_rdnis: unknown\nagi_context: engine-ivr\n"
    b"agi_extension: s\nagi_priority: 5\nagi_enhanced: 0.0\nagi_accountcode: \n"
    b"agi_threadid: 139765627578048\n\n"
)
USAGE_520 = [
    b"520-Invalid command syntax.  Proper usage follows:\n",
    b"Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n",
    b"Returns the digits received from the channel at the other end.\n",
    b"520 End of proper usage.\n",
]
DEAD_511 = b"511 Command Not Permitted on a dead channel or intercept routine\n"


def _transcript() -> list[tuple[str, str]]:
    return list(iter_transcript(TRANSCRIPT.read_text()))


def test_environment_from_transcript() -> None:
    kind, block = _transcript()[0]
    assert kind == "env"
    env = parse_environment(block.encode())
    assert env.channel == "PJSIP/self-trunk-0000000e"
    assert env.uniqueid == "1795318557.16"
    assert env.request == "agi://127.0.0.1:4573/ivr"
    assert env.network_script == "ivr"
    assert env.script == "ivr"
    assert dict(env.query) == {}
    assert env.arguments == ()
    assert env.variables["agi_context"] == "customers"
    assert env.variables["agi_accountcode"] == ""  # "agi_accountcode: " on the wire
    assert len(env.variables) == 22
    assert next(iter(env.variables)) == "agi_network"


def test_environment_query_string_comes_from_the_url() -> None:
    env = parse_environment(ENV_WITH_QUERY)
    # Asterisk leaves the query string in agi_network_script; we split it off.
    assert env.network_script == "ivr?flow=main"
    assert env.script == "ivr"
    assert dict(env.query) == {"flow": "main"}


def test_environment_arguments_and_encoded_query() -> None:
    block = (
        b"agi_request: agi://h/ivr?flow=a%20b&empty=&x=1&x=2\n"
        b"agi_channel: PJSIP/a-1\nagi_uniqueid: 1.1\n"
        b"agi_arg_1: first\nagi_arg_2: with space\nagi_arg_4: orphan\n\n"
    )
    env = parse_environment(block)
    assert dict(env.query) == {"flow": "a b", "empty": "", "x": "2"}
    assert env.arguments == ("first", "with space")  # stops at the first gap


def test_environment_non_utf8_value_round_trips() -> None:
    block = b"agi_channel: PJSIP/a-1\nagi_uniqueid: 1.1\nagi_calleridname: Jos\xe9\n\n"
    env = parse_environment(block)
    name = env.variables["agi_calleridname"]
    assert name.startswith("Jos")
    assert b"Jos\xe9" in encode_command("SET VARIABLE", "N", name)


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        (b"agi_channel: PJSIP/a-1\nnot a header\n\n", "line 2"),
        (b"agi_channel: PJSIP/a-1\nagi_uniqueid: 1.1\nHANGUP\n\n", "'HANGUP'"),
        (b"agi_channel: PJSIP/a-1\n\nagi_uniqueid: 1.1\n\n", "line 2"),
        (b"agi_channel: PJSIP/a-1\n\n", "missing agi_uniqueid"),
        (b"\n", "missing agi_channel"),
    ],
)
def test_environment_garbage_names_the_line(block: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_environment(block)
    assert fragment in str(info.value)
    assert info.value.remote is True


def test_every_transcript_reply_parses() -> None:
    replies = [
        parse_reply_line(line.encode() + b"\n") for kind, line in _transcript() if kind == "<<<"
    ]
    assert all(isinstance(r, AgiReply) and r.code == 200 for r in replies)
    answer, stream, get_data, set_var, get_var, exec_wait, hangup = replies
    assert isinstance(stream, AgiReply) and stream.result == "0"
    assert dict(stream.extras) == {"endpos": "3520"}
    assert isinstance(get_data, AgiReply) and get_data.result == "1234"
    assert not get_data.timed_out
    assert isinstance(get_var, AgiReply) and get_var.result == "1" and get_var.data == "2"
    assert isinstance(set_var, AgiReply) and set_var.result_int == 1
    assert isinstance(hangup, AgiReply) and hangup.result_int == 1
    assert isinstance(answer, AgiReply) and answer.result_int == 0
    assert isinstance(exec_wait, AgiReply) and exec_wait.data is None


@pytest.mark.parametrize(
    ("line", "result", "data", "extras"),
    [
        # All captured from the sandbox.
        (b"200 result= (timeout)\n", "", "timeout", {}),
        (b"200 result=-1 endpos=0\n", "-1", None, {"endpos": "0"}),
        (b"200 result=35 (dtmf) endpos=0\n", "35", "dtmf", {"endpos": "0"}),
        (b"200 result=0 (timeout) endpos=0\n", "0", "timeout", {"endpos": "0"}),
        (b"200 result=-1 (hangup) endpos=0\n", "-1", "hangup", {"endpos": "0"}),
        (b"200 result=-1 (writefile)\n", "-1", "writefile", {}),
        (b"200 result=1 (1795320884.6)\n", "1", "1795320884.6", {}),
        # GET DATA: partial entry then silence (res_agi.c: "200 result=%s (timeout)").
        (b"200 result=12 (timeout)\n", "12", "timeout", {}),
        # A variable value containing parentheses stays whole.
        (b"200 result=1 (a (b) c) endpos=x)\n", "1", "a (b) c) endpos=x", {}),
    ],
)
def test_success_replies(
    line: bytes, result: str, data: str | None, extras: dict[str, str]
) -> None:
    reply = parse_reply_line(line)
    assert isinstance(reply, AgiReply)
    assert (reply.code, reply.result, reply.data, dict(reply.extras)) == (200, result, data, extras)


def test_error_replies_and_hangup_notice() -> None:
    dead = parse_reply_line(DEAD_511)
    assert isinstance(dead, AgiReply) and dead.dead_channel and not dead.ok
    unknown = parse_reply_line(b"510 Invalid or unknown command\n")
    assert isinstance(unknown, AgiReply)
    assert (unknown.code, unknown.message) == (510, "Invalid or unknown command")
    assert parse_reply_line(b"HANGUP\n") == HangupNotice()
    trying = parse_reply_line(b"100 result=0 Trying...\n")
    assert isinstance(trying, AgiReply) and trying.code == 100


def test_usage_block_is_read_to_its_end() -> None:
    parser = ReplyParser()
    assert [parser.feed_line(line) for line in USAGE_520[:-1]] == [None, None, None]
    assert parser.in_block
    reply = parser.feed_line(USAGE_520[-1])
    assert isinstance(reply, AgiReply) and reply.code == 520
    assert len(reply.lines) == 4
    assert "receive DTMF data" in reply.message
    assert not parser.in_block
    # The parser is back in sync: the next line is a normal reply.
    follow = parser.feed_line(b"200 result=1234\n")
    assert isinstance(follow, AgiReply) and follow.result == "1234"


@pytest.mark.parametrize(
    "line",
    [
        b"hello\n",
        b"\n",
        b"200 ok\n",
        b"200 result=1 trailing garbage\n",
        b"200 result=1 (unclosed\n",
        b"2000 result=1\n",
        b"HANGUP now\n",
    ],
)
def test_reply_garbage_raises_with_the_line(line: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        ReplyParser().feed_line(line)
    assert repr(line.decode().rstrip("\n")) in str(info.value)


def test_only_520_opens_a_block() -> None:
    with pytest.raises(ProtocolError, match="only 520"):
        ReplyParser().feed_line(b"200-result=1\n")


def test_transcript_commands_decode_like_asterisk() -> None:
    commands = [decode_command(line.encode()) for kind, line in _transcript() if kind == ">>>"]
    assert commands == [
        ("ANSWER",),
        ("STREAM", "FILE", "beep", "0123456789#"),
        ("GET", "DATA", "beep", "3000", "4"),
        ("SET", "VARIABLE", "CHOICE", "2"),
        ("GET", "VARIABLE", "CHOICE"),
        ("EXEC", "Wait", "1"),
        ("HANGUP",),
    ]


def test_encode_matches_transcript_bytes() -> None:
    assert encode_command("GET DATA", "beep", 3000, 4) == b"GET DATA beep 3000 4\n"
    assert encode_command("ANSWER") == b"ANSWER\n"
    assert encode_command("GET VARIABLE", "CHOICE") == b"GET VARIABLE CHOICE\n"
    # Empty escape digits must be sent as "" or Asterisk sees one argument fewer.
    assert encode_command("STREAM FILE", "beep", "") == b'STREAM FILE beep ""\n'
    assert encode_command("SET VARIABLE", "X", 'say "hi" \\o/') == (
        b'SET VARIABLE X "say \\"hi\\" \\\\o/"\n'
    )


@pytest.mark.parametrize("bad", ["a\nHANGUP", "a\rb", "a\x00b"])
def test_encode_refuses_line_breaks(bad: str) -> None:
    with pytest.raises(ProtocolError) as info:
        encode_command("SET VARIABLE", "X", bad)
    assert info.value.remote is False
    assert "argument 2" in str(info.value)


def test_encode_refuses_bad_verbs_and_too_many_args() -> None:
    with pytest.raises(ProtocolError, match="verb"):
        encode_command("GET DATA\nHANGUP")
    with pytest.raises(ProtocolError, match="drops the rest"):
        encode_command("EXEC", *(["x"] * MAX_ARGS))


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"])
        ),
        max_size=10,
    )
)
def test_encode_decode_round_trip(args: list[str]) -> None:
    assert decode_command(encode_command("SET VARIABLE", *args)) == ("SET", "VARIABLE", *args)
