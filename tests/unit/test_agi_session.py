"""AgiCallSession against a fake Asterisk over a real loopback socket.

The fake plays Asterisk's side byte for byte: it connects (Asterisk is the FastAGI client),
sends the recorded environment block, then answers each command with reply bytes taken from
the recorded transcript (tests/fixtures/asterisk-22/transcripts/fastagi-ivr.ami.agi) or
captured from the sandbox Asterisk 22.10.1 (quoted below with where they came from). It checks
every command it receives word by word, split the way Asterisk's parse_args() splits them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.core.errors import ActionFailed, ActionTimeout, PbxUnavailable
from engine.pbx.asterisk.agi_codec import decode_command, iter_transcript, parse_environment
from engine.pbx.asterisk.agi_session import AgiCallSession
from engine.pbx.base import CallSession, HangupDuringSession

TRANSCRIPT = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "asterisk-22"
    / "transcripts"
    / "fastagi-ivr.ami.agi"
)


def transcript() -> list[tuple[str, str]]:
    return list(iter_transcript(TRANSCRIPT.read_text()))


def transcript_env() -> bytes:
    kind, block = transcript()[0]
    assert kind == "env"
    return block.encode()


# Captured from the sandbox (Asterisk 22.10.1), PJSIP/5001@self-trunk: the far end hung up
# during WAIT FOR DIGIT; Asterisk answered "200 result=-1", then wrote "HANGUP" on its own;
# a command sent right after the -1 got "HANGUP" first and then this 511.
MINUS_ONE = b"200 result=-1\n"
HANGUP_LINE = b"HANGUP\n"
DEAD_511 = b"511 Command Not Permitted on a dead channel or intercept routine\n"
# Captured: STREAM FILE of a file that does not exist, channel up (CHANNEL STATUS -> 6).
MISSING_FILE = b"200 result=-1 endpos=0\n"
CHANNEL_UP = b"200 result=6\n"
USAGE_520 = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b"Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
    b"Returns the digits received from the channel at the other end.\n"
    b"520 End of proper usage.\n"
)

NO_REPLY = b""  # the fake reads the command and then says nothing
CLOSE = None  # the fake reads the command and closes the connection


@dataclass
class Step:
    expect: tuple[str, ...]
    reply: bytes | None


@dataclass
class FakeAsterisk:
    """Asterisk's end of one FastAGI connection, scripted."""

    env: bytes
    steps: Sequence[Step]
    preamble: bytes = b""  # written right after the environment, in the same write
    received: list[tuple[str, ...]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    saw_eof: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(self.env + self.preamble)
            await writer.drain()
            for step in self.steps:
                line = await reader.readline()
                if not line:
                    self.saw_eof.set()
                    return
                argv = decode_command(line)
                self.received.append(argv)
                if argv != step.expect:
                    self.mismatches.append(f"expected {step.expect}, got {argv}")
                if step.reply is None:
                    return
                writer.write(step.reply)
                await writer.drain()
            # Script done: Asterisk keeps the socket open until the AGI side closes it.
            with contextlib.suppress(ConnectionError):
                extra = await reader.read()
                if extra:
                    self.mismatches.append(f"unexpected bytes after the script: {extra!r}")
            self.saw_eof.set()
        finally:
            writer.close()


@dataclass
class Harness:
    fake: FakeAsterisk
    session: AgiCallSession
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def connected(
    steps: Sequence[Step],
    *,
    env: bytes | None = None,
    preamble: bytes = b"",
    step_timeout_s: float = 5.0,
    prompt_timeout_s: float = 5.0,
) -> AsyncIterator[Harness]:
    """A session on the server side of a loopback socket, the fake on the client side."""
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fake = FakeAsterisk(env=env if env is not None else transcript_env(), steps=steps)
    fake.preamble = preamble
    task = asyncio.create_task(fake.run("127.0.0.1", port))
    reader, writer = await asyncio.wait_for(accepted, 5)
    block = b""
    while not block.endswith(b"\n\n"):
        block += await reader.readuntil(b"\n")
    session = AgiCallSession(
        parse_environment(block),
        reader,
        writer,
        step_timeout_s=step_timeout_s,
        prompt_timeout_s=prompt_timeout_s,
    )
    try:
        yield Harness(fake, session, task)
    finally:
        await session.close()
        await asyncio.wait_for(task, 5)
        server.close()
        await server.wait_closed()


def transcript_steps() -> list[Step]:
    items = transcript()[1:]
    steps = []
    for (d1, cmd), (d2, reply) in zip(items[::2], items[1::2], strict=True):
        assert (d1, d2) == (">>>", "<<<")
        steps.append(Step(decode_command(cmd.encode()), reply.encode() + b"\n"))
    return steps


async def test_replays_the_recorded_session() -> None:
    steps = transcript_steps()
    # The recording's client let any key interrupt the beep; play() never does (escape
    # digits ""), which is the one deliberate difference from the recorded bytes.
    assert steps[1].expect == ("STREAM", "FILE", "beep", "0123456789#")
    steps[1] = Step(("STREAM", "FILE", "beep", ""), steps[1].reply)
    async with connected(steps) as h:
        session = h.session
        assert isinstance(session, CallSession)
        assert session.call_id == "1795318557.16"
        assert session.variables["agi_context"] == "customers"
        await session.answer()
        await session.play("beep")
        assert await session.get_digits("beep", max_digits=4, timeout_s=3.0) == "1234"
        await session.set_var("CHOICE", "2")
        assert await session.get_var("CHOICE") == "2"
        reply = await session.exec("Wait", "1")
        assert reply.result == "0"
        await session.hangup()
        assert session.closed
        await asyncio.wait_for(h.fake.saw_eof.wait(), 5)
    assert h.fake.mismatches == []
    assert h.fake.received == [s.expect for s in steps]


async def test_hangup_during_get_data_is_confirmed_and_raised() -> None:
    steps = [
        Step(("GET", "DATA", "beep", "3000", "4"), MINUS_ONE),
        Step(("CHANNEL", "STATUS"), HANGUP_LINE + DEAD_511),
        Step(("STREAM", "FILE", "beep", ""), DEAD_511),
        # GET VARIABLE is permitted on a dead channel (checked on the sandbox).
        Step(("GET", "VARIABLE", "UNIQUEID"), b"200 result=1 (1795320901.11)\n"),
    ]
    async with connected(steps) as h:
        with pytest.raises(HangupDuringSession):
            await h.session.get_digits("beep", 4, 3.0)
        assert h.session.hung_up
        with pytest.raises(HangupDuringSession):
            await h.session.play("beep")
        assert await h.session.get_var("UNIQUEID") == "1795320901.11"
        await h.session.hangup()  # already gone: no HANGUP command is sent
    assert h.fake.mismatches == []
    assert h.fake.received == [s.expect for s in steps]


async def test_hangup_line_before_the_reply_does_not_desynchronise() -> None:
    # The caller hung up between steps: HANGUP sits in the socket before our next command.
    steps = [
        Step(("STREAM", "FILE", "beep", ""), DEAD_511),
        Step(("SET", "VARIABLE", "CHOICE", "2"), b"200 result=1\n"),
    ]
    async with connected(steps, preamble=HANGUP_LINE) as h:
        with pytest.raises(HangupDuringSession):
            await h.session.play("beep")
        await h.session.set_var("CHOICE", "2")  # the 511 was not left for this command
    assert h.fake.mismatches == []


async def test_missing_prompt_is_an_error_not_a_hangup() -> None:
    steps = [
        Step(("STREAM", "FILE", "no-such-file", ""), MISSING_FILE),
        Step(("CHANNEL", "STATUS"), CHANNEL_UP),
        Step(("ANSWER",), b"200 result=0\n"),
    ]
    async with connected(steps) as h:
        with pytest.raises(ActionFailed, match="still up") as info:
            await h.session.play("no-such-file")
        assert not isinstance(info.value, ActionTimeout)
        assert not h.session.hung_up
        await h.session.answer()  # the session is still usable
    assert h.fake.mismatches == []


async def test_no_reply_times_out_and_closes() -> None:
    steps = [Step(("ANSWER",), NO_REPLY)]
    async with connected(steps, step_timeout_s=0.2) as h:
        with pytest.raises(ActionTimeout, match="ANSWER"):
            await h.session.answer()
        assert h.session.closed
        await asyncio.wait_for(h.fake.saw_eof.wait(), 5)  # Asterisk sees the socket close
        with pytest.raises(PbxUnavailable, match="closed"):
            await h.session.get_var("X")


async def test_connection_closed_mid_step_is_a_hangup() -> None:
    async with connected([Step(("WAIT", "FOR", "DIGIT", "3000"), CLOSE)]) as h:
        with pytest.raises(HangupDuringSession, match="closed"):
            await h.session.get_digits("", 1, 3.0)
        assert h.session.hung_up and h.session.closed


@pytest.mark.parametrize(
    ("reply", "digits"),
    [
        (b"200 result=12 (timeout)\n", "12"),  # partial entry, then the timeout
        (b"200 result= (timeout)\n", ""),  # captured: nothing pressed
        (b"200 result=1234\n", "1234"),  # recorded
    ],
)
async def test_get_data_results(reply: bytes, digits: str) -> None:
    async with connected([Step(("GET", "DATA", "beep", "2500", "4"), reply)]) as h:
        assert await h.session.get_digits("beep", 4, 2.5) == digits
    assert h.fake.mismatches == []


async def test_wait_for_digit_loop_without_prompt() -> None:
    # Captured replies for the far end sending 1234#.
    replies = [b"200 result=49\n", b"200 result=50\n", b"200 result=51\n", b"200 result=52\n"]
    replies.append(b"200 result=35\n")
    steps = [Step(("WAIT", "FOR", "DIGIT", "3000"), r) for r in replies]
    async with connected(steps) as h:
        assert await h.session.get_digits("", 8, 3.0) == "1234"
    assert h.fake.mismatches == []
    assert len(h.fake.received) == 5


async def test_wait_for_digit_loop_stops_at_max_digits_and_timeout() -> None:
    steps = [
        Step(("WAIT", "FOR", "DIGIT", "1000"), b"200 result=49\n"),
        Step(("WAIT", "FOR", "DIGIT", "1000"), b"200 result=50\n"),
        Step(("WAIT", "FOR", "DIGIT", "1000"), b"200 result=0\n"),  # timeout
    ]
    async with connected(steps) as h:
        assert await h.session.get_digits("", 2, 1.0) == "12"  # max reached, no 3rd wait
        assert await h.session.get_digits("", 2, 1.0) == ""  # timed out
    assert h.fake.mismatches == []


async def test_prompt_with_custom_terminator_uses_barge_in() -> None:
    steps = [
        Step(("STREAM", "FILE", "beep", "0123456789*#"), b"200 result=55 endpos=1200\n"),
        Step(("WAIT", "FOR", "DIGIT", "2000"), b"200 result=56\n"),
        Step(("WAIT", "FOR", "DIGIT", "2000"), b"200 result=42\n"),  # '*' terminates
    ]
    async with connected(steps) as h:
        assert await h.session.get_digits("beep", 5, 2.0, terminators="*") == "78"
    assert h.fake.mismatches == []


async def test_get_var_unset_and_parenthesised_values() -> None:
    steps = [
        Step(("GET", "VARIABLE", "NOPE"), b"200 result=0\n"),
        Step(("GET", "VARIABLE", "V"), b"200 result=1 (a (b) c)\n"),
        Step(("GET", "VARIABLE", "E"), b"200 result=1 ()\n"),
    ]
    async with connected(steps) as h:
        assert await h.session.get_var("NOPE") is None
        assert await h.session.get_var("V") == "a (b) c"
        assert await h.session.get_var("E") == ""
    assert h.fake.mismatches == []


async def test_record_outcomes() -> None:
    rec = ("RECORD", "FILE", "/var/spool/asterisk/monitor/m1", "wav", "#", "5000")
    steps = [
        Step((*rec, "0", "s=2"), b"200 result=35 (dtmf) endpos=0\n"),  # captured
        Step(rec, b"200 result=-1 (writefile)\n"),  # captured (unwritable directory)
        Step(rec, b"200 result=-1 (hangup) endpos=0\n"),  # captured
    ]
    async with connected(steps) as h:
        await h.session.record("/var/spool/asterisk/monitor/m1.wav", 5.0, silence_s=2)
        with pytest.raises(ActionFailed, match="writefile"):
            await h.session.record("/var/spool/asterisk/monitor/m1", 5.0)
        with pytest.raises(HangupDuringSession):
            await h.session.record("/var/spool/asterisk/monitor/m1", 5.0)
    assert h.fake.mismatches == []


async def test_usage_error_is_consumed_whole() -> None:
    steps = [Step(("GET", "DATA"), USAGE_520), Step(("ANSWER",), b"200 result=0\n")]
    async with connected(steps) as h:
        with pytest.raises(ActionFailed, match="520"):
            await h.session.command("GET DATA")
        await h.session.answer()  # would read "Stream the given..." if the block leaked
    assert h.fake.mismatches == []


async def test_unknown_command_is_action_failed() -> None:
    steps = [Step(("FOO", "BAR"), b"510 Invalid or unknown command\n")]
    async with connected(steps) as h:
        with pytest.raises(ActionFailed, match="510 Invalid or unknown command"):
            await h.session.command("FOO BAR")
        assert not h.session.closed


async def test_garbage_reply_closes_the_session() -> None:
    async with connected([Step(("ANSWER",), b"OK then\n")]) as h:
        with pytest.raises(ActionFailed, match="'OK then'"):
            await h.session.answer()
        assert h.session.closed


async def test_argument_validation() -> None:
    async with connected([]) as h:
        with pytest.raises(ValueError, match="max_digits"):
            await h.session.get_digits("beep", 0, 1.0)
        with pytest.raises(ValueError, match="terminators"):
            await h.session.get_digits("beep", 1, 1.0, terminators="x")
        with pytest.raises(ValueError, match="prompt"):
            await h.session.play("")
    assert h.fake.received == []
