"""ESL codec against every real FreeSWITCH transcript, chunked any way, and garbage."""

from __future__ import annotations

import json
import random

import pytest

from engine.core.errors import ProtocolError
from engine.pbx.freeswitch import esl_codec as codec
from tests.fakes.esl_transcripts import TRANSCRIPTS, outbound_transcript, split_frames

FILES = sorted(p.name for p in TRANSCRIPTS.glob("*.esl"))


def parse_all(data: bytes) -> list[codec.EslMessage]:
    parser = codec.EslParser()
    out = parser.feed(data)
    assert parser.buffered == 0
    return out


@pytest.mark.parametrize("name", FILES)
def test_every_transcript_parses_with_no_error(name: str) -> None:
    data = (TRANSCRIPTS / name).read_bytes()
    messages = parse_all(data)
    frames = split_frames(data)  # independent, naive splitter used by the fake
    assert len(messages) == len(frames)
    for msg, frame in zip(messages, frames, strict=True):
        if isinstance(msg, codec.EslEvent):
            if msg.format == "plain":
                assert frame.event is not None
                assert msg.name == frame.event.name
                # FreeSWITCH repeats some headers (Hangup-Cause twice in every
                # CHANNEL_HANGUP_COMPLETE, same value); names keep wire order.
                assert list(msg.headers) == list(dict.fromkeys(k for k, _ in frame.event.pairs))
                # every header reads back (forces the lazy split and decode)
                assert all(isinstance(msg.headers[k], str) for k in msg.headers)
            else:
                assert msg.name == json.loads(frame.body)["Event-Name"]
    assert isinstance(messages[0], codec.AuthRequest)


@pytest.mark.parametrize("name", ["originate-busy.esl", "outbound-socket-ivr.esl"])
def test_chunking_anywhere_gives_the_same_messages(name: str) -> None:
    data = (TRANSCRIPTS / name).read_bytes()
    whole = parse_all(data)
    rng = random.Random(7)
    for sizes in ([1], [2, 3, 5], [rng.randint(1, 4000) for _ in range(50)]):
        parser = codec.EslParser()
        got: list[codec.EslMessage] = []
        pos = i = 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            got += parser.feed(data[pos : pos + n])
            pos += n
            i += 1
        assert [type(m) for m in got] == [type(m) for m in whole]
        assert [getattr(m, "name", None) for m in got] == [getattr(m, "name", None) for m in whole]
        assert [getattr(m, "body", None) for m in got] == [getattr(m, "body", None) for m in whole]


def test_plain_event_values_are_url_decoded() -> None:
    msgs = parse_all((TRANSCRIPTS / "originate-busy.esl").read_bytes())
    create = next(m for m in msgs if isinstance(m, codec.EslEvent))
    assert create.get("FreeSWITCH-IPv6") == "fd00::2"  # recorded as fd00%3A%3A2
    assert create.get("Channel-Name") == "sofia/external/62001@127.0.0.1:5080"
    assert create.get("Event-Date-GMT") == "Sun, 22 Nov 2026 03:52:10 GMT"


def test_background_job_nested_body_with_its_own_length() -> None:
    msgs = parse_all((TRANSCRIPTS / "originate-gateway-down.esl").read_bytes())
    job = next(m for m in msgs if isinstance(m, codec.EslEvent))
    assert job.name == "BACKGROUND_JOB"
    assert job.body == "-ERR GATEWAY_DOWN\n"
    assert job.get("Job-UUID") == "job-0007"
    assert job.get("Job-Command-Arg") == (
        "{origination_uuid=11111111-aaaa-4bbb-8ccc-000000000007}"
        "sofia/gateway/rig_down/61001 &park()"
    )
    apis = [m for m in msgs if isinstance(m, codec.ApiResponse)]
    assert "Status  \tDOWN" in apis[0].body


def test_json_event_and_body() -> None:
    msgs = parse_all((TRANSCRIPTS / "originate-answered-json.esl").read_bytes())
    job = next(m for m in msgs if isinstance(m, codec.EslEvent) and m.name == "BACKGROUND_JOB")
    assert job.format == "json"
    assert job.body == "+OK 11111111-aaaa-4bbb-8ccc-000000000003\n"
    assert job.get("Job-UUID") == "job-0003"


def test_api_responses_and_errors_from_api_misc() -> None:
    msgs = parse_all((TRANSCRIPTS / "api-misc.esl").read_bytes())
    apis = [m for m in msgs if isinstance(m, codec.ApiResponse)]
    assert apis[0].body.startswith("UP 0 years") and apis[0].ok
    assert json.loads(apis[1].body) == {"row_count": 0}
    assert not apis[2].ok and apis[2].body == "-ERR bogus_command Command not found!\n"
    assert apis[-1].body == "-ERR No such channel!\n"
    last = msgs[-1]
    assert isinstance(last, codec.CommandReply) and not last.ok
    assert last.reply_text.startswith("-ERR invalid session id")


