"""IVR gather through the CallSession façade (FastAGI on Asterisk, outbound socket on
FreeSWITCH), reached by originating with an IvrTarget."""

from __future__ import annotations

import asyncio

from engine.pbx.base import CallSession, HungUp, IvrTarget, OriginateRequest
from tests.contract.drivers import DriverUnderTest

SESSION_S = 30.0


async def test_ivr_gather_gets_what_the_far_end_sent(dut: DriverUnderTest, call_id: str) -> None:
    target = dut.target("dtmf")  # the far end presses 1234# once the gather runs
    dut.set_far_end_digits(target, "1234#")
    seen: dict[str, object] = {}
    done = asyncio.Event()

    async def handler(session: CallSession) -> None:
        try:
            seen["call_id"] = session.call_id
            seen["flow"] = session.variables.get("flow")
            await session.answer()
            seen["digits"] = await session.get_digits(
                dut.quirk("gather.prompt"), max_digits=8, timeout_s=5.0, terminators="#"
            )
            await session.hangup()
        finally:
            done.set()

    dut.on_ivr(call_id, handler)
    await dut.driver.originate(
        OriginateRequest(
            call_id=call_id, target=target, then=IvrTarget("contract-gather"), timeout_s=10
        )
    )
    await asyncio.wait_for(done.wait(), SESSION_S)
    assert dut.ivr_unrouted == [], "a session arrived with a call id we did not choose"
    # The session is the leg we placed, under the id we chose, running the flow we named.
    assert seen["call_id"] == call_id
    assert seen["flow"] == "contract-gather"
    # The terminator ends the gather and is not part of the result.
    assert seen["digits"] == "1234"
    final = await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, HungUp), "HungUp", SESSION_S
    )
    assert isinstance(final, HungUp) and final.cause == 16
