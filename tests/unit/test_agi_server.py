"""FastAgiServer (panoramisk Application + our guards) against the fake Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from engine.pbx.asterisk.agi_server import FastAgiServer
from engine.pbx.base import CallSession, HangupDuringSession
from tests.unit.test_agi_codec import ENV_WITH_QUERY
from tests.unit.test_agi_session import (
    DEAD_511,
    HANGUP_LINE,
    NO_REPLY,
    FakeAsterisk,
    Step,
    transcript_env,
)

Handler = Callable[[CallSession], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, **kwargs: float) -> AsyncIterator[FastAgiServer]:
    async with FastAgiServer("127.0.0.1", 0, handler, **kwargs) as server:
        yield server


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_handler_collects_digits_and_sees_variables() -> None:
    seen: dict[str, object] = {}

    async def handler(session: CallSession) -> None:
        seen["call_id"] = session.call_id
        seen["flow"] = session.variables.get("flow")
        seen["digits"] = await session.get_digits("beep", 4, 3.0)

    fake = FakeAsterisk(
        env=ENV_WITH_QUERY, steps=[Step(("GET", "DATA", "beep", "3000", "4"), b"200 result=1234\n")]
    )
    async with serving(handler) as server:
        await asyncio.wait_for(fake.run("127.0.0.1", server.port), 5)
        await wait_until(lambda: server.open_connections == 0, "the connection to end")
    assert seen == {"call_id": "1795320884.6", "flow": "main", "digits": "1234"}
    # Handler returned: the server closed the socket without hanging up (dialplan continues).
    assert fake.saw_eof.is_set()
    assert fake.received == [("GET", "DATA", "beep", "3000", "4")]
    assert fake.mismatches == []


async def test_handler_exception_is_logged_with_call_id_and_channel_hung_up() -> None:
    async def handler(session: CallSession) -> None:
        await session.answer()
        raise RuntimeError("flow broke")

    fake = FakeAsterisk(
        env=transcript_env(),
        steps=[Step(("ANSWER",), b"200 result=0\n"), Step(("HANGUP",), b"200 result=1\n")],
    )
    with capture_logs() as logs:
        async with serving(handler) as server:
            await asyncio.wait_for(fake.run("127.0.0.1", server.port), 5)
            await wait_until(lambda: server.open_connections == 0, "the connection to end")
    assert fake.received == [("ANSWER",), ("HANGUP",)]
    assert fake.saw_eof.is_set()
    failed = [e for e in logs if e["event"] == "agi.handler_failed"]
    assert len(failed) == 1
    assert failed[0]["call_id"] == "1795318557.16"
    assert failed[0]["error"] == "flow broke"
    ends = [e for e in logs if e["event"] == "agi.session_end"]
    assert ends and ends[0]["outcome"] == "handler_failed"


async def test_hangup_right_after_the_environment_is_not_lost() -> None:
    # The env and an early HANGUP arrive in one segment. panoramisk alone reads 100-byte
    # chunks and would swallow the HANGUP with the environment; our feed stops at the blank line.
    outcome: list[str] = []

    async def handler(session: CallSession) -> None:
        try:
            await session.play("beep")
        except HangupDuringSession:
            outcome.append("hangup")
            raise

    fake = FakeAsterisk(
        env=transcript_env(), steps=[Step(("STREAM", "FILE", "beep", ""), DEAD_511)]
    )
    fake.preamble = HANGUP_LINE
    with capture_logs() as logs:
        async with serving(handler) as server:
            await asyncio.wait_for(fake.run("127.0.0.1", server.port), 5)
            await wait_until(lambda: server.open_connections == 0, "the connection to end")
    assert outcome == ["hangup"]
    assert [e["during"] for e in logs if e["event"] == "agi.hangup_notice"] == ["STREAM FILE"]
    assert [e["outcome"] for e in logs if e["event"] == "agi.session_end"] == ["caller_hung_up"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"", "connection closed after 0 lines"),  # TCP health check: connect, close
        (b"agi_channel: PJSIP/x-1\nagi_uni", "connection closed after 1 lines"),
        (b"GET / HTTP/1.0\r\n\r\n", "expected 'agi_<name>: <value>'"),
        (b"\n", "empty block"),
    ],
)
async def test_bad_connections_end_cleanly_and_the_server_keeps_serving(
    payload: bytes, fragment: str
) -> None:
    calls: list[str] = []

    async def handler(session: CallSession) -> None:
        calls.append(session.call_id)

    with capture_logs() as logs:
        async with serving(handler) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(payload)
            await writer.drain()
            if payload.endswith(b"\n\n") or payload == b"\n":
                assert await asyncio.wait_for(reader.read(), 5) == b""  # server hung up on us
            writer.close()
            # panoramisk's own loop never yields on EOF (it would freeze this test's loop);
            # with the guarded feed the connection ends and the server keeps serving.
            await wait_until(lambda: server.open_connections == 0, "the bad connection to end")
            good = FakeAsterisk(env=transcript_env(), steps=[])
            await asyncio.wait_for(good.run("127.0.0.1", server.port), 5)
            await wait_until(lambda: server.open_connections == 0, "the good call to end")
    assert calls == ["1795318557.16"]
    problems = [e for e in logs if e["event"] in ("agi.bad_connection", "agi.bad_environment")]
    assert len(problems) == 1 and fragment in problems[0]["error"]


async def test_environment_timeout() -> None:
    async def handler(session: CallSession) -> None:
        raise AssertionError("must not run")

    with capture_logs() as logs:
        async with serving(handler, env_timeout_s=0.2) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"agi_channel: PJSIP/x-1\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
    assert any("incomplete after 0.2s" in e.get("error", "") for e in logs)


async def test_stop_cancels_a_stuck_call_and_closes_its_socket() -> None:
    started = asyncio.Event()

    async def handler(session: CallSession) -> None:
        started.set()
        await session.answer()  # the fake never replies

    fake = FakeAsterisk(env=transcript_env(), steps=[Step(("ANSWER",), NO_REPLY)])
    with capture_logs() as logs:
        server = FastAgiServer("127.0.0.1", 0, handler)
        await server.start()
        fake_task = asyncio.create_task(fake.run("127.0.0.1", server.port))
        await asyncio.wait_for(started.wait(), 5)
        assert server.active_calls == 1
        await server.stop(grace_s=0.05)
        assert server.open_connections == 0 and server.active_calls == 0
        await asyncio.wait_for(fake_task, 5)
    assert [e["outcome"] for e in logs if e["event"] == "agi.session_end"] == ["cancelled"]


def test_sync_handler_is_refused() -> None:
    def handler(session: CallSession) -> None:
        return None

    with pytest.raises(TypeError, match="async"):
        FastAgiServer("127.0.0.1", 0, handler)  # type: ignore[arg-type]