def test_outbound_connect_reply_is_url_decoded_and_disconnect_notice_lingers() -> None:
    segments = outbound_transcript()
    connect_reply = parse_all(segments[0][1][0].raw)[0]
    assert isinstance(connect_reply, codec.CommandReply)
    assert connect_reply.reply_text == "+OK"  # "%2BOK%0A" on the wire
    assert connect_reply.ok
    assert connect_reply.headers["Unique-ID"] == "7b5f2e29-9723-4271-acf7-aa1203a261f8"
    assert connect_reply.headers["Channel-Name"] == "sofia/external/0000000000@127.0.0.1"
    assert connect_reply.headers["Socket-Mode"] == "async"
    tail = parse_all(b"".join(f.raw for f in segments[-1][1]))
    notice = tail[-1]
    assert isinstance(notice, codec.DisconnectNotice) and notice.lingering
    assert notice.headers["Controlled-Session-UUID"] == "7b5f2e29-9723-4271-acf7-aa1203a261f8"
    # plain replies are not decoded: '+' stays '+'
    bgapi = parse_all(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: j%41\n\n")[0]
    assert isinstance(bgapi, codec.CommandReply) and bgapi.reply_text == "+OK Job-UUID: j%41"


def test_rude_rejection() -> None:
    msg = parse_all(
        b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"
    )[0]
    assert isinstance(msg, codec.RudeRejection) and msg.body.startswith("Access Denied")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"Content-Type: something/else\n\n", "unknown Content-Type 'something/else'"),
        (b"Reply-Text: +OK\n\n", "without Content-Type"),
        (b"Content-Type: api/response\nContent-Length: ten\n\n", "expected a non-negative"),
        (b"Content-Type: api/response\nthis is garbage\n\n", "has no ': ' separator"),
        (b"\xff\xfe: x\n\n", "not UTF-8"),
        (
            b"Content-Length: 12\nContent-Type: text/event-plain\n\nEvent-Name: X",
            "does not end in a blank line",
        ),
        (b"Content-Length: 10\nContent-Type: text/event-plain\n\nFoo: bar\n\n", "no Event-Name"),
        (b"Content-Length: 5\nContent-Type: text/event-json\n\n[1,2]", "expected an object"),
        (b"Content-Length: 3\nContent-Type: text/event-json\n\n{x}", "not valid JSON"),
        (b"Content-Type: command/reply\n\n", "without Reply-Text"),
    ],
)
def test_garbage_raises_protocol_error_naming_the_problem(data: bytes, needle: str) -> None:
    parser = codec.EslParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(data)
    assert needle in str(info.value)
    assert info.value.remote
    with pytest.raises(ProtocolError, match="already failed"):
        parser.feed(b"Content-Type: auth/request\n\n")


def test_endless_header_block_is_refused() -> None:
    parser = codec.EslParser()
    with pytest.raises(ProtocolError, match="no blank line"):
        parser.feed(b"X: " + b"a" * (codec.MAX_HEADER_BYTES + 10))


def test_malformed_inner_line_is_reported_on_access() -> None:
    body = b"Event-Name: CHANNEL_ANSWER\nbroken line\n\n"
    msg = parse_all(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body)
    event = msg[0]
    assert isinstance(event, codec.EslEvent) and event.name == "CHANNEL_ANSWER"
    assert event.get("Event-Name") == "CHANNEL_ANSWER"  # single lookups still work
    with pytest.raises(ProtocolError, match="'broken line'"):
        dict(event.headers)


# --------------------------------------------------------------- encoders


def sent_commands(name: str) -> list[bytes]:
    data = (TRANSCRIPTS / name).read_bytes()
    return [c + b"\n\n" for c in data.split(b"\n\n") if c]


def test_encoders_reproduce_the_recorded_client_bytes() -> None:
    sent = sent_commands("record.esl.sent")
    assert sent[0] == codec.encode_auth("ClueCon")
    names = sent[1].decode().split()[2:]
    assert sent[1] == codec.encode_event_subscription("plain", names)
    assert sent[2] == codec.encode_bgapi(
        "originate {origination_uuid=11111111-aaaa-4bbb-8ccc-000000000010}"
        "sofia/external/61001@127.0.0.1:5080 &park()",
        "job-0010",
    )
    assert sent[3] == codec.encode_api(
        "uuid_record 11111111-aaaa-4bbb-8ccc-000000000010 start /srv/rec01/rec-0010.wav"
    )
    misc = sent_commands("api-misc.esl.sent")
    assert misc[-1] == codec.encode_sendmsg("00000000-0000-0000-0000-000000000000", "hangup")
    outbound = [s for s, _ in outbound_transcript()]
    assert outbound[0] == codec.encode_connect()
    assert outbound[1] == codec.encode_myevents()
    assert outbound[2] == codec.encode_linger()
    assert outbound[3] == codec.encode_execute("answer")
    assert outbound[4] == codec.encode_execute(
        "play_and_get_digits",
        r"1 4 1 5000 # tone_stream://%(200,0,800) silence_stream://250 digits \d+",
    )
    assert outbound[6] == codec.encode_hangup("NORMAL_CLEARING")


def test_execute_with_event_uuid_and_filter() -> None:
    data = codec.encode_execute("playback", "x.wav", uuid="u1", event_uuid="app-1")
    assert data == (
        b"sendmsg u1\ncall-command: execute\nexecute-app-name: playback\n"
        b"execute-app-arg: x.wav\nevent-lock: true\nEvent-UUID: app-1\n\n"
    )
    assert codec.encode_filter("Unique-ID", "u1") == b"filter Unique-ID u1\n\n"


@pytest.mark.parametrize(
    "make",
    [
        lambda: codec.encode_api("status\n\nauth x"),
        lambda: codec.encode_bgapi("originate x", "job\n1"),
        lambda: codec.encode_bgapi("originate x", ""),
        lambda: codec.encode_execute("playback", "a.wav\r\ncall-command: hangup"),
        lambda: codec.encode_command("api x", [("Bad:Name", "v")]),
        lambda: codec.encode_event_subscription("plain", []),
        lambda: codec.encode_command("   "),
    ],
)
def test_encoders_refuse_injection(make: object) -> None:
    with pytest.raises(ProtocolError) as info:
        make()  # type: ignore[operator]
    assert not info.value.remote
