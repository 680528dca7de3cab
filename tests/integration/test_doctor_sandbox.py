"""``engine doctor``'s switch checks against the real Asterisk 22 sandbox (read-only: Login,
Filter on its own session, ListCommands, Ping, Logoff)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from engine.core.config import AsteriskSwitch
from engine.doctor import probes
from engine.doctor.verdicts import Status
from tests.integration import sandbox

pytestmark = pytest.mark.asterisk


async def test_the_sandbox_engine_user_passes_every_switch_check() -> None:
    assert sandbox.status(), "the Asterisk sandbox must be running"
    switch = AsteriskSwitch(
        kind="asterisk",
        name="asterisk-1",
        host="127.0.0.1",
        port=5038,
        username="engine",
        secret=SecretStr("enginesecret"),
    )
    findings = await probes.asterisk(switch, 5.0)
    assert {f.check: f.status for f in findings} == {
        "switch asterisk-1: AMI login": Status.OK,
        "switch asterisk-1: event filters": Status.OK,
        "switch asterisk-1: AMI permissions": Status.OK,
        # Same host, same clock: only the round trip separates them.
        "switch asterisk-1: clock": Status.OK,
    }, [f.line() for f in findings]
    wrong = AsteriskSwitch(
        kind="asterisk",
        name="asterisk-1",
        host="127.0.0.1",
        port=5038,
        username="engine",
        secret=SecretStr("not-the-secret"),
    )
    (refused,) = await probes.asterisk(wrong, 5.0)
    assert refused.status is Status.FAIL, refused.line()
