"""The Asterisk 22 sandbox is what the engine's Asterisk driver is tested against, so these tests
pin down the facts the driver relies on: AMI credentials, the trunks, qualify, and the loopback
carrier's number plan (see docs/asterisk-sandbox.md).

They need a running sandbox (`scripts/asterisk-sandbox start`, done by `make test`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest

from tests.integration import sandbox
from tests.integration.sandbox import AmiMessage, RawAmi

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module", autouse=True)
def _sandbox_running() -> None:
    # Fail (not skip) with a clear reason: `make test` starts the sandbox, so a dead one is a bug.
    assert sandbox.ami_reachable(), (
        f"no AMI on {sandbox.AMI_HOST}:{sandbox.AMI_PORT}; run 'scripts/asterisk-sandbox start'"
    )


async def _logged_in() -> RawAmi:
    ami = await RawAmi.connect()
    response = await ami.login()
    assert response.response == "Success", response.headers
    return ami


async def _originate(ami: RawAmi, channel: str, context: str, exten: str) -> str:
    """Async Originate with our own ChannelId; returns that id (the channel's Uniqueid)."""
    channel_id = str(uuid.uuid4())
    await ami.send(
        "Originate",
        ActionID=f"orig-{channel_id}",
        Channel=channel,
        Context=context,
        Exten=exten,
        Priority="1",
        Async="true",
        Timeout="15000",
        ChannelId=channel_id,
    )
    return channel_id


def _is_hangup_of(channel_id: str) -> Callable[[AmiMessage], bool]:
    def match(m: AmiMessage) -> bool:
        return m.event == "Hangup" and m.get("Uniqueid") == channel_id

    return match


def _is_originate_response(channel_id: str) -> Callable[[AmiMessage], bool]:
    def match(m: AmiMessage) -> bool:
        return m.event == "OriginateResponse" and m.get("ActionID") == f"orig-{channel_id}"

    return match


async def test_ami_accepts_engine_credentials_and_reports_fully_booted() -> None:
    ami = await RawAmi.connect()
    try:
        assert ami.banner.startswith("Asterisk Call Manager/")
        response = await ami.login()
        assert response.response == "Success"
        assert response.get("Message") == "Authentication accepted"
        # Asterisk sends FullyBooted to each new session once startup is complete.
        booted, _ = await ami.read_until(lambda m: m.event == "FullyBooted")
        assert booted.get("Status") == "Fully Booted"
    finally:
        await ami.close()


async def test_ami_rejects_a_wrong_password() -> None:
    ami = await RawAmi.connect()
    try:
        response = await ami.login(secret="not-the-secret", action_id="bad-login")
        assert response.response == "Error"
        assert response.get("Message") == "Authentication failed"
    finally:
        await ami.close()


def test_pjsip_trunks_are_configured() -> None:
    out = sandbox.rx("pjsip show endpoints")
    for endpoint in ("self-trunk", "dead-trunk", "congested-trunk"):
        assert re.search(rf"^\s*Endpoint:\s+{endpoint}\s", out, re.M), f"{endpoint} missing:\n{out}"
    contacts = sandbox.rx("pjsip show contacts")
    assert "self-trunk/sip:127.0.0.1:5060" in contacts
    assert "dead-trunk/sip:127.0.0.1:5099" in contacts
    assert "congested-trunk/sip:127.0.0.1:5062" in contacts
    # Port-qualified identify: the two loopback carriers are told apart by source port.
    assert "Match: 127.0.0.1:5060/32" in out
    assert "Match: 127.0.0.1:5062/32" in out


def _contact_status(aor_contact: str) -> str | None:
    for line in sandbox.rx("pjsip show contacts").splitlines():
        fields = line.split()
        # "Contact:  dead-trunk/sip:127.0.0.1:5099   ec2ac809ed Unavail  -nan"
        if len(fields) >= 4 and fields[0] == "Contact:" and fields[1] == aor_contact:
            return fields[3]
    return None


def test_dead_trunk_becomes_unavailable_by_qualify_and_self_trunk_stays_available() -> None:
    # qualify_frequency=5 + qualify_timeout=2: within a few cycles after (re)start at the latest.
    assert sandbox.wait_until(
        lambda: _contact_status("dead-trunk/sip:127.0.0.1:5099") == "Unavail", timeout=30
    ), sandbox.rx("pjsip show contacts")
    endpoint = sandbox.rx("pjsip show endpoint dead-trunk")
    assert re.search(r"Endpoint:\s+dead-trunk\s+Unavailable", endpoint), endpoint
    assert sandbox.wait_until(
        lambda: _contact_status("self-trunk/sip:127.0.0.1:5060") == "Avail", timeout=30
    ), sandbox.rx("pjsip show contacts")


async def test_busy_number_hangs_up_with_cause_17_on_our_channel_id() -> None:
    ami = await _logged_in()
    try:
        channel_id = await _originate(ami, "PJSIP/2001@self-trunk", "customers", "s")
        hangup, _ = await ami.read_until(_is_hangup_of(channel_id), within=20)
        assert hangup.get("Cause") == "17"
        assert hangup.get("TechCause") == "486"
        assert (hangup.get("Channel") or "").startswith("PJSIP/self-trunk-")
    finally:
        await ami.close()


async def test_5xxx_far_end_sends_dtmf_1234_hash() -> None:
    ami = await _logged_in()
    try:
        channel_id = await _originate(ami, "PJSIP/5001@self-trunk", "engine-park", "s")
        _, seen = await ami.read_until(_is_hangup_of(channel_id), within=30)
        digits = "".join(
            m.get("Digit") or ""
            for m in seen
            if m.event == "DTMFEnd"
            and m.get("Uniqueid") == channel_id
            and m.get("Direction") == "Received"
        )
        assert digits == "1234#"
    finally:
        await ami.close()


async def test_congested_trunk_rejects_with_503_until_repaired() -> None:
    ami = await _logged_in()
    try:
        sandbox.set_congested_mode("503")
        channel_id = await _originate(ami, "PJSIP/5001@congested-trunk", "engine-park", "s")
        hangup, _ = await ami.read_until(_is_hangup_of(channel_id), within=20)
        assert (hangup.get("Cause"), hangup.get("TechCause")) == ("34", "503")

        sandbox.set_congested_mode("answer")
        channel_id = await _originate(ami, "PJSIP/5001@congested-trunk", "engine-park", "s")
        response, _ = await ami.read_until(_is_originate_response(channel_id), within=20)
        assert response.response == "Success"
        assert response.get("Reason") == "4"  # 4 = answered
        assert response.get("Uniqueid") == channel_id
        # The 5XXX far end hangs up by itself after its DTMF; wait so no call is left behind.
        hangup, _ = await ami.read_until(_is_hangup_of(channel_id), within=30)
        assert hangup.get("Cause") == "16"
    finally:
        sandbox.set_congested_mode("503")
        await ami.close()
