"""Offline flow tester: run a flow with no switch, scripted caller input and canned
webhook replies, and report the path taken, the prompts and the variables.

``python -m engine ivr test FLOW --input dtmf:1 --input speech:"sales" --webhook URL=FILE.json``
runs one call; ``python -m engine ivr tests`` runs the expected paths in
``ivr/tests/*.yaml`` (docs/ivr.md "Testing flows"). The runtime is the real one:
only the ports (engine/ivr/ports.py) and the session are scripted.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from engine.ivr.expr import Value, to_text
from engine.ivr.loader import yaml_problem
from engine.ivr.ports import (
    Heard,
    ListenRequest,
    RunResult,
    TransferRequest,
    WebhookError,
    WebhookReply,
    WebhookRequest,
)
from engine.ivr.queueing import QueueCatalog, QueueRequest, QueueTicket
from engine.ivr.runtime import IvrRuntime
from engine.pbx.base import CallSession
from engine.speech.espeak import EspeakNg
from engine.speech.settings import TtsSettings

__all__ = ["Script", "TestCase", "load_cases", "parse_input", "run_case", "simulate"]


@dataclass(frozen=True, slots=True)
class Input:
    kind: str  # dtmf | speech | silence
    value: str = ""
    confidence: float = 1.0


def parse_input(text: str) -> Input:
    """``dtmf:123``, ``speech:sales`` (``speech:sales@0.4`` sets the confidence), ``silence``."""
    kind, _, value = text.partition(":")
    if kind == "silence" and not value:
        return Input("silence")
    if kind == "dtmf" and value and all(ch in "0123456789*#ABCD" for ch in value):
        return Input("dtmf", value)
    if kind == "speech" and value:
        confidence = 1.0
        head, at, tail = value.rpartition("@")
        if at:
            try:
                confidence = float(tail)
                value = head
            except ValueError:
                pass
        return Input("speech", value, confidence)
    raise ValueError(
        f"input {text!r}: expected dtmf:<keys>, speech:<words>[@confidence] or silence"
    )


class Script:
    """The caller's inputs, consumed in order by both the session and the speech port."""

    def __init__(self, inputs: Sequence[Input]) -> None:
        self._todo = list(inputs)
        self.notes: list[str] = []

    def next(self) -> Input | None:
        return self._todo.pop(0) if self._todo else None

    @property
    def left(self) -> list[Input]:
        return list(self._todo)


class ScriptedSession:
    """A :class:`CallSession` with no switch: prompts are logged, keys come from the script."""

    def __init__(self, script: Script, call_id: str, variables: Mapping[str, str]) -> None:
        self._script = script
        self._call_id = call_id
        self._vars = MappingProxyType(dict(variables))
        self.channel_vars: dict[str, str] = {}
        self.log: list[str] = []

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def variables(self) -> Mapping[str, str]:
        return self._vars

    async def answer(self) -> None:
        self.log.append("answer")

    async def play(self, prompt: str) -> None:
        self.log.append(f"play {prompt}")

    async def get_digits(
        self, prompt: str, max_digits: int, timeout_s: float, terminators: str = "#"
    ) -> str:
        item = self._script.next()
        if item is None or item.kind == "silence":
            return ""
        if item.kind == "speech":
            self._script.notes.append(
                f"speech {item.value!r} given to a step that only takes keys: heard as silence"
            )
            return ""
        digits = ""
        for ch in item.value:
            if ch in terminators:
                break
            digits += ch
        return digits[:max_digits]

    async def get_var(self, name: str) -> str | None:
        return self.channel_vars.get(name)

    async def set_var(self, name: str, value: str) -> None:
        self.channel_vars[name] = value

    async def record(self, path: str, max_s: float, silence_s: float = 0) -> None:
        self.log.append(f"record {path}")

    async def hangup(self) -> None:
        self.log.append("hangup")


class ScriptedSpeech:
    """The :class:`SpeechInput` port fed by the script (what an ASR plugin would hear)."""

    def __init__(self, script: Script) -> None:
        self._script = script

    async def listen(self, session: CallSession, request: ListenRequest) -> Heard:
        item = self._script.next()
        if item is None or item.kind == "silence":
            return Heard("timeout")
        if item.kind == "dtmf":
            if not request.dtmf:
                self._script.notes.append(
                    f"keys {item.value!r} given to a step that only takes speech: ignored"
                )
                return Heard("timeout")
            return Heard("dtmf", digits=item.value[: request.max_digits])
        return Heard("speech", text=item.value, confidence=item.confidence)


