"""FastAgiServer + AgiCallSession against the real Asterisk 22 sandbox.

The far end of PJSIP/5001@self-trunk (carrier-test.conf, 5XXX) answers, waits 1 s, sends
DTMF 1234# and hangs up 3 s later. We originate it into a context that runs AGI() towards
our server with a minimal raw AMI Login + Originate written here on purpose: this test must
not depend on the engine's own AMI client.
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from engine.core.errors import ActionFailed
from engine.pbx.asterisk.agi_server import FastAgiServer
from engine.pbx.base import CallSession, HangupDuringSession

pytestmark = pytest.mark.asterisk

SANDBOX = Path(__file__).resolve().parents[2] / "scripts" / "asterisk-sandbox"
AMI = ("127.0.0.1", 5038)
SANDBOX_WAIT_S = 900.0


def _wait_for_sandbox() -> None:
    """Poll `asterisk-sandbox status` until Asterisk answers (never skip)."""
    deadline = time.monotonic() + SANDBOX_WAIT_S
    last = ""
    while time.monotonic() < deadline:
        done = subprocess.run(
            [str(SANDBOX), "status"], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode == 0:
            return
        last = (done.stderr or done.stdout).strip()
        time.sleep(5)
    pytest.fail(f"Asterisk sandbox not up after {SANDBOX_WAIT_S:g}s: {last}")


@pytest.fixture(scope="module", autouse=True)
def sandbox_up() -> None:
    _wait_for_sandbox()


async def _read_message(reader: asyncio.StreamReader) -> dict[str, str]:
    message: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode()
        if not line:
            raise ConnectionError("AMI closed")
        line = line.rstrip("\r\n")
        if not line:
            if message:
                return message
            continue
        key, _, value = line.partition(": ")
        message[key] = value


async def originate(context: str, exten: str, variables: dict[str, str]) -> None:
    """AMI Login + async Originate of PJSIP/5001@self-trunk into context/exten."""
    reader, writer = await asyncio.open_connection(*AMI)
    try:
        banner = await reader.readline()
        assert banner.startswith(b"Asterisk Call Manager/"), banner
        writer.write(
            b"Action: Login\r\nUsername: engine\r\nSecret: enginesecret\r\n"
            b"ActionID: login-1\r\n\r\n"
        )
        action_id = f"orig-{uuid.uuid4().hex[:8]}"
        lines = [
            "Action: Originate",
            "Channel: PJSIP/5001@self-trunk",
            f"Context: {context}",
            f"Exten: {exten}",
            "Priority: 1",
            "Async: true",
            "Timeout: 15000",
            f"ActionID: {action_id}",
            *(f"Variable: {k}={v}" for k, v in variables.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        while True:
            msg = await asyncio.wait_for(_read_message(reader), 20)
            if msg.get("ActionID") == "login-1" and "Response" in msg:
                assert msg["Response"] == "Success", msg
            if msg.get("ActionID") == action_id and "Response" in msg:
                assert msg["Response"] == "Success", msg
                return
    finally:
        writer.close()


async def run_call(
    handler: Callable[[CallSession], Awaitable[None]],
    *,
    context: str = "engine-ivr",
    port: int = 0,
) -> None:
    """Serve one call on a FastAgiServer while originating into ``context``."""
    finished = asyncio.Event()

    async def wrapped(session: CallSession) -> None:
        try:
            await handler(session)
        finally:
            finished.set()

    async with FastAgiServer("127.0.0.1", port, wrapped) as server:
        if context == "engine-ivr":
            # engine-ivr builds agi://${ENGINE_AGI_HOST}:${ENGINE_AGI_PORT}/ivr?flow=...,
            # so an ephemeral port keeps this test independent of anything else on :4573.
            variables = {"ENGINE_AGI_PORT": str(server.port), "ENGINE_IVR_FLOW": "main"}
            await originate("engine-ivr", "s", variables)
        else:
            await originate(context, "agi", {})
        await asyncio.wait_for(finished.wait(), 30)


async def test_collects_dtmf_from_the_far_end() -> None:
    seen: dict[str, object] = {}

    async def handler(session: CallSession) -> None:
        seen["call_id"] = session.call_id
        seen["flow"] = session.variables.get("flow")
        await session.answer()
        # The far end starts sending 1234# one second after answering.
        seen["digits"] = await session.get_digits("", 8, 5.0)
        await session.set_var("CHOICE", "2")
        seen["choice"] = await session.get_var("CHOICE")

    await run_call(handler)
    assert seen["digits"] == "1234"
    assert seen["flow"] == "main"
    assert seen["choice"] == "2"
    assert isinstance(seen["call_id"], str) and seen["call_id"]


async def test_get_data_with_prompt_in_the_customers_context() -> None:
    # customers,agi runs the fixed URL agi://127.0.0.1:4573/ivr, so this one needs :4573.
    seen: dict[str, object] = {}

    async def handler(session: CallSession) -> None:
        seen["script"] = session.variables.get("agi_network_script")
        await session.answer()
        seen["digits"] = await session.get_digits("beep", 4, 5.0)

    deadline = time.monotonic() + 120
    while True:
        try:
            await run_call(handler, context="customers", port=4573)
            break
        except OSError as err:  # another test run holds :4573; wait for it
            if err.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    assert seen == {"script": "ivr", "digits": "1234"}


async def test_far_end_hangup_raises_and_missing_prompt_does_not() -> None:
    events: list[str] = []

    async def handler(session: CallSession) -> None:
        try:
            await session.play("no-such-prompt-file")
        except ActionFailed:
            events.append("missing-prompt-failed")
        # Wait longer than the far end stays on the line (it hangs up ~5 s after answer).
        try:
            while True:
                await session.get_digits("", 1, 10.0)
        except HangupDuringSession:
            events.append("hangup")
        # Allowed on a dead channel by Asterisk.
        events.append(f"uniqueid={await session.get_var('UNIQUEID')}")
        events.append(f"call_id={session.call_id}")

    await run_call(handler)
    assert events[:2] == ["missing-prompt-failed", "hangup"]
    assert events[2].removeprefix("uniqueid=") == events[3].removeprefix("call_id=")
