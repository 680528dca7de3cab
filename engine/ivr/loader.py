"""Load IVR flows from YAML with errors that point at file:line.

We parse with PyYAML's node API (``yaml.compose``) rather than ``safe_load``
so every value keeps its source position; an author gets
``ivr/main.yaml:12: gather.max_digits: expected an integer 1-32 (got 'four')``
instead of a stack trace.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from engine.ivr import graph
from engine.ivr.expr import ExprError, Value, compile_expr
from engine.ivr.model import (
    Analyze,
    Answer,
    Condition,
    EnterQueue,
    Flow,
    Gather,
    Goto,
    Hangup,
    IntentChoice,
    Menu,
    MenuOption,
    Play,
    Record,
    Say,
    SetVars,
    Split,
    Step,
    Switch,
    Transfer,
    Variant,
    Webhook,
)
from engine.ivr.queueing import QueueCatalog
from engine.ivr.template import VAR, TemplateError
from engine.ivr.template import fields as template_fields

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Sound names are relative to the switch's sound directory: no absolute paths,
# no "..", so a flow file cannot make the switch play arbitrary files. Letters
# of any script are allowed (a Chinese prompt may be named 优惠介绍).
PROMPT = re.compile(r"^(?!.*\.\.)(?!/)[\w/.-]{1,200}$")
STEP_KINDS = (
    "answer",
    "play",
    "say",
    "gather",
    "set",
    "hangup",
    "queue",
    "menu",
    "if",
    "switch",
    "goto",
    "webhook",
    "transfer",
    "record",
    "split",
    "analyze",
)
# Variables every flow may read without setting them (docs/ivr.md "Variables").
BUILTINS = frozenset(
    {
        "call.id",
        "caller.number",
        "flow.name",
        "input.kind",
        "speech.text",
        "speech.confidence",
        "intent",
        "intent.score",
        "emotion.anger",
        "emotion.joy",
        "emotion.sadness",
        "emotion.fear",
        "sentiment",
        "queue_error",
        "transfer_error",
        "webhook.status",
        "webhook.error",
        "record.path",
        "record.error",
    }
)
INPUTS = ("dtmf", "speech", "both")
METHODS = ("GET", "POST")
URL = re.compile(r"^https?://[^\s]{1,2000}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
# Dialplan names the switch will see: plain words only (no ',', '|', '$' or spaces).
DIALPLAN_WORD = re.compile(r"^[A-Za-z0-9_+*#.-]{1,80}$")
NUMBER = re.compile(r"^\+?[0-9]{2,20}$")
ENDPOINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
MAX_STEPS = 500
PRIORITY_WORDS = {"low": 1, "normal": 5, "high": 9}
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
    _fields(text, src, where, f"{what}.text")
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


def _fields(text: str, src: str, where: int, what: str) -> list[str]:
    try:
        return template_fields(text)
    except TemplateError as err:
        raise FlowError(src, where, f"{what}: {err}") from err


def _suggest(value: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _template(node: yaml.Node, src: str, what: str) -> str:
    """A value with ``{variable}`` fields (the ``say`` rules, one line)."""
    text = _scalar(node, src, what)
    where = _line(node)
    if _CONTROL.search(text) or "\n" in text or "\t" in text:
        raise FlowError(src, where, f"{what}: contains a control character")
    _fields(text, src, where, what)
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
    if "from" not in f:
        raise FlowError(
            src,
            _line(node),
            f"{what}: expected an intent name, or from: <variable> (and map: {{value: intent}})",
        )
    var = _check(VAR, f["from"], src, f"{what}.from", "a variable name")
    choices: dict[str, str] = {}
    if "map" in f:
        for key, value in _mapping(f["map"], src, f"{what}.map").items():
            if not key or _CONTROL.search(key):
                raise FlowError(src, _line(value), f"{what}.map: {key!r} is not a value to match")
            choices[key] = _known_intent(value, src, f"{what}.map.{key}", catalog)
        if not choices:
            raise FlowError(
                src, _line(f["map"]), f"{what}.map: expected at least one value: intent"
            )
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
    priority = None
    if "priority" in f:
        word = _scalar(f["priority"], src, f"{what}.priority")
        priority = PRIORITY_WORDS.get(word) or _int(
            f["priority"], src, f"{what}.priority", 1, MAX_PRIORITY
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


def _label_ref(node: yaml.Node, src: str, what: str, refs: list[tuple[str, int, str]]) -> str:
    """A node id a branch names; checked once every step is parsed."""
    label = _check(NAME, node, src, what, "a step id (letters, digits, '-' or '_')")
    refs.append((label, _line(node), what))
    return label


def _opt_label(
    f: dict[str, yaml.Node], key: str, src: str, what: str, refs: list[tuple[str, int, str]]
) -> str:
    return _label_ref(f[key], src, f"{what}.{key}", refs) if key in f else ""


def _sound(f: dict[str, yaml.Node], key: str, src: str, what: str) -> str:
    if key not in f:
        return ""
    return _check(PROMPT, f[key], src, f"{what}.{key}", "a sound file name such as beep")


def _input(f: dict[str, yaml.Node], src: str, what: str, default: str) -> str:
    if "input" not in f:
        return default
    value = _scalar(f["input"], src, f"{what}.input")
    if value not in INPUTS:
        raise FlowError(
            src, _line(f["input"]), f"{what}.input: expected one of {INPUTS} (got {value!r})"
        )
    return value


def _bool(node: yaml.Node, src: str, what: str) -> bool:
    text = _scalar(node, src, what).lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off"):
        return False
    raise FlowError(src, _line(node), f"{what}: expected true or false (got {text!r})")


def _gather(
    body: yaml.Node,
    src: str,
    what: str,
    line: int,
    voices: Collection[str] | None,
    refs: list[tuple[str, int, str]],
) -> Gather:
    f = _mapping(body, src, what)
    _only(
        f,
        {
            "into",
            "prompt",
            "say",
            "max_digits",
            "min_digits",
            "timeout_s",
            "speech_timeout_s",
            "terminators",
            "input",
            "min_confidence",
            "on_timeout",
            "on_invalid",
        },
        src,
        what,
    )
    if "into" not in f:
        raise FlowError(src, _line(body), f"{what}.into: required (the variable to fill)")
    max_digits = _int(f["max_digits"], src, f"{what}.max_digits", 1, 32) if "max_digits" in f else 1
    min_digits = _int(f["min_digits"], src, f"{what}.min_digits", 0, 32) if "min_digits" in f else 0
    if min_digits > max_digits:
        raise FlowError(
            src, _line(f["min_digits"]), f"{what}.min_digits: more than max_digits ({max_digits})"
        )
    terminators = "#"
    if "terminators" in f:
        terminators = _scalar(f["terminators"], src, f"{what}.terminators")
        if any(ch not in "0123456789*#ABCD" for ch in terminators):
            raise FlowError(
                src,
                _line(f["terminators"]),
                f"{what}.terminators: expected DTMF keys such as '#' (got {terminators!r})",
            )
    return Gather(
        into=_check(VAR, f["into"], src, f"{what}.into", "a variable name"),
        prompt=_sound(f, "prompt", src, what),
        max_digits=max_digits,
        timeout_s=_float(f["timeout_s"], src, f"{what}.timeout_s", 0.5, 120)
        if "timeout_s" in f
        else 5.0,
        terminators=terminators,
        line=line,
        min_digits=min_digits,
        input=_input(f, src, what, "dtmf"),
        say=_say(f["say"], src, f"{what}.say", line, voices) if "say" in f else None,
        speech_timeout_s=_float(f["speech_timeout_s"], src, f"{what}.speech_timeout_s", 0.5, 120)
        if "speech_timeout_s" in f
        else 5.0,
        min_confidence=_float(f["min_confidence"], src, f"{what}.min_confidence", 0, 1)
        if "min_confidence" in f
        else 0.0,
        on_timeout=_opt_label(f, "on_timeout", src, what, refs),
        on_invalid=_opt_label(f, "on_invalid", src, what, refs),
    )


def _menu(
    body: yaml.Node,
    src: str,
    what: str,
    line: int,
    voices: Collection[str] | None,
    refs: list[tuple[str, int, str]],
) -> Menu:
    f = _mapping(body, src, what)
    _only(
        f,
        {
            "prompt",
            "say",
            "options",
            "retries",
            "timeout_s",
            "input",
            "into",
            "invalid_say",
            "min_confidence",
            "on_invalid",
            "on_timeout",
        },
        src,
        what,
    )
    if "prompt" not in f and "say" not in f:
        raise FlowError(src, _line(body), f"{what}: expected prompt: <sound> and/or say: <text>")
    node = f.get("options")
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        where = _line(node) if node is not None else _line(body)
        raise FlowError(
            src, where, f"{what}.options: expected a list such as [{{dtmf: '1', goto: sales}}]"
        )
    options: list[MenuOption] = []
    keys: set[str] = set()
    for i, item in enumerate(node.value):
        ow = f"{what}.options[{i}]"
        o = _mapping(item, src, ow)
        _only(o, {"dtmf", "speech", "intent", "goto"}, src, ow)
        if "goto" not in o:
            raise FlowError(src, _line(item), f"{ow}.goto: required (the step this option runs)")
        dtmf = ""
        if "dtmf" in o:
            dtmf = _scalar(o["dtmf"], src, f"{ow}.dtmf")
            if not re.fullmatch(r"[0-9*#]{1,4}", dtmf):
                raise FlowError(
                    src, _line(o["dtmf"]), f"{ow}.dtmf: expected 1-4 keys 0-9 * # (got {dtmf!r})"
                )
            if dtmf in keys:
                raise FlowError(src, _line(o["dtmf"]), f"{ow}.dtmf: key {dtmf!r} used twice")
            keys.add(dtmf)
        words: list[str] = []
        if "speech" in o:
            sn = o["speech"]
            items = sn.value if isinstance(sn, yaml.SequenceNode) else [sn]
            for j, w in enumerate(items):
                word = _scalar(w, src, f"{ow}.speech[{j}]").strip().lower()
                if not word or _CONTROL.search(word):
                    raise FlowError(src, _line(w), f"{ow}.speech[{j}]: expected a keyword")
                words.append(word)
        intent = ""
        if "intent" in o:
            intent = _check(NAME, o["intent"], src, f"{ow}.intent", "an intent name")
        if not dtmf and not words and not intent:
            raise FlowError(src, _line(item), f"{ow}: expected dtmf:, speech: and/or intent:")
        options.append(
            MenuOption(
                goto=_label_ref(o["goto"], src, f"{ow}.goto", refs),
                dtmf=dtmf,
                speech=tuple(words),
                intent=intent,
                value=dtmf or (words[0] if words else intent),
            )
        )
    speechy = any(o.speech or o.intent for o in options)
    default_input = (
        "both" if speechy and any(o.dtmf for o in options) else ("speech" if speechy else "dtmf")
    )
    return Menu(
        options=tuple(options),
        prompt=_sound(f, "prompt", src, what),
        say=_say(f["say"], src, f"{what}.say", line, voices) if "say" in f else None,
        retries=_int(f["retries"], src, f"{what}.retries", 0, 9) if "retries" in f else 2,
        timeout_s=_float(f["timeout_s"], src, f"{what}.timeout_s", 0.5, 120)
        if "timeout_s" in f
        else 5.0,
        input=_input(f, src, what, default_input),
        into=_check(VAR, f["into"], src, f"{what}.into", "a variable name") if "into" in f else "",
        invalid_say=_say(f["invalid_say"], src, f"{what}.invalid_say", line, voices)
        if "invalid_say" in f
        else None,
        min_confidence=_float(f["min_confidence"], src, f"{what}.min_confidence", 0, 1)
        if "min_confidence" in f
        else 0.5,
        on_invalid=_opt_label(f, "on_invalid", src, what, refs),
        on_timeout=_opt_label(f, "on_timeout", src, what, refs),
        line=line,
    )


def _expr_of(node: yaml.Node, src: str, what: str) -> Any:
    text = _scalar(node, src, what)
    try:
        return compile_expr(text)
    except ExprError as err:
        raise FlowError(src, _line(node), f"{what}: {err} in {text!r}") from err


def _webhook(
    body: yaml.Node, src: str, what: str, line: int, refs: list[tuple[str, int, str]]
) -> Webhook:
    f = _mapping(body, src, what)
    _only(f, {"url", "method", "timeout_s", "body", "map", "secret_env", "on_error"}, src, what)
    if "url" not in f:
        raise FlowError(src, _line(body), f"{what}.url: required (http:// or https://)")
    url = _template(f["url"], src, f"{what}.url")
    if not URL.match(url):
        raise FlowError(src, _line(f["url"]), f"{what}.url: expected an http:// or https:// URL")
    method = _scalar(f["method"], src, f"{what}.method").upper() if "method" in f else "POST"
    if method not in METHODS:
        raise FlowError(src, _line(f["method"]), f"{what}.method: expected GET or POST")
    payload: dict[str, str] = {}
    if "body" in f:
        for key, value in _mapping(f["body"], src, f"{what}.body").items():
            payload[key] = _template(value, src, f"{what}.body.{key}")
    mapping: dict[str, str] = {}
    if "map" in f:
        for key, value in _mapping(f["map"], src, f"{what}.map").items():
            if not VAR.match(key):
                raise FlowError(src, _line(value), f"{what}.map: {key!r} is not a variable name")
            mapping[key] = _check(
                re.compile(r"^[\w-]+(\.[\w-]+)*$"),
                value,
                src,
                f"{what}.map.{key}",
                "a dotted path in the JSON reply such as customer.level",
            )
    return Webhook(
        url=url,
        method=method,
        timeout_s=_float(f["timeout_s"], src, f"{what}.timeout_s", 0.1, 30)
        if "timeout_s" in f
        else 3.0,
        body=payload,
        map=mapping,
        secret_env=_check(
            ENV_NAME, f["secret_env"], src, f"{what}.secret_env", "an environment variable name"
        )
        if "secret_env" in f
        else "ENGINE_IVR_WEBHOOK_SECRET",
        on_error=_opt_label(f, "on_error", src, what, refs),
        line=line,
    )


def _transfer(
    body: yaml.Node, src: str, what: str, line: int, refs: list[tuple[str, int, str]]
) -> Transfer:
    f = _mapping(body, src, what)
    _only(
        f,
        {"endpoint", "number", "trunk_group", "dialplan", "timeout_s", "on_error"},
        src,
        what,
    )
    kinds = [k for k in ("endpoint", "number", "dialplan") if k in f]
    if len(kinds) != 1:
        raise FlowError(
            src,
            _line(body),
            f"{what}: expected exactly one of endpoint:, number: (with trunk_group:) or dialplan:",
        )
    endpoint = number = group = context = exten = ""
    priority = 1
    if "endpoint" in f:
        endpoint = _template(f["endpoint"], src, f"{what}.endpoint")
        if not template_fields(endpoint) and not ENDPOINT.match(endpoint):
            raise FlowError(
                src,
                _line(f["endpoint"]),
                f"{what}.endpoint: expected an endpoint name such as 1001",
            )
    if "number" in f:
        number = _template(f["number"], src, f"{what}.number")
        if not template_fields(number) and not NUMBER.match(number):
            raise FlowError(
                src,
                _line(f["number"]),
                f"{what}.number: expected digits, optionally after + (got {number!r})",
            )
        if "trunk_group" not in f:
            raise FlowError(src, _line(body), f"{what}.trunk_group: required with number:")
    if "trunk_group" in f:
        if "number" not in f:
            raise FlowError(src, _line(f["trunk_group"]), f"{what}.trunk_group: only with number:")
        group = _check(NAME, f["trunk_group"], src, f"{what}.trunk_group", "a trunk group name")
    if "dialplan" in f:
        d = _mapping(f["dialplan"], src, f"{what}.dialplan")
        _only(d, {"context", "exten", "priority"}, src, f"{what}.dialplan")
        for key in ("context", "exten"):
            if key not in d:
                raise FlowError(src, _line(f["dialplan"]), f"{what}.dialplan.{key}: required")
        context = _check(
            DIALPLAN_WORD, d["context"], src, f"{what}.dialplan.context", "a context name"
        )
        exten = _check(DIALPLAN_WORD, d["exten"], src, f"{what}.dialplan.exten", "an extension")
        priority = (
            _int(d["priority"], src, f"{what}.dialplan.priority", 1, 999) if "priority" in d else 1
        )
    return Transfer(
        endpoint=endpoint,
        number=number,
        trunk_group=group,
        context=context,
        exten=exten,
        priority=priority,
        timeout_s=_float(f["timeout_s"], src, f"{what}.timeout_s", 1, 300)
        if "timeout_s" in f
        else 30.0,
        on_error=_opt_label(f, "on_error", src, what, refs),
        line=line,
    )


def _split(
    body: yaml.Node, src: str, what: str, line: int, refs: list[tuple[str, int, str]]
) -> Split:
    f = _mapping(body, src, what)
    _only(f, {"name", "variants"}, src, what)
    if "name" not in f or "variants" not in f:
        raise FlowError(
            src, _line(body), f"{what}: expected name: and variants: {{a: {{share: 50, goto: x}}}}"
        )
    name = _check(NAME, f["name"], src, f"{what}.name", "a test name")
    variants: list[Variant] = []
    for key, value in _mapping(f["variants"], src, f"{what}.variants").items():
        vw = f"{what}.variants.{key}"
        if not NAME.match(key):
            raise FlowError(src, _line(value), f"{vw}: {key!r} is not a variant name")
        v = _mapping(value, src, vw)
        _only(v, {"share", "goto"}, src, vw)
        if "share" not in v or "goto" not in v:
            raise FlowError(src, _line(value), f"{vw}: expected share: <percent> and goto: <step>")
        variants.append(
            Variant(
                name=key,
                share=_int(v["share"], src, f"{vw}.share", 0, 100),
                goto=_label_ref(v["goto"], src, f"{vw}.goto", refs),
            )
        )
    total = sum(v.share for v in variants)
    if len(variants) < 2 or total != 100:
        raise FlowError(
            src,
            _line(f["variants"]),
            f"{what}.variants: expected two or more shares adding up to 100 (got {total})",
        )
    return Split(name=name, variants=tuple(variants), line=line)


def _step(
    node: yaml.Node,
    src: str,
    index: int,
    voices: Collection[str] | None = None,
    catalog: QueueCatalog | None = None,
    refs: list[tuple[str, int, str]] | None = None,
) -> Step:
    refs = refs if refs is not None else []
    line = _line(node)
    where = f"steps[{index}]"
    label = ""
    extra: dict[str, yaml.Node] = {}
    if isinstance(node, yaml.ScalarNode):
        kind, body = str(node.value), None
    else:
        items = _mapping(node, src, where)
        if "id" in items:
            label = _check(
                NAME, items.pop("id"), src, f"{where}.id", "a step id (letters, digits, '-' or '_')"
            )
        if "if" in items:
            extra = {k: items.pop(k) for k in ("then", "else") if k in items}
        kinds = [k for k in items if k in STEP_KINDS]
        if len(items) != 1:
            if len(kinds) == 1:
                bad = next(k for k in items if k not in STEP_KINDS)
                raise FlowError(
                    src, _line(items[bad]), f"{where}.{kinds[0]}: unknown key {bad!r} beside it"
                )
            raise FlowError(src, line, f"{where}: expected one step kind, one of {STEP_KINDS}")
        kind, body = next(iter(items.items()))
        if (
            isinstance(body, yaml.ScalarNode)
            and body.tag.endswith(":null")
            and body.value in ("", "~", "null")
        ):
            body = None
    what = f"{where}.{kind}"
    if kind not in STEP_KINDS:
        raise FlowError(src, line, f"{where}: unknown step {kind!r}; expected one of {STEP_KINDS}")
    step = _step_body(kind, body, extra, src, what, line, voices, catalog, refs)
    if label:
        step = dataclasses.replace(step, label=label)
    return step


def _step_body(
    kind: str,
    body: yaml.Node | None,
    extra: dict[str, yaml.Node],
    src: str,
    what: str,
    line: int,
    voices: Collection[str] | None,
    catalog: QueueCatalog | None,
    refs: list[tuple[str, int, str]],
) -> Step:
    if kind == "answer":
        return Answer(line=line)
    if kind == "hangup":
        return Hangup(line=line)
    if body is None:
        raise FlowError(src, line, f"{what}: needs a value")
    if kind == "play":
        prompt = _template(body, src, what)
        if not template_fields(prompt) and not PROMPT.match(prompt):
            raise FlowError(
                src,
                _line(body),
                f"{what}: expected a sound file name such as demo-congrats (got {prompt!r})",
            )
        return Play(prompt, line)
    if kind == "say":
        return _say(body, src, what, line, voices)
    if kind == "gather":
        return _gather(body, src, what, line, voices, refs)
    if kind == "menu":
        return _menu(body, src, what, line, voices, refs)
    if kind == "queue":
        return _queue(body, src, what, line, catalog)
    if kind == "if":
        if "then" not in extra:
            raise FlowError(src, line, f"{what}: expected then: <step id> beside if:")
        return Condition(
            expr=_expr_of(body, src, what),
            then=_label_ref(extra["then"], src, f"{what}.then", refs),
            else_=_label_ref(extra["else"], src, f"{what}.else", refs) if "else" in extra else "",
            line=line,
        )
    if kind == "switch":
        f = _mapping(body, src, what)
        _only(f, {"on", "cases", "default"}, src, what)
        if "on" not in f or "cases" not in f:
            raise FlowError(
                src, _line(body), f"{what}: expected on: <expression> and cases: {{value: step}}"
            )
        cases = tuple(
            (k, _label_ref(v, src, f"{what}.cases.{k}", refs))
            for k, v in _mapping(f["cases"], src, f"{what}.cases").items()
        )
        if not cases:
            raise FlowError(
                src, _line(f["cases"]), f"{what}.cases: expected at least one value: step"
            )
        return Switch(
            expr=_expr_of(f["on"], src, f"{what}.on"),
            cases=cases,
            default=_opt_label(f, "default", src, what, refs),
            line=line,
        )
    if kind == "goto":
        if isinstance(body, yaml.ScalarNode):
            return Goto(node=_label_ref(body, src, what, refs), line=line)
        f = _mapping(body, src, what)
        _only(f, {"flow", "node"}, src, what)
        if "flow" not in f:
            raise FlowError(
                src, _line(body), f"{what}: expected a step id, or flow: <name> (and node:)"
            )
        flow = _check(NAME, f["flow"], src, f"{what}.flow", "a flow name")
        node = _check(NAME, f["node"], src, f"{what}.node", "a step id") if "node" in f else ""
        return Goto(node=node, flow=flow, line=line)
    if kind == "webhook":
        return _webhook(body, src, what, line, refs)
    if kind == "transfer":
        return _transfer(body, src, what, line, refs)
    if kind == "record":
        f = _mapping(body, src, what)
        _only(f, {"into", "max_s", "beep", "silence_s", "on_error"}, src, what)
        return Record(
            into=_check(VAR, f["into"], src, f"{what}.into", "a variable name")
            if "into" in f
            else "record.path",
            max_s=_float(f["max_s"], src, f"{what}.max_s", 1, 3600) if "max_s" in f else 60.0,
            beep=_bool(f["beep"], src, f"{what}.beep") if "beep" in f else True,
            silence_s=_float(f["silence_s"], src, f"{what}.silence_s", 0, 60)
            if "silence_s" in f
            else 0.0,
            on_error=_opt_label(f, "on_error", src, what, refs),
            line=line,
        )
    if kind == "split":
        return _split(body, src, what, line, refs)
    if kind == "analyze":
        f = _mapping(body, src, what)
        _only(f, {"text"}, src, what)
        if "text" not in f:
            raise FlowError(src, _line(body), f"{what}.text: required (what to classify)")
        return Analyze(text=_template(f["text"], src, f"{what}.text"), line=line)
    # set
    f = _mapping(body, src, what)
    values = {}
    for key, value in f.items():
        if not VAR.match(key):
            raise FlowError(src, _line(value), f"{what}: {key!r} is not a variable name")
        values[key] = _template(value, src, f"{what}.{key}")
    return SetVars(values, line)


def _defaults(node: yaml.Node, src: str) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for key, value in _mapping(node, src, "variables").items():
        if not VAR.match(key):
            raise FlowError(src, _line(value), f"variables: {key!r} is not a variable name")
        text = _scalar(value, src, f"variables.{key}")
        tag = value.tag if isinstance(value, yaml.ScalarNode) else ""
        if tag.endswith(":int") or tag.endswith(":float"):
            try:
                out[key] = int(text) if tag.endswith(":int") else float(text)
            except ValueError:
                out[key] = text
        elif tag.endswith(":bool"):
            out[key] = text.lower() in ("true", "yes", "on")
        elif tag.endswith(":null"):
            out[key] = ""
        else:
            out[key] = text
    return out


def _written(step: Step) -> list[str]:
    """Variables a step sets."""
    if isinstance(step, Gather):
        return [step.into]
    if isinstance(step, Menu):
        return [step.into] if step.into else []
    if isinstance(step, SetVars):
        return list(step.values)
    if isinstance(step, Webhook):
        return list(step.map)
    if isinstance(step, Record):
        return [step.into]
    if isinstance(step, Split):
        return [f"split.{step.name}"]
    return []


def _read(step: Step) -> list[str]:
    """Variables a step reads."""
    texts: list[str] = []
    names: list[str] = []
    if isinstance(step, Say):
        texts.append(step.text)
    elif isinstance(step, Play):
        texts.append(step.prompt)
    elif isinstance(step, Gather | Menu):
        if step.say is not None:
            texts.append(step.say.text)
        if isinstance(step, Menu) and step.invalid_say is not None:
            texts.append(step.invalid_say.text)
    elif isinstance(step, SetVars):
        texts.extend(step.values.values())
    elif isinstance(step, Webhook):
        texts.append(step.url)
        texts.extend(step.body.values())
    elif isinstance(step, Transfer):
        texts.extend([step.endpoint, step.number])
    elif isinstance(step, Analyze):
        texts.append(step.text)
    elif isinstance(step, EnterQueue):
        texts.extend(step.customer.values())
        if step.choice is not None:
            names.append(step.choice.var)
    elif isinstance(step, Condition | Switch):
        names.extend(sorted(step.expr.names))
    for text in texts:
        names.extend(template_fields(text))
    return names


def check_reach(flow: Flow, entries: Collection[str] = ()) -> None:
    """Every step must be reachable from the first one or from ``entries`` (the
    steps other flows' ``goto`` names)."""
    starts = [0] + [flow.labels[e] for e in entries if e in flow.labels]
    for index in graph.unreachable(flow, starts):
        step = flow.steps[index]
        raise FlowError(
            flow.source,
            step.line,
            f"steps[{index}]: unreachable (no step leads here; give it an id: and a branch to it)",
        )


def _check_graph(flow: Flow, refs: list[tuple[str, int, str]]) -> None:
    src = flow.source
    for label, line, what in refs:
        if label not in flow.labels:
            raise FlowError(
                src, line, f"{what}: no step has id {label!r}{_suggest(label, flow.labels)}"
            )
    known = set(BUILTINS) | set(flow.defaults)
    for step in flow.steps:
        known.update(_written(step))
    for step in flow.steps:
        for name in _read(step):
            if name not in known:
                raise FlowError(
                    src,
                    step.line,
                    f"unknown variable {name!r}: no step sets it and it is not declared under "
                    f"variables: nor built in{_suggest(name, known)}",
                )
    cycle = graph.busy_cycle(flow)
    if cycle is not None:
        lines = ", ".join(str(flow.steps[i].line) for i in cycle)
        raise FlowError(
            src,
            flow.steps[cycle[0]].line,
            f"steps[{cycle[0]}]: a loop that never waits for the caller (lines {lines}); "
            "put a gather, menu or record on it",
        )


def parse_flow(
    text: str,
    source: str,
    voices: Collection[str] | None = None,
    catalog: QueueCatalog | None = None,
    *,
    reach: bool = True,
) -> Flow:
    """Parse one flow. ``reach=False`` leaves out the unreachable-step check
    (:func:`load_dir` makes it once it knows which steps other flows jump to).
    ``voices`` (lower-case TTS voice names) enables the check of every ``say``
    voice; ``None`` skips it (no TTS engine to ask). ``catalog`` (the configured
    queues and intents) enables the check of every ``queue`` step's queue and
    intents; ``None`` skips it (no ACD to ask)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else 1
        raise FlowError(source, line, f"not valid YAML: {getattr(err, 'problem', err)}") from err
    if root is None:
        raise FlowError(source, 1, "empty file; expected 'name:' and 'steps:'")
    top = _mapping(root, source, "flow")
    _only(top, {"name", "description", "steps", "variables"}, source, "flow")
    for required in ("name", "steps"):
        if required not in top:
            raise FlowError(source, _line(root), f"flow: '{required}:' is required")
    name = _check(NAME, top["name"], source, "name", "letters, digits, '-' or '_'")
    steps_node = top["steps"]
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        raise FlowError(source, _line(steps_node), "steps: expected a non-empty list")
    if len(steps_node.value) > MAX_STEPS:
        raise FlowError(source, _line(steps_node), f"steps: at most {MAX_STEPS} steps")
    refs: list[tuple[str, int, str]] = []
    steps = tuple(
        _step(n, source, i, voices, catalog, refs) for i, n in enumerate(steps_node.value)
    )
    labels: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.label:
            if step.label in labels:
                raise FlowError(
                    source,
                    step.line,
                    f"steps[{i}].id: {step.label!r} already names steps[{labels[step.label]}]",
                )
            labels[step.label] = i
    desc = _scalar(top["description"], source, "description") if "description" in top else ""
    defaults = _defaults(top["variables"], source) if "variables" in top else {}
    flow = Flow(
        name=name,
        source=source,
        steps=steps,
        description=desc,
        defaults=defaults,
        labels=labels,
    )
    _check_graph(flow, refs)
    if reach:
        check_reach(flow)
    return flow


def check_links(flows: dict[str, Flow]) -> list[FlowError]:
    """``goto`` to another flow: that flow (and step) must exist. Returns the errors."""
    errors: list[FlowError] = []
    for flow in flows.values():
        for step in flow.steps:
            if isinstance(step, Goto) and step.flow:
                other = flows.get(step.flow)
                if other is None:
                    errors.append(
                        FlowError(
                            flow.source,
                            step.line,
                            f"goto: no flow named {step.flow!r}{_suggest(step.flow, flows)}",
                        )
                    )
                elif step.node and step.node not in other.labels:
                    errors.append(
                        FlowError(
                            flow.source,
                            step.line,
                            f"goto: flow {step.flow!r} has no step with id {step.node!r}",
                        )
                    )
    return errors


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
            flow = parse_flow(
                path.read_text(encoding="utf-8"), str(path), voices, catalog, reach=False
            )
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
    entries: dict[str, set[str]] = {}
    for flow in flows.values():
        for step in flow.steps:
            if isinstance(step, Goto) and step.flow and step.node:
                entries.setdefault(step.flow, set()).add(step.node)
    for name, flow in list(flows.items()):
        try:
            check_reach(flow, entries.get(name, ()))
        except FlowError as err:
            errors.append(err)
            del flows[name]
    return flows, errors
