"""The flow file's vocabulary: names, patterns and limits, and readers of YAML
nodes that raise :class:`FlowError` at the node's file:line.

We parse with PyYAML's node API (``yaml.compose``) rather than ``safe_load``
so every value keeps its source position; an author gets
``ivr/main.yaml:12: gather.max_digits: expected an integer 1-32 (got 'four')``
instead of a stack trace.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection

import yaml

from engine.ivr.expr import Expr, ExprError, compile_expr
from engine.ivr.template import TemplateError
from engine.ivr.template import fields as template_fields

# Patterns end in \Z, not $: $ also matches before a trailing newline, and a value
# with one ("5551234\n" from a webhook) must not pass as a number or a name.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
# What NAME takes, for errors: "letters" alone reads as "any script" to an author
# who writes 欢迎; names travel to dialplans and channel variables, so ASCII only.
NAME_CHARS = "ASCII letters A-Z a-z, digits, '-' or '_'; at most 64"
# Sound names are relative to the switch's sound directory: no absolute paths,
# no "..", so a flow file cannot make the switch play arbitrary files. Letters
# of any script are allowed (a Chinese prompt may be named 优惠介绍).
PROMPT = re.compile(r"^(?!.*\.\.)(?!/)[\w/.-]{1,200}\Z")
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
        "record.duration_ms",
        "record.error",
    }
)
#: Namespaces whose names are known only when a call runs: ``contact.<field>``, a campaign
#: contact's custom field (docs/ivr.md "Variables"). A flow may read any ``<ns><word>`` name of
#: them (one word after the dot); unset, it reads as "".
DYNAMIC_NAMESPACES = ("contact.",)
_DYNAMIC_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def is_dynamic(name: str) -> bool:
    """``name`` is one of a :data:`DYNAMIC_NAMESPACES`' names (``contact.account``)."""
    return any(
        name.startswith(ns) and _DYNAMIC_WORD.match(name[len(ns) :]) is not None
        for ns in DYNAMIC_NAMESPACES
    )


INPUTS = ("dtmf", "speech", "both")
METHODS = ("GET", "POST")
URL = re.compile(r"^https?://[^\s]{1,2000}\Z")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}\Z")
# Dialplan names the switch will see: plain words only (no ',', '|', '$' or spaces).
DIALPLAN_WORD = re.compile(r"^[A-Za-z0-9_+*#.-]{1,80}\Z")
NUMBER = re.compile(r"^\+?[0-9]{2,20}\Z")
ENDPOINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}\Z")
MAX_STEPS = 500
PRIORITY_WORDS = {"low": 1, "normal": 5, "high": 9}
# The ACD's own rules for what a queued call carries (engine/acd/endpoints.py
# TAG and CUSTOMER_KEY): checked here so an author sees them at file:line; the
# ACD checks again when the call enters (values filled in from variables).
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
CUSTOMER_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,40}\Z")
MAX_PRIORITY = 99
MAX_FEATURES = 256
# espeak-ng voice names: "en", "en-us", "cmn-latn-pinyin" (matched case-insensitively).
VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}\Z")
DEFAULT_VOICE = "en"
MAX_SAY_CHARS = 1000
# Newlines and tabs come from YAML block scalars; any other control character
# is a paste accident and would reach the TTS engine verbatim.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class FlowError(Exception):
    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def mapping(node: yaml.Node, src: str, what: str) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise FlowError(src, line_of(node), f"{what}: expected a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise FlowError(src, line_of(key), f"{what}: keys must be plain words")
        out[str(key.value)] = value
    return out


def scalar(node: yaml.Node, src: str, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise FlowError(src, line_of(node), f"{what}: expected a single value")
    return str(node.value)


def integer(node: yaml.Node, src: str, what: str, lo: int, hi: int) -> int:
    text = scalar(node, src, what)
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise FlowError(src, line_of(node), f"{what}: expected an integer {lo}-{hi} (got {text!r})")
    return int(text)


def number(node: yaml.Node, src: str, what: str, lo: float, hi: float) -> float:
    text = scalar(node, src, what)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not lo <= value <= hi:
        raise FlowError(src, line_of(node), f"{what}: expected a number {lo}-{hi} (got {text!r})")
    return value


def matching(pattern: re.Pattern[str], node: yaml.Node, src: str, what: str, hint: str) -> str:
    text = scalar(node, src, what)
    if not pattern.match(text):
        raise FlowError(src, line_of(node), f"{what}: expected {hint} (got {text!r})")
    return text


def only(fields: dict[str, yaml.Node], allowed: set[str], src: str, what: str) -> None:
    for key, value in fields.items():
        if key not in allowed:
            raise FlowError(
                src, line_of(value), f"{what}: unknown key {key!r}; allowed: {sorted(allowed)}"
            )


def fields_of(text: str, src: str, where: int, what: str) -> list[str]:
    try:
        return template_fields(text)
    except TemplateError as err:
        raise FlowError(src, where, f"{what}: {err}") from err


def suggest(value: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def template(node: yaml.Node, src: str, what: str) -> str:
    """A value with ``{variable}`` fields (the ``say`` rules, one line)."""
    text = scalar(node, src, what)
    where = line_of(node)
    if CONTROL.search(text) or "\n" in text or "\t" in text:
        raise FlowError(src, where, f"{what}: contains a control character")
    fields_of(text, src, where, what)
    return text


def label_ref(node: yaml.Node, src: str, what: str, refs: list[tuple[str, int, str]]) -> str:
    """A node id a branch names; checked once every step is parsed."""
    label = matching(NAME, node, src, what, f"a step id ({NAME_CHARS})")
    refs.append((label, line_of(node), what))
    return label


def opt_label(
    f: dict[str, yaml.Node], key: str, src: str, what: str, refs: list[tuple[str, int, str]]
) -> str:
    return label_ref(f[key], src, f"{what}.{key}", refs) if key in f else ""


def sound(f: dict[str, yaml.Node], key: str, src: str, what: str) -> str:
    if key not in f:
        return ""
    return matching(PROMPT, f[key], src, f"{what}.{key}", "a sound file name such as beep")


def input_kind(f: dict[str, yaml.Node], src: str, what: str, default: str) -> str:
    if "input" not in f:
        return default
    value = scalar(f["input"], src, f"{what}.input")
    if value not in INPUTS:
        raise FlowError(
            src, line_of(f["input"]), f"{what}.input: expected one of {INPUTS} (got {value!r})"
        )
    return value


def asr_plugin(f: dict[str, yaml.Node], src: str, what: str) -> str:
    """``asr:`` of a step or flow: an ASR plugin's name ("" when absent: the engine's)."""
    if "asr" not in f:
        return ""
    from engine.speech.asr import PLUGINS

    value = scalar(f["asr"], src, f"{what}.asr")
    if value not in PLUGINS:
        raise FlowError(
            src, line_of(f["asr"]), f"{what}.asr: expected one of {PLUGINS} (got {value!r})"
        )
    return value


def boolean(node: yaml.Node, src: str, what: str) -> bool:
    text = scalar(node, src, what).lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off"):
        return False
    raise FlowError(src, line_of(node), f"{what}: expected true or false (got {text!r})")


def expression(node: yaml.Node, src: str, what: str) -> Expr:
    text = scalar(node, src, what)
    try:
        return compile_expr(text)
    except ExprError as err:
        raise FlowError(src, line_of(node), f"{what}: {err} in {text!r}") from err
