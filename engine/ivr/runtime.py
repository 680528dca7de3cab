"""Runs IVR flows on a :class:`CallSession` (FastAGI or outbound socket).

Reload keeps the previous good version of a flow whose file became invalid:
an author's typo must never take a live menu down. "Invalid" includes a ``say``
step that cannot be rendered: every static ``say`` is rendered while the flow
loads, so the first caller never waits for the TTS engine and a broken voice
or unwritable prompt directory is reported at file:line before any call.

A flow runs as a walk over its steps (engine/ivr/graph.py): each step does its
I/O through the session or a port (engine/ivr/ports.py) and returns the next
step's index, or ``None`` to end. Which branch follows an input is decided by
the pure functions of engine/ivr/decide.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from engine.core import clock
from engine.ivr import decide
from engine.ivr.expr import Value, to_text
from engine.ivr.loader import PROMPT, FlowError, check_links, load_dir
from engine.ivr.model import (
    Analyze,
    Answer,
    Condition,
    EnterQueue,
    Flow,
    Gather,
    Goto,
    Hangup,
    Menu,
    Play,
    Record,
    Say,
    SetVars,
    Split,
    Step,
    Switch,
    Transfer,
    Webhook,
)
from engine.ivr.nlu import KeywordIntentClassifier, LexiconEmotionScorer
from engine.ivr.ports import (
    CallControl,
    DtmfOnlySpeech,
    EmotionScorer,
    Heard,
    IntentClassifier,
    ListenRequest,
    RunResult,
    SpeechInput,
    TransferRefused,
    TransferRequest,
    WebhookClient,
    WebhookError,
    WebhookRequest,
)
from engine.ivr.queueing import (
    QueueEntry,
    QueueHandoffFailed,
    QueueRefused,
    QueueRequest,
    QueueTicket,
)
from engine.ivr.syntax import MAX_SAY_CHARS
from engine.ivr.template import render
from engine.ivr.webhook import HttpWebhookClient, parse_reply, pick, signed_headers
from engine.pbx.base import CallSession, HangupDuringSession
from engine.speech.cache import PromptCache
from engine.speech.espeak import EspeakNg
from engine.speech.settings import TtsSettings
from engine.speech.tts import TtsError
from engine.telemetry.logging import get_logger

log = get_logger("engine.ivr")

# A flow that jumps between flows or loops through waits forever is cut here:
# the load-time checks catch loops within a flow, not across flows.
MAX_STEPS_PER_CALL = 2000
MAX_FLOW_JUMPS = 20
MAX_CHANNEL_VALUE = 1024
_CHANNEL_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class EventSink(Protocol):
    """Where IVR events go: the engine's event outbox (or the stream in tests)."""

    async def publish(self, data: Mapping[str, Any]) -> Any: ...


class Speaker(Protocol):
    """What the runtime needs of TTS (``PromptCache`` is the real one)."""

    @property
    def engine(self) -> str: ...

    def voices(self) -> frozenset[str]: ...

    def render_sync(self, text: str, voice: str) -> Path: ...

    async def render(self, text: str, voice: str) -> Path: ...

    def prompt_name(self, path: Path) -> str: ...


class _End(Exception):
    """The flow is over (``end`` is RunResult.end)."""

    def __init__(self, end: str, detail: str = "") -> None:
        super().__init__(end)
        self.end = end
        self.detail = detail


