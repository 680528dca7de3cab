"""One call's walk through its flow(s): each step does its I/O through the session
or a port and returns the next step's index (``None`` ends the flow). Which
branch an input takes is decided by the pure functions of engine/ivr/decide.py."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.ivr import decide
from engine.ivr.expr import Value, to_text
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
from engine.ivr.ports import (
    CallControl,
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
from engine.ivr.syntax import MAX_SAY_CHARS, PROMPT
from engine.ivr.template import render
from engine.ivr.webhook import parse_reply, pick, signed_headers
from engine.pbx.base import CallSession, HangupDuringRecord, HangupDuringSession, RecordedTake
from engine.telemetry.logging import get_logger

log = get_logger("engine.ivr")

# A flow that jumps between flows or loops through waits forever is cut here:
# the load-time checks catch loops within a flow, not across flows.
MAX_STEPS_PER_CALL = 2000
MAX_FLOW_JUMPS = 20
MAX_CHANNEL_VALUE = 1024
_CHANNEL_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
#: Bytes of a WAV header: a take of this size holds no audio.
WAV_HEADER = 44


class Speaker(Protocol):
    """What the runtime needs of TTS (``PromptCache`` is the real one)."""

    @property
    def engine(self) -> str: ...

    def voices(self) -> frozenset[str]: ...

    def render_sync(self, text: str, voice: str) -> Path: ...

    async def render(self, text: str, voice: str) -> Path: ...

    def prompt_name(self, path: Path) -> str: ...


@dataclass(frozen=True, slots=True)
class Ports:
    """Everything a walk uses besides the session (built by IvrRuntime)."""

    flows: Mapping[str, Flow]
    tts: Speaker
    speech: SpeechInput
    intents: IntentClassifier
    emotions: EmotionScorer
    webhooks: WebhookClient
    queues: QueueEntry | None
    calls: CallControl | None
    recordings_dir: str
    secrets: Mapping[str, str]
    wall: Callable[[], float]
    emit: Callable[..., Awaitable[None]]


class FlowEnd(Exception):
    """The flow is over (``end`` is RunResult.end)."""

    def __init__(self, end: str, detail: str = "") -> None:
        super().__init__(end)
        self.end = end
        self.detail = detail


def says_of(step: Step) -> list[Say]:
    if isinstance(step, Say):
        return [step]
    if isinstance(step, Gather) and step.say is not None:
        return [step.say]
    if isinstance(step, Menu):
        return [s for s in (step.say, step.invalid_say) if s is not None]
    return []


def speech_fields(heard: Heard) -> dict[str, Any]:
    """An ``IvrInput`` event's text, plus for speech the confidence, the n-best and barge-in."""
    if heard.kind != "speech":
        return {"text": heard.text}
    return {
        "text": heard.text,
        "confidence": round(heard.confidence, 3),
        "alternatives": [[t, round(c, 3)] for t, c in heard.alternatives[:3]],
        "barged_in": heard.barged_in,
    }


def kind_of(step: Step) -> str:
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
    return step.label or f"{kind_of(step)}@{index}"


