"""The flow language's load-time checks and its steps at run time (scripted session)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.ivr.loader import FlowError, parse_flow
from engine.ivr.model import Condition, Menu, Transfer
from engine.ivr.ports import TransferRequest
from engine.ivr.queueing import QueueCatalog
from engine.ivr.runtime import IvrRuntime
from engine.ivr.tester import (
    RecordingCalls,
    RecordingQueues,
    Script,
    ScriptedSession,
    ScriptedSpeech,
    TextSpeaker,
    parse_input,
)
from engine.ivr.webhook import HttpWebhookClient, verify


def load(text: str) -> Any:
    return parse_flow(text, "ivr/x.yaml")


# ------------------------------------------------------------------ load time


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        (
            "  - say: 'hi {nme}'\n",
            3,
            "unknown variable 'nme': no step sets it",
        ),
        (
            "  - if: score > 0.5\n    then: nowhere\n  - hangup\n",
            4,
            "steps[0].if.then: no step has id 'nowhere'",
        ),
        (
            "  - hangup\n  - say: never\n",
            4,
            "steps[1]: unreachable",
        ),
        (
            "  - id: top\n    set: {a: x}\n  - goto: top\n",
            3,
            "a loop that never waits for the caller (lines 3, 5)",
        ),
        (
            "  - if: 'score = 1'\n    then: x\n  - id: x\n    hangup:\n",
            3,
            "steps[0].if: unexpected character '='",
        ),
        (
            "  - id: a\n    answer:\n  - id: a\n    hangup:\n",
            5,
            "steps[1].id: 'a' already names steps[0]",
        ),
        (
            "  - transfer: {number: '123;x', trunk_group: g}\n",
            3,
            "steps[0].transfer.number: expected digits",
        ),
        (
            "  - transfer: {number: '{score}'}\n",
            3,
            "steps[0].transfer.trunk_group: required with number:",
        ),
        (
            "  - transfer: {dialplan: {context: 'a,b', exten: s}}\n",
            3,
            "steps[0].transfer.dialplan.context: expected a context name",
        ),
        (
            "  - webhook: {url: 'ftp://x/y'}\n",
            3,
            "steps[0].webhook.url: expected an http:// or https:// URL",
        ),
        (
            "  - split: {name: t, variants: {a: {share: 60, goto: x}, b: {share: 30, goto: x}}}\n"
            "  - id: x\n    hangup:\n",
            3,
            "adding up to 100 (got 90)",
        ),
        (
            "  - menu: {say: hi, options: [{dtmf: '1', goto: x}, {dtmf: '1', goto: x}]}\n"
            "  - id: x\n    hangup:\n",
            3,
            "key '1' used twice",
        ),
        (
            "  - gather: {into: pin, min_digits: 5, max_digits: 4}\n",
            3,
            "min_digits: more than max_digits",
        ),
    ],
)
def test_bad_flows_name_file_and_line(body: str, line: int, fragment: str) -> None:
    text = "name: x\nsteps:\n" + body
    with pytest.raises(FlowError) as info:
        parse_flow(text, "ivr/x.yaml")
    assert str(info.value).startswith(f"ivr/x.yaml:{line}: "), str(info.value)
    assert fragment in str(info.value)


def test_a_loop_through_a_menu_is_a_retry_not_a_spin() -> None:
    flow = load(
        "name: x\nsteps:\n"
        "  - id: top\n    menu: {say: hi, options: [{dtmf: '1', goto: top}], on_invalid: end,"
        " on_timeout: end}\n"
        "  - id: end\n    hangup:\n"
    )
    assert isinstance(flow.steps[0], Menu)


def test_declared_and_built_in_variables_are_known() -> None:
    flow = load(
        "name: x\nvariables: {customer.level: 0}\nsteps:\n"
        "  - if: customer.level > 1 and emotion.anger > 0.8 and intent == 'billing'\n"
        "    then: x\n  - id: x\n    say: 'call {call.id} from {caller.number}'\n"
    )
    assert isinstance(flow.steps[0], Condition)
    assert flow.defaults == {"customer.level": 0}


# ------------------------------------------------------------------ run time


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def publish(self, data: Mapping[str, Any]) -> None:
        self.events.append(dict(data))


def runtime_for(tmp_path: Path, text: str, script: Script, **kw: Any) -> IvrRuntime:
    d = tmp_path / "ivr"
    d.mkdir(exist_ok=True)
    (d / "x.yaml").write_text(text, encoding="utf-8")
    rt = IvrRuntime(
        d, kw.pop("stream", None), tts=TextSpeaker(), speech=ScriptedSpeech(script), **kw
    )
    assert rt.load() == []
    return rt


async def test_a_number_from_a_variable_is_checked_before_any_dial(tmp_path: Path) -> None:
    script = Script([])
    calls = RecordingCalls()
    flow = (
        "name: x\nvariables: {target: ''}\nsteps:\n"
        "  - transfer: {number: '{target}', trunk_group: out, on_error: bad}\n"
        "  - id: bad\n    say: 'refused'\n"
    )
    rt = runtime_for(tmp_path, flow, script, calls=calls)
    session = ScriptedSession(script, "c1", {})
    result = await rt.run(session, "x", {"target": "5551234&SIP/evil"})
    assert calls.transfers == []
    assert "not a number to dial" in str(result.variables["transfer_error"])
    result = await rt.run(session, "x", {"target": "+15551234"})
    assert result.end == "transferred"
    assert calls.transfers == [
        TransferRequest(leg="c1", flow="x", number="+15551234", trunk_group="out")
    ]
    assert isinstance(rt.flows["x"].steps[0], Transfer)


async def test_split_is_stable_per_call_shares_hold_and_the_call_is_annotated(
    tmp_path: Path,
) -> None:
    calls = RecordingCalls()
    sink = Sink()
    flow = (
        "name: x\nsteps:\n"
        "  - split: {name: greet, variants: {a: {share: 30, goto: a}, b: {share: 70, goto: b}}}\n"
        "  - id: a\n    hangup:\n  - id: b\n    hangup:\n"
    )
    script = Script([])
    rt = runtime_for(tmp_path, flow, script, calls=calls, stream=sink)
    seen = []
    for i in range(1000):
        result = await rt.run(ScriptedSession(script, f"call-{i}", {}), "x")
        seen.append(result.variables["split.greet"])
    share_a = seen.count("a") / len(seen)
    assert 0.25 < share_a < 0.35
    again = await rt.run(ScriptedSession(script, "call-7", {}), "x")
    assert again.variables["split.greet"] == seen[7]
    assert calls.notes == {"ivr_split.greet": seen[-1]}
    split_events = [e for e in sink.events if e["type"] == "IvrSplit"]
    assert len(split_events) == 1001 and split_events[0]["test"] == "greet"


async def test_gather_branches_on_too_few_digits_and_on_silence(tmp_path: Path) -> None:
    flow = (
        "name: x\nsteps:\n"
        "  - id: ask\n    gather: {into: pin, min_digits: 4, max_digits: 6,"
        " on_invalid: short, on_timeout: quiet}\n"
        "  - id: ok\n    hangup:\n  - id: short\n    hangup:\n  - id: quiet\n    hangup:\n"
    )
    for given, end in (("dtmf:1234#", "ok"), ("dtmf:12#", "short"), ("silence", "quiet")):
        script = Script([parse_input(given)])
        rt = runtime_for(tmp_path, flow, script)
        result = await rt.run(ScriptedSession(script, "c", {}), "x")
        assert result.path[-1] == f"x:{end}", given


async def test_goto_another_flow_runs_it_and_keeps_the_variables(tmp_path: Path) -> None:
    d = tmp_path / "ivr"
    d.mkdir()
    (d / "a.yaml").write_text(
        "name: a\nsteps:\n  - set: {who: ada}\n  - goto: {flow: b, node: hi}\n"
    )
    (d / "b.yaml").write_text(
        "name: b\nvariables: {who: ''}\nsteps:\n  - hangup\n  - id: hi\n    say: 'hi {who}'\n"
        "  - hangup\n"
    )
    script = Script([])
    rt = IvrRuntime(d, tts=TextSpeaker(), speech=ScriptedSpeech(script))
    assert rt.load() == []
    result = await rt.run(ScriptedSession(script, "c", {}), "a")
    assert result.path == ["a:set@0", "a:goto@1", "b:hi", "b:hangup@2"]
    assert result.prompts == ["say[en]: hi ada"]


async def test_goto_a_missing_flow_is_refused_at_load_and_the_old_version_kept(
    tmp_path: Path,
) -> None:
    d = tmp_path / "ivr"
    d.mkdir()
    (d / "a.yaml").write_text("name: a\nsteps:\n  - hangup\n")
    rt = IvrRuntime(d, tts=TextSpeaker())
    assert rt.load() == []
    (d / "a.yaml").write_text("name: a\nsteps:\n  - goto: {flow: nope}\n")
    errors = rt.load()
    assert [str(e) for e in errors] == [f"{d / 'a.yaml'}:3: goto: no flow named 'nope'"]
    assert str(rt.flows["a"].steps[0]) == "Hangup(line=3, label='')"


# ------------------------------------------------------------------ webhook, for real


async def test_webhook_is_signed_maps_json_and_falls_back_on_timeout(
    tmp_path: Path,
) -> None:
    seen: list[tuple[str, bool, dict[str, Any]]] = []

    async def score(request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify("s3cret", request.headers, request.method, str(request.url), body)
        seen.append((request.method, ok, json.loads(body)))
        return web.json_response({"customer": {"level": 0.82, "name": "王芳"}, "tags": ["a"]})

    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()  # answers only after the test: the client's timeout ends it
        return web.Response()

    app = web.Application()
    app.router.add_post("/score", score)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    flow = (
        "name: x\nvariables: {level: 0, name: ''}\nsteps:\n"
        f"  - webhook: {{url: '{base}/score', body: {{who: '{{caller.number}}'}},"
        " map: {level: customer.level, name: customer.name}, on_error: failed}\n"
        "  - if: level > 0.8\n    then: high\n  - id: low\n    hangup:\n"
        "  - id: high\n"
        f"    webhook: {{url: '{base}/slow', method: GET, timeout_s: 0.3, on_error: failed}}\n"
        "  - id: after\n    hangup:\n"
        "  - id: failed\n    hangup:\n"
    )
    script = Script([])
    client = HttpWebhookClient()
    rt = runtime_for(
        tmp_path, flow, script, webhooks=client, secrets={"ENGINE_IVR_WEBHOOK_SECRET": "s3cret"}
    )
    try:
        result = await rt.run(ScriptedSession(script, "c9", {"agi_callerid": "555"}), "x")
    finally:
        release.set()
        await client.close()
        await runner.cleanup()
    assert seen == [("POST", True, {"call_id": "c9", "flow": "x", "who": "555"})]
    assert result.variables["level"] == 0.82 and result.variables["name"] == "王芳"
    assert [p.split(":")[1] for p in result.path] == ["webhook@0", "if@1", "high", "failed"]
    assert "no reply within 0.3s" in str(result.variables["webhook.error"])


async def test_without_a_secret_no_request_is_sent(tmp_path: Path) -> None:
    from engine.ivr.tester import CannedWebhooks

    canned = CannedWebhooks({"http://crm/x": "{}"})
    flow = (
        "name: x\nsteps:\n  - webhook: {url: 'http://crm/x', on_error: f}\n  - id: f\n    hangup:\n"
    )
    script = Script([])
    rt = runtime_for(tmp_path, flow, script, webhooks=canned, secrets={})
    result = await rt.run(ScriptedSession(script, "c", {}), "x")
    assert canned.sent == []
    assert result.variables["webhook.error"] == "no signing secret: set ENGINE_IVR_WEBHOOK_SECRET"


async def test_queue_takes_the_classified_intent_and_a_named_priority(tmp_path: Path) -> None:
    queues = RecordingQueues(
        QueueCatalog(queues=frozenset({"sales"}), intents={"pre_sale": "sales", "billing": "sales"})
    )
    flow = (
        "name: x\nsteps:\n  - gather: {into: said, input: speech}\n"
        "  - queue: {intent: {from: intent, default: pre_sale}, priority: high}\n"
    )
    script = Script([parse_input("speech:I was charged twice, I want a refund")])
    rt = runtime_for(tmp_path, flow, script, queues=queues)
    result = await rt.run(ScriptedSession(script, "c", {}), "x")
    assert result.end == "queued"
    assert [(q.intent, q.priority) for q in queues.requests] == [("billing", 9)]


async def test_values_reach_the_channel_as_one_bounded_line(tmp_path: Path) -> None:
    from engine.ivr.tester import CannedWebhooks

    note = {"note": "line one\nline two\r" + "x" * 5000}
    canned = CannedWebhooks({"http://crm/x": json.dumps(note)})
    flow = (
        "name: x\nvariables: {note: ''}\nsteps:\n"
        "  - webhook: {url: 'http://crm/x', map: {note: note}}\n"
    )
    script = Script([])
    rt = runtime_for(
        tmp_path, flow, script, webhooks=canned, secrets={"ENGINE_IVR_WEBHOOK_SECRET": "k"}
    )
    session = ScriptedSession(script, "c", {})
    result = await rt.run(session, "x")
    assert result.variables["note"] == note["note"]  # the flow keeps the value as it came
    on_channel = session.channel_vars["note"]
    assert on_channel.startswith("line one line two ") and len(on_channel) == 1024