class CannedWebhooks:
    """Replies by URL: exact, then without the query string, then a glob pattern.
    A reply is a JSON document, ``!timeout`` or ``!<HTTP status>``."""

    def __init__(self, replies: Mapping[str, str]) -> None:
        self._replies = dict(replies)
        self.sent: list[WebhookRequest] = []

    def _find(self, url: str) -> str | None:
        base = url.split("?", 1)[0]
        for key in (url, base):
            if key in self._replies:
                return self._replies[key]
        for pattern, reply in self._replies.items():
            if fnmatch.fnmatchcase(url, pattern) or fnmatch.fnmatchcase(base, pattern):
                return reply
        return None

    async def send(self, request: WebhookRequest) -> WebhookReply:
        self.sent.append(request)
        reply = self._find(request.url)
        if reply is None:
            raise WebhookError(f"no canned reply for {request.url}")
        if reply == "!timeout":
            raise WebhookError(f"no reply within {request.timeout_s:g}s")
        if reply.startswith("!") and reply[1:].isdigit():
            return WebhookReply(int(reply[1:]), b"")
        return WebhookReply(200, reply.encode())


class RecordingQueues:
    """The ACD stand-in: every request is queued (and kept for the report)."""

    def __init__(self, catalog: QueueCatalog | None) -> None:
        self._catalog = catalog or QueueCatalog()
        self.requests: list[QueueRequest] = []

    def catalog(self) -> QueueCatalog:
        return self._catalog

    async def enter(self, request: QueueRequest) -> QueueTicket:
        self.requests.append(request)
        queue = request.queue or self._catalog.intents.get(request.intent or "", "") or "?"
        return QueueTicket(call_id=request.leg, entry_id="offline-1", queue=queue)


class RecordingCalls:
    def __init__(self) -> None:
        self.transfers: list[TransferRequest] = []
        self.notes: dict[str, str] = {}

    async def transfer(self, request: TransferRequest) -> None:
        self.transfers.append(request)

    async def annotate(self, leg: str, values: Mapping[str, str]) -> None:
        self.notes.update(values)


class TextSpeaker:
    """TTS that renders nothing: a ``say`` is reported as its text. Voices are still
    checked against espeak-ng when it is installed."""

    engine = "text"

    def __init__(self) -> None:
        settings = TtsSettings.from_env()
        self._espeak = EspeakNg(settings.espeak_binary, timeout_s=settings.timeout_s)

    def voices(self) -> frozenset[str]:
        return self._espeak.voices()

    def render_sync(self, text: str, voice: str) -> Path:
        return Path(voice) / text

    async def render(self, text: str, voice: str) -> Path:
        return Path(voice) / text

    def prompt_name(self, path: Path) -> str:
        return f"say[{path.parent}]: {path.name}"


class _AnySecret(Mapping[str, str]):
    """Offline, every webhook is signed with a fixed test secret."""

    def __getitem__(self, key: str) -> str:
        return "offline-test-secret"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass
class Report:
    result: RunResult
    session: ScriptedSession
    script: Script
    webhooks: CannedWebhooks
    queues: RecordingQueues
    calls: RecordingCalls
    load_errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        r = self.result
        out = [f"flow: {r.flow}", "path:"]
        out += [f"  {p}" for p in r.path]
        out.append("prompts:")
        out += [f"  {p}" for p in r.prompts]
        for w in self.webhooks.sent:
            body = w.body.decode() if w.body else ""
            out.append(f"webhook: {w.method} {w.url} {body}".rstrip())
        for q in self.queues.requests:
            out.append(
                f"queued: queue={q.queue} intent={q.intent} priority={q.priority} "
                f"tags={list(q.tags)} customer={dict(q.customer)}"
            )
        for t in self.calls.transfers:
            target = t.number or t.endpoint or f"{t.context},{t.exten},{t.priority}"
            out.append(
                f"transferred: {target}" + (f" via {t.trunk_group}" if t.trunk_group else "")
            )
        out.append(f"end: {r.end}" + (f" ({r.detail})" if r.detail else ""))
        out.append("variables:")
        out += [f"  {k} = {to_text(v)}" for k, v in sorted(r.variables.items())]
        out += [f"note: {n}" for n in self.script.notes]
        left = self.script.left
        if left:
            out.append("inputs not used: " + ", ".join(f"{i.kind}:{i.value}" for i in left))
        return out


async def simulate(
    directory: Path,
    flow: str,
    inputs: Sequence[Input],
    webhooks: Mapping[str, str] | None = None,
    *,
    call_id: str = "offline-call",
    caller: str = "",
    preset: Mapping[str, Value] | None = None,
    catalog: QueueCatalog | None = None,
) -> Report:
    script = Script(inputs)
    canned = CannedWebhooks(webhooks or {})
    queues = RecordingQueues(catalog)
    calls = RecordingCalls()
    runtime = IvrRuntime(
        directory,
        tts=TextSpeaker(),
        queues=queues,
        speech=ScriptedSpeech(script),
        webhooks=canned,
        calls=calls,
        recordings_dir="/offline/recordings",
        secrets=_AnySecret(),
        wall_clock=lambda: 1_700_000_000.0,
    )
    errors = runtime.load()
    session = ScriptedSession(script, call_id, {"agi_callerid": caller} if caller else {})
    if flow not in runtime.flows:
        problems = [str(e) for e in errors] or [f"no flow named {flow!r} in {directory}"]
        return Report(
            RunResult(flow=flow, end="failed", detail="; ".join(problems)),
            session,
            script,
            canned,
            queues,
            calls,
            problems,
        )
    result = await runtime.run(session, flow, preset)
    return Report(result, session, script, canned, queues, calls, [str(e) for e in errors])