class Walk:
    """One call's walk through its flow(s)."""

    def __init__(self, ports: Ports, session: CallSession, result: RunResult) -> None:
        self.ports = ports
        self.session = session
        self.result = result
        self.vars = result.variables
        self.flow: Flow = ports.flows[result.flow]
        self.finish_data: dict[str, Any] = {}
        #: the files this call's `record` steps wrote (switch's view): `play` may name them
        self.recorded: set[str] = set()

    async def walk(self, flow: Flow) -> None:
        self.flow = flow
        index: int | None = 0
        steps = jumps = 0
        while index is not None:
            steps += 1
            if steps > MAX_STEPS_PER_CALL:
                raise FlowEnd("failed", f"more than {MAX_STEPS_PER_CALL} steps in one call")
            step = self.flow.steps[index]
            self.result.path.append(f"{self.flow.name}:{step_id(step, index)}")
            if isinstance(step, Goto) and step.flow:
                jumps += 1
                other = self.ports.flows.get(step.flow)
                if other is None or (step.node and step.node not in other.labels):
                    raise FlowEnd("failed", f"goto: no flow {step.flow!r} (or step {step.node!r})")
                if jumps > MAX_FLOW_JUMPS:
                    raise FlowEnd("failed", f"more than {MAX_FLOW_JUMPS} jumps between flows")
                self.flow = other
                self.vars["flow.name"] = other.name
                index = other.labels[step.node] if step.node else 0
                continue
            index = await self.run_step(index, step)
        raise FlowEnd("completed")

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
        path = await self.ports.tts.render(text, say.voice)
        name = self.ports.tts.prompt_name(path)
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
            # A sound name, or a message this call recorded (`record into: msg`, then
            # `play: "{msg}"`: its plaintext stays while the call lives, docs/ivr.md).
            if not PROMPT.match(prompt) and prompt not in self.recorded:
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
            raise FlowEnd("hangup")
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
        heard = await self.ports.speech.listen(self.session, request)
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
            plugin=step.asr or self.flow.asr,
        )
        heard = await self.listen(request)
        outcome = decide.gather_outcome(heard, step.min_digits, step.min_confidence)
        value = heard.digits if heard.kind == "dtmf" else heard.text
        self.vars["input.kind"] = heard.kind
        await self.set_var(step.into, value)
        await self.ports.emit(
            "IvrInput", variable=step.into, digits=heard.digits, **speech_fields(heard)
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
                plugin=step.asr or self.flow.asr,
            )
            heard = await self.listen(request)
            intent = self.vars.get("intent", "")
            choice, last = decide.menu_choice(
                step.options, heard, to_text(intent), step.min_confidence
            )
            await self.ports.emit(
                "IvrInput",
                menu=step.label or f"menu@{index}",
                digits=heard.digits,
                outcome=last,
                **speech_fields(heard),
            )
            if choice is not None:
                if step.into:
                    await self.set_var(step.into, choice.value)
                return self.next_of(index, choice.goto)
        label = step.on_timeout if last == "timeout" else step.on_invalid
        return self.next_of(index, label)

    async def analyze(self, text: str) -> None:
        intent = self.ports.intents.classify(text)
        self.vars["intent"] = intent.name
        self.vars["intent.score"] = intent.score
        for name, value in self.ports.emotions.score(text).items():
            key = "sentiment" if name == "sentiment" else f"emotion.{name}"
            self.vars[key] = value
        await self.ports.emit(
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
        secret = self.ports.secrets.get(step.secret_env, "")
        if not secret:
            # An unsigned request is never sent: the receiver could not tell it
            # from a forged one.
            error = f"no signing secret: set {step.secret_env}"
        else:
            stamp = str(int(self.ports.wall()))
            headers = signed_headers(secret, stamp, step.method, url, body)
            request = WebhookRequest(step.method, url, body, headers, step.timeout_s)
            try:
                reply = await asyncio.wait_for(
                    self.ports.webhooks.send(request), step.timeout_s + 0.5
                )
                self.vars["webhook.status"] = reply.status
                document = parse_reply(reply)
                for var, path in step.map.items():
                    value = pick(document, path)
                    if value is not None:
                        await self.set_var(var, value)
            except (WebhookError, TimeoutError) as err:
                error = str(err) or "timeout"
        self.vars["webhook.error"] = error
        await self.ports.emit("IvrWebhook", url=url.split("?")[0], ok=not error, error=error)
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
        raise FlowEnd("queued", ticket.queue)

    async def _enter_queue(self, step: EnterQueue) -> QueueTicket | None:
        """The ticket once the ACD has the call; None (and ``queue_error`` set) if refused."""
        ports, vars_ = self.ports, self.vars
        intent = step.intent
        if step.choice is not None:
            value = to_text(vars_.get(step.choice.var, ""))
            if step.choice.choices:
                intent = step.choice.choices.get(value, step.choice.default)
            else:
                intent = value or step.choice.default
        reason = ""
        if ports.queues is None:
            reason = "no ACD: this engine runs IVR flows without queues"
        elif step.queue is None and not intent:
            assert step.choice is not None  # the loader requires a queue or an intent
            reason = (
                f"{step.choice.var}={to_text(vars_.get(step.choice.var, ''))!r} is none of "
                f"{sorted(step.choice.choices)} and the step has no default intent"
            )
        ticket = None
        if not reason:
            assert ports.queues is not None
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
                ticket = await ports.queues.enter(request)
            except QueueRefused as err:
                reason = str(err)
            except QueueHandoffFailed as err:
                raise FlowEnd("failed", str(err)) from err
        if ticket is None:
            log.warning(
                "IVR call not queued",
                call_id=self.session.call_id,
                flow=self.flow.name,
                reason=reason,
            )
            vars_["queue_error"] = reason
            await ports.emit(
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
        if not problem and self.ports.calls is None:
            problem = "no calls service: this engine runs IVR flows without transfers"
        if not problem:
            assert self.ports.calls is not None
            try:
                await self.ports.calls.transfer(request)
            except TransferRefused as err:
                problem = str(err)
        if problem:
            self.vars["transfer_error"] = problem
            await self.ports.emit("IvrTransferRefused", flow=self.flow.name, reason=problem)
            return self.next_of(index, step.on_error)
        target = decide.transfer_target(request)
        self.finish_data = {"target": target}
        raise FlowEnd("transferred", target)

    async def record(self, index: int, step: Record) -> int | None:
        stamp = int(self.ports.wall())
        safe_id = "".join(ch for ch in self.session.call_id if ch.isalnum() or ch in "-_.")
        path = f"{self.ports.recordings_dir.rstrip('/')}/ivr-{safe_id}-{stamp}.wav"
        try:
            if step.beep:
                await self.play("beep")
            take = await self.session.record(path, step.max_s, step.silence_s)
        except HangupDuringRecord as gone:
            # Hanging up is how most callers end a voicemail: the switch keeps what it
            # recorded (Asterisk's RECORD FILE answers "(hangup) endpos=<n>", FreeSWITCH's
            # record app completes after CHANNEL_HANGUP), so the message is reported
            # before the flow ends as on any hang-up. The channel is gone: no set_var.
            await self._recorded_before_hangup(step, path, gone.take)
            raise
        except HangupDuringSession:
            raise
        except Exception as err:  # ActionFailed and friends: the on_error branch
            self.vars["record.error"] = str(err)
            log.warning("IVR record failed", call_id=self.session.call_id, error=str(err))
            return self.next_of(index, step.on_error)
        self.recorded.add(path)
        await self.set_var(step.into, path)
        # The message's length as the switch measured the file (FreeSWITCH's
        # variable_record_ms, outbound-socket-record-silence*.esl); None where the switch
        # does not say (Asterisk's RECORD FILE).
        duration_ms = take.duration_ms if take is not None else None
        if duration_ms is not None:
            self.vars["record.duration_ms"] = duration_ms
        ended_by = "silence" if take is not None and take.ended_by_silence else None
        await self._emit_recorded(step, path, duration_ms, ended_by)
        return self.next_of(index)

    async def _recorded_before_hangup(
        self, step: Record, path: str, take: RecordedTake | None
    ) -> None:
        duration_ms = take.duration_ms if take is not None else None
        empty = duration_ms == 0 or (
            take is not None and take.size_bytes is not None and take.size_bytes <= WAV_HEADER
        )
        if empty:
            log.info(
                "IVR record: the caller hung up before anything was recorded; no message",
                call_id=self.session.call_id,
                path=path,
            )
            return
        self.vars[step.into] = path
        if duration_ms is not None:
            self.vars["record.duration_ms"] = duration_ms
        # take None: the switch said nothing about the take before the session ended
        # (FreeSWITCH's record never completed). The file may hold the message, so it is
        # reported with an unknown length rather than lost.
        await self._emit_recorded(step, path, duration_ms, "hangup")

    async def _emit_recorded(
        self, step: Record, path: str, duration_ms: int | None, ended_by: str | None
    ) -> None:
        # For the event stream's consumers (webhooks, the live feed). The runtime's sink
        # journals the event in the outbox before it returns (LanePublisher.put), and the
        # shield lets it finish if the session's task is cancelled meanwhile (shutdown).
        await asyncio.shield(
            self.ports.emit(
                "IvrRecorded",
                flow=self.flow.name,
                path=path,
                max_s=step.max_s,
                duration_ms=duration_ms,
                ended_by=ended_by,
                kind="voicemail",
            )
        )

    async def split(self, index: int, step: Split) -> int | None:
        variant = decide.split_variant(step, self.session.call_id)
        await self.set_var(f"split.{step.name}", variant.name)
        if self.ports.calls is not None:
            try:
                await self.ports.calls.annotate(
                    self.session.call_id, {f"ivr_split.{step.name}": variant.name}
                )
            except Exception as err:  # the caller still gets the variant
                log.warning("IVR split not recorded on the call", error=str(err))
        await self.ports.emit("IvrSplit", flow=self.flow.name, test=step.name, variant=variant.name)
        return self.next_of(index, variant.goto)