class IvrRuntime:
    """Loads the flows of ``directory`` and runs them on call sessions.

    TTS: pass a ready ``tts`` cache, or let the runtime build an espeak-ng one
    from ``tts_dir``/``tts_prefix``, falling back to the ``ENGINE_TTS_*``
    environment variables (:class:`~engine.speech.settings.TtsSettings`).
    The other collaborators are ports (engine/ivr/ports.py); each has a default
    that works without the rest of the engine.
    """

    def __init__(
        self,
        directory: Path,
        stream: EventSink | None = None,
        *,
        tts: Speaker | None = None,
        tts_dir: Path | None = None,
        tts_prefix: str | None = None,
        queues: QueueEntry | None = None,
        speech: SpeechInput | None = None,
        intents: IntentClassifier | None = None,
        emotions: EmotionScorer | None = None,
        webhooks: WebhookClient | None = None,
        calls: CallControl | None = None,
        recordings_dir: str = "",
        secrets: Mapping[str, str] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._dir = directory
        self._stream = stream
        # The ACD, for `queue` steps; its catalog checks them when flows load.
        self._queues = queues
        if tts is None:
            settings = TtsSettings.from_env()
            directory_ = tts_dir if tts_dir is not None else settings.directory
            if tts_prefix is not None:
                prefix = tts_prefix
            elif tts_dir is not None:
                prefix = str(tts_dir)  # same file system as the switch, see settings
            else:
                prefix = settings.prefix
            synth = EspeakNg(settings.espeak_binary, timeout_s=settings.timeout_s)
            tts = PromptCache(synth, directory_, prefix)
        self.tts: Speaker = tts
        self.speech: SpeechInput = speech if speech is not None else DtmfOnlySpeech()
        self.intents: IntentClassifier = intents or KeywordIntentClassifier()
        self.emotions: EmotionScorer = emotions or LexiconEmotionScorer()
        self.webhooks: WebhookClient = webhooks or HttpWebhookClient()
        self._calls = calls
        # Where the switch writes `record` files, in its own view of the file system.
        self._recordings = recordings_dir or os.environ.get(
            "ENGINE_IVR_RECORDINGS_DIR", "/var/spool/asterisk/engine-ivr"
        )
        self._secrets: Mapping[str, str] = secrets if secrets is not None else os.environ
        self._wall = wall_clock
        self.flows: dict[str, Flow] = {}
        self.errors: list[FlowError] = []

    # ------------------------------------------------------------------ loading

    def load(self) -> list[FlowError]:
        """Parse, validate and pre-render every flow, then swap them in.

        Blocking (it runs the TTS engine for prompts not yet cached): call it
        before serving calls, or use :meth:`reload` from the event loop.
        """
        if not self._dir.is_dir():
            log.warning("IVR directory missing; no flows loaded", path=str(self._dir))
            return []
        return self._commit(*self._prepare())

    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        try:
            return tuple(
                sorted(
                    (p.name, p.stat().st_mtime_ns, p.stat().st_size)
                    for p in self._dir.glob("*.yaml")
                )
            )
        except OSError:
            return ()

    async def watch(self, interval_s: float, closing: Callable[[], bool]) -> None:
        """Reload whenever a flow file is added, changed or removed.

        Polling, not inotify: it works the same on every file system (NFS,
        bind mounts, containers) and a flow directory holds a handful of files.
        """
        seen = await asyncio.to_thread(self._signature)
        while not closing():
            await asyncio.sleep(interval_s)
            now = await asyncio.to_thread(self._signature)
            if now != seen:
                seen = now
                errors = await self.reload()
                log.info("IVR flows reloaded", flows=sorted(self.flows), errors=len(errors))

    async def reload(self) -> list[FlowError]:
        """:meth:`load` with the parsing and rendering in a worker thread."""
        if not self._dir.is_dir():
            log.warning("IVR directory missing; no flows loaded", path=str(self._dir))
            return []
        fresh, errors = await asyncio.to_thread(self._prepare)
        return self._commit(fresh, errors)

    def _prepare(self) -> tuple[dict[str, Flow], list[FlowError]]:
        # Thread-safe: reads files and renders prompts, touches no runtime state.
        try:
            voices: frozenset[str] | None = self.tts.voices()
        except TtsError as err:
            # Flows without `say` still load; each `say` then fails to render
            # below with this reason at its own file:line.
            log.warning("TTS voices unavailable; say steps cannot render", error=str(err))
            voices = None
        catalog = self._queues.catalog() if self._queues is not None else None
        fresh, errors = load_dir(self._dir, voices, catalog)
        for name, flow in list(fresh.items()):
            try:
                self._prerender(flow)
            except FlowError as err:
                errors.append(err)
                del fresh[name]
        return fresh, errors

    def _prerender(self, flow: Flow) -> None:
        for index, step in enumerate(flow.steps):
            for say in _says(step):
                if not say.is_static:
                    continue
                try:
                    self.tts.render_sync(say.text, say.voice)
                except TtsError as err:
                    kind = "say" if isinstance(step, Say) else f"{_kind(step)}.say"
                    raise FlowError(
                        flow.source,
                        step.line,
                        f"steps[{index}].{kind}: cannot render with {self.tts.engine} voice "
                        f"{say.voice!r}: {err}",
                    ) from err

    def _commit(self, fresh: dict[str, Flow], errors: list[FlowError]) -> list[FlowError]:
        bad_sources = {e.source for e in errors}
        for name, old in self.flows.items():
            if old.source in bad_sources and name not in fresh:
                fresh[name] = old  # keep the last good version live
        # A goto to a flow that is not there is refused at the goto's line; the
        # flow that holds it is kept at its last good version, like any error.
        for link_error in check_links(fresh):
            errors.append(link_error)
            for name, flow in list(fresh.items()):
                if flow.source == link_error.source:
                    old_flow = self.flows.get(name)
                    if old_flow is not None and old_flow is not flow:
                        fresh[name] = old_flow
                    else:
                        del fresh[name]
        for err in errors:
            log.error("IVR flow rejected; previous version kept", error=str(err))
        self.flows, self.errors = fresh, errors
        return errors

    # ------------------------------------------------------------------ running

    async def _emit(self, session: CallSession, type_: str, **data: Any) -> None:
        if self._stream is not None:
            event = {"type": type_, "call_id": session.call_id, "ts": clock.now(), **data}
            await self._stream.publish(event)

    async def handle(self, session: CallSession) -> None:
        await self.run(session)

    async def run(
        self,
        session: CallSession,
        flow_name: str | None = None,
        preset: Mapping[str, Value] | None = None,
    ) -> RunResult:
        """Run a flow on ``session``; returns what happened (path, prompts, variables)."""
        name = (
            flow_name
            or session.variables.get("flow")
            or session.variables.get("ENGINE_IVR_FLOW")
            or ""
        )
        flow = self.flows.get(name)
        result = RunResult(flow=name)
        if flow is None:
            log.error("unknown IVR flow; hanging up", call_id=session.call_id, flow=name)
            await self._emit(session, "IvrFailed", flow=name, reason="unknown flow")
            await session.hangup()
            result.end, result.detail = "failed", "unknown flow"
            return result
        await self._emit(session, "IvrStarted", flow=flow.name)
        variables: dict[str, Value] = {
            "call.id": session.call_id,
            "caller.number": session.variables.get("agi_callerid")
            or session.variables.get("Caller-Caller-ID-Number", ""),
            "flow.name": flow.name,
        }
        variables.update(flow.defaults)
        variables.update(preset or {})
        result.variables = variables
        run = _Run(self, session, result)
        try:
            await run.walk(flow)
        except _End as end:
            result.end, result.detail = end.end, end.detail
        except HangupDuringSession:
            result.end = "caller hung up"
        if result.end == "failed":
            await self._emit(session, "IvrFailed", flow=run.flow.name, reason=result.detail)
        else:
            # A hangup step is a flow that ran to its end: "completed", as before.
            reason = "completed" if result.end == "hangup" else result.end
            await self._emit(
                session,
                "IvrFinished",
                flow=run.flow.name,
                reason=reason,
                # The steps taken (the last 100): what an author debugs a flow with.
                path=result.path[-100:],
                **run.finish_data,
            )
        return result


def _says(step: Step) -> list[Say]:
    if isinstance(step, Say):
        return [step]
    if isinstance(step, Gather) and step.say is not None:
        return [step.say]
    if isinstance(step, Menu):
        return [s for s in (step.say, step.invalid_say) if s is not None]
    return []


def _kind(step: Step) -> str:
    return {
        "Answer": "answer",
        "Play": "play",
        "Say": "say",
        "Gather": "gather",
        "SetVars": "set",
        "Hangup": "hangup",
        "EnterQueue": "queue",
        "Menu": "menu",
        "Condition": "if",
        "Switch": "switch",
        "Goto": "goto",
        "Webhook": "webhook",
        "Transfer": "transfer",
        "Record": "record",
        "Split": "split",
        "Analyze": "analyze",
    }[type(step).__name__]


def step_id(step: Step, index: int) -> str:
    """The id a path shows: the step's ``id:``, else ``<kind>@<index>``."""
    return step.label or f"{_kind(step)}@{index}"


class _Run:
    """One call's walk through its flow(s)."""

    def __init__(self, rt: IvrRuntime, session: CallSession, result: RunResult) -> None:
        self.rt = rt
        self.session = session
        self.result = result
        self.vars = result.variables
        self.flow: Flow = rt.flows[result.flow]
        self.finish_data: dict[str, Any] = {}

    async def walk(self, flow: Flow) -> None:
        self.flow = flow
        index: int | None = 0
        steps = jumps = 0
        while index is not None:
            steps += 1
            if steps > MAX_STEPS_PER_CALL:
                raise _End("failed", f"more than {MAX_STEPS_PER_CALL} steps in one call")
            step = self.flow.steps[index]
            self.result.path.append(f"{self.flow.name}:{step_id(step, index)}")
            if isinstance(step, Goto) and step.flow:
                jumps += 1
                other = self.rt.flows.get(step.flow)
                if other is None or (step.node and step.node not in other.labels):
                    raise _End("failed", f"goto: no flow {step.flow!r} (or step {step.node!r})")
                if jumps > MAX_FLOW_JUMPS:
                    raise _End("failed", f"more than {MAX_FLOW_JUMPS} jumps between flows")
                self.flow = other
                self.vars["flow.name"] = other.name
                index = other.labels[step.node] if step.node else 0
                continue
            index = await self.run_step(index, step)
        raise _End("completed")

    def next_of(self, index: int, label: str = "") -> int | None:
        if label:
            return self.flow.labels[label]
        return index + 1 if index + 1 < len(self.flow.steps) else None

    def text(self, template: str, escape: Callable[[str], str] | None = None) -> str:
        return render(template, self.vars, escape)

    async def set_var(self, name: str, value: Value) -> None:
        self.vars[name] = value
        # Channel variable names: dots become "_" (IVR_customer_name would be
        # read as one name by both switches; a dot is not a word character).
        # The channel copy is one line of bounded length: a CRM note or a transcript
        # with a newline would otherwise end the AGI command early (the codec refuses
        # it, failing the step) and a huge value would bloat the channel.
        text = _CHANNEL_UNSAFE.sub(" ", to_text(value))[:MAX_CHANNEL_VALUE]
        await self.session.set_var(name.replace(".", "_"), text)

    async def speak(self, say: Say) -> str:
        """Render a say (cache hit when static) and return its prompt name."""
        # A text filled in from variables is capped like a flow's own (MAX_SAY_CHARS).
        text = say.text if say.is_static else self.text(say.text)[:MAX_SAY_CHARS]
        path = await self.rt.tts.render(text, say.voice)
        name = self.rt.tts.prompt_name(path)
        return name

    async def play(self, prompt: str) -> None:
        self.result.prompts.append(prompt)
        await self.session.play(prompt)

    async def run_step(self, index: int, step: Step) -> int | None:
        s = self.session
        if isinstance(step, Answer):
            await s.answer()
        elif isinstance(step, Play):
            prompt = self.text(step.prompt)
            if not PROMPT.match(prompt):
                log.warning("IVR play: not a sound name once filled in", prompt=prompt)
                return self.next_of(index)
            await self.play(prompt)
        elif isinstance(step, Say):
            await self.play(await self.speak(step))
        elif isinstance(step, SetVars):
            for key, template in step.values.items():
                await self.set_var(key, self.text(template))
        elif isinstance(step, Hangup):
            await s.hangup()
            raise _End("hangup")
        elif isinstance(step, Condition):
            label = step.then if step.expr.test(self.vars) else step.else_
            return self.next_of(index, label)
        elif isinstance(step, Switch):
            value = to_text(step.expr.evaluate(self.vars))
            label = dict(step.cases).get(value, step.default)
            return self.next_of(index, label)
        elif isinstance(step, Goto):
            return self.next_of(index, step.node)
        elif isinstance(step, Gather):
            return await self.gather(index, step)
        elif isinstance(step, Menu):
            return await self.menu(index, step)
        elif isinstance(step, Analyze):
            await self.analyze(self.text(step.text))
        elif isinstance(step, Webhook):
            return await self.webhook(index, step)
        elif isinstance(step, EnterQueue):
            await self.enter_queue(step)
        elif isinstance(step, Transfer):
            return await self.transfer(index, step)
        elif isinstance(step, Record):
            return await self.record(index, step)
        elif isinstance(step, Split):
            return await self.split(index, step)
        return self.next_of(index)

    # ------------------------------------------------------------------ input

    async def listen(self, request: ListenRequest) -> Heard:
        if request.prompt:
            self.result.prompts.append(request.prompt)
        if not request.speech:
            digits = await self.session.get_digits(
                request.prompt, request.max_digits, request.timeout_s, request.terminators
            )
            return Heard("dtmf", digits=digits) if digits else Heard("timeout")
        heard = await self.rt.speech.listen(self.session, request)
        if heard.kind == "speech":
            self.vars["speech.text"] = heard.text
            self.vars["speech.confidence"] = round(heard.confidence, 3)
            await self.analyze(heard.text)
        return heard

    async def prompt_of(self, say: Say | None, sound: str) -> str:
        """A step's prompt: its TTS text is played first when it also has a sound,
        so the sound (usually a beep) is what input can interrupt."""
        if say is None:
            return sound
        spoken = await self.speak(say)
        if not sound:
            return spoken
        await self.play(spoken)
        return sound

    async def gather(self, index: int, step: Gather) -> int | None:
        request = ListenRequest(
            prompt=await self.prompt_of(step.say, step.prompt),
            dtmf=step.input != "speech",
            speech=step.input != "dtmf",
            max_digits=step.max_digits,
            timeout_s=step.timeout_s,
            terminators=step.terminators,
            speech_timeout_s=step.speech_timeout_s,
        )
        heard = await self.listen(request)
        outcome = decide.gather_outcome(heard, step.min_digits, step.min_confidence)
        value = heard.digits if heard.kind == "dtmf" else heard.text
        self.vars["input.kind"] = heard.kind
        await self.set_var(step.into, value)
        await self.rt._emit(
            self.session, "IvrInput", variable=step.into, digits=heard.digits, text=heard.text
        )
        if outcome == "timeout" and step.on_timeout:
            return self.next_of(index, step.on_timeout)
        if outcome == "invalid" and step.on_invalid:
            return self.next_of(index, step.on_invalid)
        return self.next_of(index)

    async def menu(self, index: int, step: Menu) -> int | None:
        last = "timeout"
        width = max((len(o.dtmf) for o in step.options), default=1) or 1
        for attempt in range(step.retries + 1):
            if attempt and step.invalid_say is not None and last == "invalid":
                await self.play(await self.speak(step.invalid_say))
            request = ListenRequest(
                prompt=await self.prompt_of(step.say, step.prompt),
                dtmf=step.input != "speech",
                speech=step.input != "dtmf",
                max_digits=width,
                timeout_s=step.timeout_s,
                # One-key menus need no terminator, so '#' and '*' can be options;
                # longer keys end with '#' (or when the longest key is complete).
                terminators="#" if width > 1 else "",
                speech_timeout_s=step.timeout_s,
                keywords=tuple(w for o in step.options for w in o.speech),
            )
            heard = await self.listen(request)
            intent = self.vars.get("intent", "")
            choice, last = decide.menu_choice(
                step.options, heard, to_text(intent), step.min_confidence
            )
            await self.rt._emit(
                self.session,
                "IvrInput",
                menu=step.label or f"menu@{index}",
                digits=heard.digits,
                text=heard.text,
                outcome=last,
            )
            if choice is not None:
                if step.into:
                    await self.set_var(step.into, choice.value)
                return self.next_of(index, choice.goto)
        label = step.on_timeout if last == "timeout" else step.on_invalid
        return self.next_of(index, label)

    async def analyze(self, text: str) -> None:
        intent = self.rt.intents.classify(text)
        self.vars["intent"] = intent.name
        self.vars["intent.score"] = intent.score
        for name, value in self.rt.emotions.score(text).items():
            key = "sentiment" if name == "sentiment" else f"emotion.{name}"
            self.vars[key] = value
        await self.rt._emit(
            self.session,
            "IvrAnalyzed",
            intent=intent.name,
            intent_score=intent.score,
            anger=self.vars.get("emotion.anger", 0.0),
            sentiment=self.vars.get("sentiment", 0.0),
        )

    # ------------------------------------------------------------------ outside

    async def webhook(self, index: int, step: Webhook) -> int | None:
        url = self.text(step.url, lambda v: urllib.parse.quote(v, safe=""))
        payload = {k: self.text(t) for k, t in step.body.items()}
        body = b""
        if step.method == "GET" and payload:
            sep = "&" if "?" in url else "?"
            url = url + sep + urllib.parse.urlencode(payload)
        elif step.method == "POST":
            body = json.dumps(
                {"call_id": self.session.call_id, "flow": self.flow.name, **payload},
                ensure_ascii=False,
            ).encode()
        error = ""
        secret = self.rt._secrets.get(step.secret_env, "")
        if not secret:
            # An unsigned request is never sent: the receiver could not tell it
            # from a forged one.
            error = f"no signing secret: set {step.secret_env}"
        else:
            stamp = str(int(self.rt._wall()))
            headers = signed_headers(secret, stamp, step.method, url, body)
            request = WebhookRequest(step.method, url, body, headers, step.timeout_s)
            try:
                reply = await asyncio.wait_for(self.rt.webhooks.send(request), step.timeout_s + 0.5)
                self.vars["webhook.status"] = reply.status
                document = parse_reply(reply)
                for var, path in step.map.items():
                    value = pick(document, path)
                    if value is not None:
                        await self.set_var(var, value)
            except (WebhookError, TimeoutError) as err:
                error = str(err) or "timeout"
        self.vars["webhook.error"] = error
        await self.rt._emit(
            self.session, "IvrWebhook", url=url.split("?")[0], ok=not error, error=error
        )
        if error:
            log.warning("IVR webhook failed", call_id=self.session.call_id, error=error)
            return self.next_of(index, step.on_error)
        return self.next_of(index)

    async def enter_queue(self, step: EnterQueue) -> None:
        ticket = await self._enter_queue(step)
        if ticket is None:
            return  # not queued: the steps after it say so
        # The ACD has the channel now (parked on its switch): the session ends
        # without a hangup (docs/ivr.md "queue").
        self.finish_data = {"queue": ticket.queue, "entry_id": ticket.entry_id}
        raise _End("queued", ticket.queue)

    async def _enter_queue(self, step: EnterQueue) -> QueueTicket | None:
        """The ticket once the ACD has the call; None (and ``queue_error`` set) if refused."""
        rt, vars_ = self.rt, self.vars
        intent = step.intent
        if step.choice is not None:
            value = to_text(vars_.get(step.choice.var, ""))
            if step.choice.choices:
                intent = step.choice.choices.get(value, step.choice.default)
            else:
                intent = value or step.choice.default
        reason = ""
        if rt._queues is None:
            reason = "no ACD: this engine runs IVR flows without queues"
        elif step.queue is None and not intent:
            assert step.choice is not None  # the loader requires a queue or an intent
            reason = (
                f"{step.choice.var}={to_text(vars_.get(step.choice.var, ''))!r} is none of "
                f"{sorted(step.choice.choices)} and the step has no default intent"
            )
        ticket = None
        if not reason:
            assert rt._queues is not None
            request = QueueRequest(
                leg=self.session.call_id,
                flow=self.flow.name,
                queue=step.queue,
                intent=intent,
                tags=step.tags,
                priority=step.priority,
                features=step.features,
                customer={k: self.text(t) for k, t in step.customer.items()},
            )
            try:
                ticket = await rt._queues.enter(request)
            except QueueRefused as err:
                reason = str(err)
            except QueueHandoffFailed as err:
                raise _End("failed", str(err)) from err
        if ticket is None:
            log.warning(
                "IVR call not queued",
                call_id=self.session.call_id,
                flow=self.flow.name,
                reason=reason,
            )
            vars_["queue_error"] = reason
            await rt._emit(
                self.session,
                "IvrQueueRefused",
                flow=self.flow.name,
                line=step.line,
                reason=reason,
            )
        return ticket

    async def transfer(self, index: int, step: Transfer) -> int | None:
        request = TransferRequest(
            leg=self.session.call_id,
            flow=self.flow.name,
            endpoint=self.text(step.endpoint),
            number=self.text(step.number),
            trunk_group=step.trunk_group,
            context=step.context,
            exten=step.exten,
            priority=step.priority,
            timeout_s=step.timeout_s,
        )
        problem = decide.transfer_problem(request)
        if not problem and self.rt._calls is None:
            problem = "no calls service: this engine runs IVR flows without transfers"
        if not problem:
            assert self.rt._calls is not None
            try:
                await self.rt._calls.transfer(request)
            except TransferRefused as err:
                problem = str(err)
        if problem:
            self.vars["transfer_error"] = problem
            await self.rt._emit(
                self.session, "IvrTransferRefused", flow=self.flow.name, reason=problem
            )
            return self.next_of(index, step.on_error)
        target = decide.transfer_target(request)
        self.finish_data = {"target": target}
        raise _End("transferred", target)

    async def record(self, index: int, step: Record) -> int | None:
        stamp = int(self.rt._wall())
        safe_id = "".join(ch for ch in self.session.call_id if ch.isalnum() or ch in "-_.")
        path = f"{self.rt._recordings.rstrip('/')}/ivr-{safe_id}-{stamp}.wav"
        try:
            if step.beep:
                await self.play("beep")
            await self.session.record(path, step.max_s, step.silence_s)
        except HangupDuringSession:
            raise
        except Exception as err:  # ActionFailed and friends: the on_error branch
            self.vars["record.error"] = str(err)
            log.warning("IVR record failed", call_id=self.session.call_id, error=str(err))
            return self.next_of(index, step.on_error)
        await self.set_var(step.into, path)
        # The recordings index (its own domain) listens for this event.
        await self.rt._emit(
            self.session,
            "IvrRecorded",
            flow=self.flow.name,
            path=path,
            max_s=step.max_s,
            kind="voicemail",
        )
        return self.next_of(index)

    async def split(self, index: int, step: Split) -> int | None:
        variant = decide.split_variant(step, self.session.call_id)
        await self.set_var(f"split.{step.name}", variant.name)
        if self.rt._calls is not None:
            try:
                await self.rt._calls.annotate(
                    self.session.call_id, {f"ivr_split.{step.name}": variant.name}
                )
            except Exception as err:  # the caller still gets the variant
                log.warning("IVR split not recorded on the call", error=str(err))
        await self.rt._emit(
            self.session, "IvrSplit", flow=self.flow.name, test=step.name, variant=variant.name
        )
        return self.next_of(index, variant.goto)