# ------------------------------------------------------------------ ivr/tests/*.yaml


@dataclass(frozen=True, slots=True)
class TestCase:
    """One expected run: ``ivr/tests/<file>.yaml`` holds a flow's cases."""

    __test__ = False  # not a pytest class

    source: str
    flow: str
    name: str
    inputs: tuple[Input, ...]
    webhooks: Mapping[str, str]
    call_id: str
    caller: str
    preset: Mapping[str, Value]
    path: tuple[str, ...] | None
    end: str | None
    variables: Mapping[str, str]
    prompts: tuple[str, ...] | None


def load_cases(path: Path) -> list[TestCase]:
    """Read one test file; raises ``ValueError`` naming the file and the case."""
    text = path.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        line, problem = yaml_problem(err, text)
        raise ValueError(f"{path}:{line}: {problem}") from err
    if not isinstance(doc, dict) or "flow" not in doc or not isinstance(doc.get("cases"), list):
        raise ValueError(f"{path}: expected flow: <name> and cases: [...]")
    base = path.parent
    out: list[TestCase] = []
    for i, case in enumerate(doc["cases"]):
        where = f"{path}: cases[{i}]"
        if not isinstance(case, dict) or not isinstance(case.get("expect"), dict):
            raise ValueError(f"{where}: expected name:, inputs: and expect:")
        unknown = set(case) - {"name", "inputs", "webhooks", "call_id", "caller", "set", "expect"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        expect: dict[str, Any] = case["expect"]
        bad = set(expect) - {"path", "end", "variables", "prompts"}
        if bad:
            raise ValueError(f"{where}.expect: unknown keys {sorted(bad)}")
        hooks: dict[str, str] = {}
        for url, reply in (case.get("webhooks") or {}).items():
            if isinstance(reply, str) and reply.startswith("!"):
                hooks[str(url)] = reply
            elif isinstance(reply, str) and reply.endswith(".json"):
                hooks[str(url)] = (base / reply).read_text(encoding="utf-8")
            else:
                hooks[str(url)] = json.dumps(reply, ensure_ascii=False)
        out.append(
            TestCase(
                source=str(path),
                flow=str(doc["flow"]),
                name=str(case.get("name", f"case {i}")),
                inputs=_inputs(case.get("inputs") or (), where),
                webhooks=hooks,
                call_id=str(case.get("call_id", "offline-call")),
                caller=str(case.get("caller", "")),
                preset=dict(case.get("set") or {}),
                path=tuple(str(p) for p in expect["path"]) if "path" in expect else None,
                end=str(expect["end"]) if "end" in expect else None,
                variables={str(k): to_text(v) for k, v in (expect.get("variables") or {}).items()},
                prompts=tuple(str(p) for p in expect["prompts"]) if "prompts" in expect else None,
            )
        )
    return out


def _inputs(texts: Sequence[object], where: str) -> tuple[Input, ...]:
    try:
        return tuple(parse_input(str(x)) for x in texts)
    except ValueError as err:
        raise ValueError(f"{where}.inputs: {err}") from err


def labelled_path(result: RunResult) -> list[str]:
    """The path as a test states it: steps with an ``id:`` only; steps of another
    flow as ``flow:id``."""
    out = []
    for entry in result.path:
        flow, _, step = entry.partition(":")
        if "@" in step:
            continue
        out.append(step if flow == result.flow else entry)
    return out


async def run_case(
    directory: Path, case: TestCase, catalog: QueueCatalog | None = None
) -> list[str]:
    """The differences between the case's expectations and a run (empty = pass)."""
    report = await simulate(
        directory,
        case.flow,
        case.inputs,
        case.webhooks,
        call_id=case.call_id,
        caller=case.caller,
        preset=case.preset,
        catalog=catalog,
    )
    r = report.result
    problems = [
        f"load error: {e}" for e in report.load_errors if case.flow in e or r.end == "failed"
    ]
    if case.path is not None and tuple(labelled_path(r)) != case.path:
        problems.append(f"path: expected {list(case.path)}, got {labelled_path(r)}")
    if case.end is not None and r.end != case.end:
        problems.append(f"end: expected {case.end!r}, got {r.end!r} {r.detail}".rstrip())
    for key, want in case.variables.items():
        got = to_text(r.variables[key]) if key in r.variables else None
        if got != want:
            problems.append(f"variable {key}: expected {want!r}, got {got!r}")
    if case.prompts is not None and tuple(r.prompts) != case.prompts:
        problems.append(f"prompts: expected {list(case.prompts)}, got {r.prompts}")
    return problems
