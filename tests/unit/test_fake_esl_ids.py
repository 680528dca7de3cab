"""The fake FreeSWITCH keeps every leg's uuid as it was given, whatever digits it holds.

The fake turns a recorded call into ours by substitutions: the recorded uuids become our
legs' uuids, the recorded dialled number and caller id become ours. A recorded number is
matched as a run of digits, and a uuid is hex: ``46f3baa9-3e56-4ae8-96c3-dec2b5550001``
ends in the 69XXX recording's caller id 5550001. When the number substitution ran over the
text the uuid substitution had just put in, the call's events named
``...-dec2b0000000000``, a leg the engine never placed, and its call stayed ``dialing``
(the full-suite failure of tests/api/test_recordings_freeswitch.py on 2026-12-05: that call
id). FreeSWITCH never rewrites an origination_uuid (every transcript: the events name the
uuid the originate gave), so neither may the fake.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from engine.pbx import base
from tests.fakes import fake_esl
from tests.fakes.fake_esl import SCENARIOS, FakeFreeSwitch, OutboundLeg, _Call
from tests.fs_driver_harness import Harness, driver_on_fake


@pytest.fixture
async def rig() -> AsyncIterator[Harness]:
    async with driver_on_fake() as harness:
        yield harness


@pytest.mark.parametrize(
    ("number", "call_id"),
    [
        # 69XXX (unicast-l16-g722.esl): the call id of the failure, which ends in the
        # recording's caller id 5550001, and one holding its dialled number 69067.
        ("69001", "46f3baa9-3e56-4ae8-96c3-dec2b5550001"),
        ("69001", "a1b2c3d4-e5f6-4a7b-8c9d-e69067f1a2b3"),
        # 61XXX through the gateway (originate-answered-engine-hangup.esl, number 61026).
        ("61234", "0f1e2d3c-4b5a-4697-a8b9-c61026d7e8f9"),
    ],
)
async def test_our_leg_keeps_its_uuid(rig: Harness, number: str, call_id: str) -> None:
    await rig.driver.originate(
        base.OriginateRequest(
            call_id, base.DialTarget("trunk", "carrier", number), base.Park(), timeout_s=10
        )
    )
    await rig.wait(base.Answered, call_id)
    assert call_id in rig.fs.channels
    await rig.driver.hangup(call_id)  # uuid_kill finds the leg by the uuid we gave
    await rig.wait(base.HungUp, call_id)


async def test_the_far_end_leg_keeps_its_uuid(
    rig: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The far end's uuid is the fake's own uuid4(): one holding the dialled number 69067.
    far = uuid.UUID("b0c1d2e3-f4a5-4b6c-9d7e-f69067a1b2c3")
    monkeypatch.setattr(fake_esl, "uuidlib", SimpleNamespace(uuid4=lambda: far))
    call_id = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
    await rig.driver.originate(
        base.OriginateRequest(
            call_id, base.DialTarget("trunk", "carrier", "69001"), base.Park(), timeout_s=10
        )
    )
    await rig.wait(base.Answered, str(far))
    assert rig.fs.channels[call_id].peer == str(far)


def test_an_outbound_session_names_the_leg_it_was_given() -> None:
    # 67XXX: the outbound-socket recording dialled 67001; our leg's uuid holds it.
    fs = FakeFreeSwitch()
    uid = "c3b2a190-8f7e-4d6c-9b5a-a67001e2d3c4"
    call = _Call(fs, SCENARIOS["67"], "67123", uid, "job", "originate", {}, ["&park()"])
    leg = OutboundLeg(fs, call, uid)
    assert leg.ev("CHANNEL_EXECUTE").uid == uid
    assert dict(leg.connect_pairs())["Unique-ID"] == uid
