"""Answering-machine detection: Amd() gives one AmdResult in app_amd's terms on both switches,
and the call then stays up until the engine acts (docs/amd.md)."""

from __future__ import annotations

from engine.pbx.base import Amd, AmdResult, HungUp, OriginateRequest
from tests.contract.drivers import DriverUnderTest

#: Ring (~1 s) plus the longest analysis (total_analysis_time 5 s) plus margin.
RESULT_S = 20.0
FINAL_S = 30.0


async def test_amd_on_a_machine_reports_once_then_holds_the_call(
    dut: DriverUnderTest, call_id: str
) -> None:
    await dut.driver.originate(
        OriginateRequest(call_id=call_id, target=dut.target("machine"), then=Amd(), timeout_s=10)
    )
    result = await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, AmdResult | HungUp), "AmdResult", RESULT_S
    )
    assert isinstance(result, AmdResult), result
    assert result.status == "MACHINE"
    # app_amd's cause strings on both switches: the greeting is long, or has too many words.
    assert result.cause.startswith(("LONGGREETING-", "MAXWORDS-")), result.cause
    # Held, not hung up, after the result: the engine decides what happens next.
    await dut.driver.hangup(call_id)
    await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, HungUp), "HungUp", FINAL_S
    )
    results = [e for e in dut.log.of(call_id) if isinstance(e, AmdResult)]
    assert [(e.status, e.cause) for e in results] == [(result.status, result.cause)]
