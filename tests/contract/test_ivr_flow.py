"""A branching IVR flow (menu by DTMF, webhook, condition, set) run by the real
IvrRuntime on both switches' CallSession (FastAGI on Asterisk, the outbound
socket on FreeSWITCH): the flow language needs nothing a session lacks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.ivr.ports import RunResult
from engine.ivr.runtime import IvrRuntime
from engine.ivr.tester import CannedWebhooks
from engine.pbx.base import CallSession, IvrTarget, OriginateRequest
from tests.contract.drivers import DriverUnderTest

SESSION_S = 30.0
FLOW = """\
name: contract-menu
variables: {tier: ""}
steps:
  - answer
  - id: menu
    menu:
      say: "Enter your four digit code."
      options:
        - {dtmf: "1234", goto: known}
        - {dtmf: "9999", goto: other}
      retries: 0
      timeout_s: 5
      on_invalid: other
      on_timeout: other
      into: choice
  - id: other
    hangup:
  - id: known
    webhook: {url: "http://crm.test/tier", map: {tier: customer.tier}, on_error: other}
  - if: tier == "gold"
    then: gold
    else: other
  - id: gold
    set: {result: "code {choice} is {tier}"}
  - hangup
"""


class SwitchPrompt:
    """TTS stand-in: every `say` plays the switch's own silent prompt (a contract
    quirk), so the suite needs no rendered files on either switch."""

    engine = "none"

    def __init__(self, prompt: str) -> None:
        self._prompt = prompt

    def voices(self) -> frozenset[str]:
        return frozenset({"en"})

    def render_sync(self, text: str, voice: str) -> Path:
        return Path(text)

    async def render(self, text: str, voice: str) -> Path:
        return Path(text)

    def prompt_name(self, path: Path) -> str:
        return self._prompt


async def test_a_branching_flow_runs_on_the_session(
    dut: DriverUnderTest, call_id: str, tmp_path: Path
) -> None:
    (tmp_path / "contract-menu.yaml").write_text(FLOW)
    hooks = CannedWebhooks({"http://crm.test/tier": '{"customer": {"tier": "gold"}}'})
    runtime = IvrRuntime(
        tmp_path,
        tts=SwitchPrompt(dut.quirk("gather.prompt")),
        webhooks=hooks,
        secrets={"ENGINE_IVR_WEBHOOK_SECRET": "contract"},
    )
    assert runtime.load() == []
    target = dut.target("dtmf")  # the far end presses 1234# once the gather runs
    dut.set_far_end_digits(target, "1234#")
    results: list[RunResult] = []
    done = asyncio.Event()

    async def handler(session: CallSession) -> None:
        try:
            results.append(await runtime.run(session))
        finally:
            done.set()

    dut.on_ivr(call_id, handler)
    await dut.driver.originate(
        OriginateRequest(
            call_id=call_id, target=target, then=IvrTarget("contract-menu"), timeout_s=10
        )
    )
    await asyncio.wait_for(done.wait(), SESSION_S)
    (result,) = results
    assert [p.split(":", 1)[1] for p in result.path] == [
        "answer@0",
        "menu",
        "known",
        "if@4",
        "gold",
        "hangup@6",
    ], result
    assert result.variables["result"] == "code 1234 is gold"
    assert [r.url for r in hooks.sent] == ["http://crm.test/tier"]
