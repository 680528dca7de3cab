"""Load IVR flows from YAML with errors that point at file:line.

We parse with PyYAML's node API (``yaml.compose``) rather than ``safe_load``
so every value keeps its source position; an author gets
``ivr/main.yaml:12: gather.max_digits: expected an integer 1-32 (got 'four')``
instead of a stack trace.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection
from pathlib import Path

import yaml

from engine.ivr.model import (
    Answer,
    EnterQueue,
    Flow,
    Gather,
    Hangup,
    IntentChoice,
    Play,
    Say,
    SetVars,
    Step,
    template_fields,
)
from engine.ivr.queueing import QueueCatalog

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Sound names are relative to the switch's sound directory: no absolute paths,
# no "..", so a flow file cannot make the switch play arbitrary files.
PROMPT = re.compile(r"^(?!.*\.\.)(?!/)[A-Za-z0-9_/.-]{1,200}$")
VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
STEP_KINDS = ("answer", "play", "say", "gather", "set", "hangup", "queue")
# The ACD's own rules for what a queued call carries (engine/acd/endpoints.py
# TAG and CUSTOMER_KEY): checked here so an author sees them at file:line; the
# ACD checks again when the call enters (values filled in from variables).
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CUSTOMER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,40}$")
MAX_PRIORITY = 99
MAX_FEATURES = 256
# espeak-ng voice names: "en", "en-us", "cmn-latn-pinyin" (matched case-insensitively).
VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$")
DEFAULT_VOICE = "en"
MAX_SAY_CHARS = 1000
# Newlines and tabs come from YAML block scalars; any other control character
# is a paste accident and would reach the TTS engine verbatim.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class FlowError(Exception):
    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(node: yaml.Node, src: str, what: str) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise FlowError(src, _line(node), f"{what}: expected a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise FlowError(src, _line(key), f"{what}: keys must be plain words")
        out[str(key.value)] = value
    return out


def _scalar(node: yaml.Node, src: str, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise FlowError(src, _line(node), f"{what}: expected a single value")
    return str(node.value)


def _int(node: yaml.Node, src: str, what: str, lo: int, hi: int) -> int:
    text = _scalar(node, src, what)
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise FlowError(src, _line(node), f"{what}: expected an integer {lo}-{hi} (got {text!r})")
    return int(text)


def _float(node: yaml.Node, src: str, what: str, lo: float, hi: float) -> float:
    text = _scalar(node, src, what)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not lo <= value <= hi:
        raise FlowError(src, _line(node), f"{what}: expected a number {lo}-{hi} (got {text!r})")
    return value


def _check(pattern: re.Pattern[str], node: yaml.Node, src: str, what: str, hint: str) -> str:
    text = _scalar(node, src, what)
    if not pattern.match(text):
        raise FlowError(src, _line(node), f"{what}: expected {hint} (got {text!r})")
    return text


def _only(fields: dict[str, yaml.Node], allowed: set[str], src: str, what: str) -> None:
    for key, value in fields.items():
        if key not in allowed:
            raise FlowError(
                src, _line(value), f"{what}: unknown key {key!r}; allowed: {sorted(allowed)}"
            )


def _say(body: yaml.Node, src: str, what: str, line: int, voices: Collection[str] | None) -> Say:
    text_node: yaml.Node = body
    voice_node: yaml.Node | None = None
    if isinstance(body, yaml.SequenceNode):
        raise FlowError(
            src, _line(body), f"{what}: expected the text, or a mapping with text: and voice:"
        )
    if not isinstance(body, yaml.ScalarNode):
        f = _mapping(body, src, what)
        _only(f, {"text", "voice"}, src, what)
        if "text" not in f:
            raise FlowError(src, _line(body), f"{what}.text: required (what to say)")
        text_node, voice_node = f["text"], f.get("voice")
    text = _scalar(text_node, src, f"{what}.text")
    where = _line(text_node)
    if not text.strip():
        raise FlowError(src, where, f"{what}.text: expected some words to say (got {text!r})")
    if len(text) > MAX_SAY_CHARS:
        raise FlowError(
            src,
            where,
            f"{what}.text: expected at most {MAX_SAY_CHARS} characters (got {len(text)})",
        )
    if _CONTROL.search(text):
        raise FlowError(src, where, f"{what}.text: contains a control character")
    try:
        fields = template_fields(text)
    except ValueError as err:
        raise FlowError(
            src, where, f"{what}.text: bad {{variable}} template: {err} (write {{{{ for a brace)"
        ) from err
    for name in fields:
        if not VAR.match(name):
            raise FlowError(
                src, where, f"{what}.text: {{{name}}} is not a variable name such as {{code}}"
            )
    voice = DEFAULT_VOICE
    if voice_node is not None:
        voice = _check(VOICE, voice_node, src, f"{what}.voice", "a TTS voice such as en")
    if voices is not None and voice.lower() not in voices:
        close = difflib.get_close_matches(voice.lower(), sorted(voices), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise FlowError(
            src,
            _line(voice_node) if voice_node is not None else line,
            f"{what}.voice: unknown TTS voice {voice!r}{hint} (`espeak-ng --voices` lists them)",
        )
    return Say(text=text, voice=voice, line=line)


def _suggest(value: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _template(node: yaml.Node, src: str, what: str) -> str:
    """A value with ``{variable}`` fields (the ``say`` rules, one line)."""
    text = _scalar(node, src, what)
    where = _line(node)
    if _CONTROL.search(text) or "\n" in text or "\t" in text:
        raise FlowError(src, where, f"{what}: contains a control character")
    try:
        fields = template_fields(text)
    except ValueError as err:
        raise FlowError(
            src, where, f"{what}: bad {{variable}} template: {err} (write {{{{ for a brace)"
        ) from err
    for name in fields:
        if not VAR.match(name):
            raise FlowError(
                src, where, f"{what}: {{{name}}} is not a variable name such as {{code}}"
            )
    return text


def _known_intent(node: yaml.Node, src: str, what: str, catalog: QueueCatalog | None) -> str:
    intent = _check(NAME, node, src, what, "an intent name (letters, digits, '-' or '_')")
    if catalog is not None and intent not in catalog.intents:
        raise FlowError(
            src,
            _line(node),
            f"{what}: intent {intent!r} maps to no queue ([acd] intents in engine.toml has "
            f"{sorted(catalog.intents) or 'none'}){_suggest(intent, catalog.intents)}",
        )
    return intent


def _choice(node: yaml.Node, src: str, what: str, catalog: QueueCatalog | None) -> IntentChoice:
    f = _mapping(node, src, what)
    _only(f, {"from", "map", "default"}, src, what)
    if "from" not in f or "map" not in f:
        raise FlowError(
            src,
            _line(node),
            f"{what}: expected an intent name, or from: <variable> and map: {{value: intent}}",
        )
    var = _check(VAR, f["from"], src, f"{what}.from", "a variable name")
    choices: dict[str, str] = {}
    for key, value in _mapping(f["map"], src, f"{what}.map").items():
        if not key or _CONTROL.search(key):
            raise FlowError(src, _line(value), f"{what}.map: {key!r} is not a value to match")
        choices[key] = _known_intent(value, src, f"{what}.map.{key}", catalog)
    if not choices:
        raise FlowError(src, _line(f["map"]), f"{what}.map: expected at least one value: intent")
    default = (
        _known_intent(f["default"], src, f"{what}.default", catalog) if "default" in f else None
    )
    return IntentChoice(var=var, choices=choices, default=default)


def _queue(
    body: yaml.Node, src: str, what: str, line: int, catalog: QueueCatalog | None
) -> EnterQueue:
    f = _mapping(body, src, what)
    _only(f, {"queue", "intent", "tags", "priority", "features", "customer"}, src, what)
    if "queue" not in f and "intent" not in f:
        raise FlowError(src, _line(body), f"{what}: expected queue: <name> or intent: <intent>")
    queue = None
    if "queue" in f:
        queue = _check(NAME, f["queue"], src, f"{what}.queue", "a queue name")
        if catalog is not None and queue not in catalog.queues:
            raise FlowError(
                src,
                _line(f["queue"]),
                f"{what}.queue: no queue named {queue!r} ([[queues]] in engine.toml has "
                f"{sorted(catalog.queues) or 'none'}){_suggest(queue, catalog.queues)}",
            )
    intent, choice = None, None
    if "intent" in f:
        if isinstance(f["intent"], yaml.MappingNode):
            choice = _choice(f["intent"], src, f"{what}.intent", catalog)
        else:
            intent = _known_intent(f["intent"], src, f"{what}.intent", catalog)
    tags: list[str] = []
    if "tags" in f:
        node = f["tags"]
        if not isinstance(node, yaml.SequenceNode):
            raise FlowError(src, _line(node), f"{what}.tags: expected a list such as [vip]")
        for i, t in enumerate(node.value):
            tags.append(_check(TAG, t, src, f"{what}.tags[{i}]", "a tag such as vip"))
    priority = (
        _int(f["priority"], src, f"{what}.priority", 1, MAX_PRIORITY) if "priority" in f else None
    )
    features = None
    if "features" in f:
        node = f["features"]
        if not isinstance(node, yaml.SequenceNode) or not 1 <= len(node.value) <= MAX_FEATURES:
            raise FlowError(
                src, _line(node), f"{what}.features: expected a list of 1-{MAX_FEATURES} numbers"
            )
        nums = []
        for i, n in enumerate(node.value):
            text = _scalar(n, src, f"{what}.features[{i}]")
            try:
                num = float(text)
            except ValueError:
                num = float("nan")
            if not math.isfinite(num):
                raise FlowError(
                    src, _line(n), f"{what}.features[{i}]: expected a number (got {text!r})"
                )
            nums.append(num)
        sizes = catalog.feature_sizes if catalog is not None else ()
        if sizes and len(nums) not in sizes:
            raise FlowError(
                src,
                _line(node),
                f"{what}.features: {len(nums)} numbers, expected {min(sizes)} (the length of "
                "the agents' capability vectors)",
            )
        features = tuple(nums)
    customer: dict[str, str] = {}
    if "customer" in f:
        for key, value in _mapping(f["customer"], src, f"{what}.customer").items():
            if not CUSTOMER_KEY.match(key):
                raise FlowError(
                    src,
                    _line(value),
                    f"{what}.customer: {key!r} is not a key (a letter, then letters, digits or _)",
                )
            customer[key] = _template(value, src, f"{what}.customer.{key}")
    return EnterQueue(
        queue=queue,
        intent=intent,
        choice=choice,
        tags=tuple(tags),
        priority=priority,
        features=features,
        customer=customer,
        line=line,
    )


def _step(
    node: yaml.Node,
    src: str,
    index: int,
    voices: Collection[str] | None = None,
    catalog: QueueCatalog | None = None,
) -> Step:
    line = _line(node)
    where = f"steps[{index}]"
    if isinstance(node, yaml.ScalarNode):
        kind, body = str(node.value), None
    else:
        items = _mapping(node, src, where)
        if len(items) != 1:
            raise FlowError(src, line, f"{where}: expected one step kind, one of {STEP_KINDS}")
        kind, body = next(iter(items.items()))
    what = f"{where}.{kind}"
    if kind not in STEP_KINDS:
        raise FlowError(src, line, f"{where}: unknown step {kind!r}; expected one of {STEP_KINDS}")
    if kind == "answer":
        return Answer(line=line)
    if kind == "hangup":
        return Hangup(line=line)
    if body is None:
        raise FlowError(src, line, f"{what}: needs a value")
    if kind == "play":
        return Play(
            _check(PROMPT, body, src, what, "a sound file name such as demo-congrats"), line
        )
    if kind == "say":
        return _say(body, src, what, line, voices)
    if kind == "gather":
        f = _mapping(body, src, what)
        _only(f, {"into", "prompt", "max_digits", "timeout_s", "terminators"}, src, what)
        if "into" not in f:
            raise FlowError(src, _line(body), f"{what}.into: required (the variable to fill)")
        return Gather(
            into=_check(VAR, f["into"], src, f"{what}.into", "a variable name"),
            prompt=_check(PROMPT, f["prompt"], src, f"{what}.prompt", "a sound file name")
            if "prompt" in f
            else "",
            max_digits=_int(f["max_digits"], src, f"{what}.max_digits", 1, 32)
            if "max_digits" in f
            else 1,
            timeout_s=_float(f["timeout_s"], src, f"{what}.timeout_s", 0.5, 120)
            if "timeout_s" in f
            else 5.0,
            terminators=_scalar(f["terminators"], src, f"{what}.terminators")
            if "terminators" in f
            else "#",
            line=line,
        )
    if kind == "queue":
        return _queue(body, src, what, line, catalog)
    if kind == "set":
        f = _mapping(body, src, what)
        values = {}
        for key, value in f.items():
            if not VAR.match(key):
                raise FlowError(src, _line(value), f"{what}: {key!r} is not a variable name")
            values[key] = _scalar(value, src, f"{what}.{key}")
        return SetVars(values, line)
    raise FlowError(src, line, f"{where}: unknown step {kind!r}; expected one of {STEP_KINDS}")


def parse_flow(
    text: str,
    source: str,
    voices: Collection[str] | None = None,
    catalog: QueueCatalog | None = None,
) -> Flow:
    """Parse one flow. ``voices`` (lower-case TTS voice names) enables the check
    of every ``say`` voice; ``None`` skips it (no TTS engine to ask). ``catalog``
    (the configured queues and intents) enables the check of every ``queue``
    step's queue and intents; ``None`` skips it (no ACD to ask)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else 1
        raise FlowError(source, line, f"not valid YAML: {getattr(err, 'problem', err)}") from err
    if root is None:
        raise FlowError(source, 1, "empty file; expected 'name:' and 'steps:'")
    top = _mapping(root, source, "flow")
    _only(top, {"name", "description", "steps"}, source, "flow")
    for required in ("name", "steps"):
        if required not in top:
            raise FlowError(source, _line(root), f"flow: '{required}:' is required")
    name = _check(NAME, top["name"], source, "name", "letters, digits, '-' or '_'")
    steps_node = top["steps"]
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        raise FlowError(source, _line(steps_node), "steps: expected a non-empty list")
    steps = tuple(_step(n, source, i, voices, catalog) for i, n in enumerate(steps_node.value))
    desc = _scalar(top["description"], source, "description") if "description" in top else ""
    return Flow(name=name, source=source, steps=steps, description=desc)


def load_dir(
    directory: Path,
    voices: Collection[str] | None = None,
    catalog: QueueCatalog | None = None,
) -> tuple[dict[str, Flow], list[FlowError]]:
    """Load every *.yaml flow. Bad files are returned as errors, never raised,
    so one broken file cannot take the good ones down."""
    flows: dict[str, Flow] = {}
    errors: list[FlowError] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            flow = parse_flow(path.read_text(encoding="utf-8"), str(path), voices, catalog)
        except FlowError as err:
            errors.append(err)
            continue
        except (OSError, UnicodeDecodeError) as err:
            errors.append(FlowError(str(path), 1, f"cannot read: {err}"))
            continue
        if flow.name in flows:
            errors.append(
                FlowError(
                    str(path),
                    1,
                    f"flow name {flow.name!r} already used by {flows[flow.name].source}",
                )
            )
            continue
        flows[flow.name] = flow
    return flows, errors
