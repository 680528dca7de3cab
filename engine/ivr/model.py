"""IVR flow model: a flow is an ordered list of steps (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.ivr.expr import Expr, Value
from engine.ivr.template import fields as template_fields

__all__ = ["template_fields"]


@dataclass(frozen=True, slots=True)
class Answer:
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Play:
    prompt: str  # a sound name; may hold {var} fields (checked again once filled in)
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Say:
    """Speak ``text`` with a TTS ``voice``. ``{name}`` placeholders are flow variables;
    a text without any is rendered when the flow loads."""

    text: str
    voice: str = "en"
    line: int = 0
    label: str = ""

    @property
    def is_static(self) -> bool:
        return not template_fields(self.text)


@dataclass(frozen=True, slots=True)
class Gather:
    """Collect DTMF and/or speech into ``into``.

    Fewer than ``min_digits`` digits is *invalid*, nothing at all a *timeout*;
    each goes to its branch (``on_invalid``/``on_timeout``) or, without one, on
    to the next step with ``into`` set to what was heard."""

    into: str
    prompt: str = ""
    max_digits: int = 1
    timeout_s: float = 5.0
    terminators: str = "#"
    line: int = 0
    label: str = ""
    min_digits: int = 0
    input: str = "dtmf"  # dtmf | speech | both
    say: Say | None = None
    speech_timeout_s: float = 5.0
    min_confidence: float = 0.0
    on_timeout: str = ""
    on_invalid: str = ""
    asr: str = ""  # the ASR plugin for speech ("" = the flow's, else the engine's)


@dataclass(frozen=True, slots=True)
class SetVars:
    values: dict[str, str] = field(default_factory=dict)
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Hangup:
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class IntentChoice:
    """The intent picked by a flow variable's value (e.g. the digit a ``gather`` got)."""

    var: str
    choices: dict[str, str] = field(default_factory=dict)  # value -> intent
    default: str | None = None  # when the value is none of the choices


@dataclass(frozen=True, slots=True)
class EnterQueue:
    """Hand the call to the ACD: it waits in a queue and the IVR session ends.

    ``queue`` wins over the intent (as in ``POST /v1/queues/{name}/calls``); the
    intent is either fixed (``intent``) or chosen by a variable (``choice``).
    ``customer`` values are ``{name}`` templates over the flow variables. The steps
    after a ``queue`` step run only when the call could not be queued.
    """

    queue: str | None = None
    intent: str | None = None
    choice: IntentChoice | None = None
    tags: tuple[str, ...] = ()
    priority: int | None = None
    features: tuple[float, ...] | None = None
    customer: dict[str, str] = field(default_factory=dict)
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class MenuOption:
    """One choice: a key, speech keywords (any language) and/or an intent; and where it goes."""

    goto: str
    dtmf: str = ""
    speech: tuple[str, ...] = ()
    intent: str = ""
    value: str = ""  # what `into` is set to: the key, else the first keyword, else the intent


@dataclass(frozen=True, slots=True)
class Menu:
    options: tuple[MenuOption, ...]
    prompt: str = ""
    say: Say | None = None
    retries: int = 2
    timeout_s: float = 5.0
    input: str = "dtmf"
    into: str = ""
    invalid_say: Say | None = None
    min_confidence: float = 0.5
    on_invalid: str = ""
    on_timeout: str = ""
    line: int = 0
    label: str = ""
    asr: str = ""  # the ASR plugin for speech ("" = the flow's, else the engine's)


@dataclass(frozen=True, slots=True)
class Condition:
    """``if: <expr>``: to ``then`` when true, else to ``else_`` (or the next step)."""

    expr: Expr
    then: str
    else_: str = ""
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Switch:
    expr: Expr
    cases: tuple[tuple[str, str], ...]  # (value as text, node)
    default: str = ""
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Goto:
    """To a node of this flow, or to another flow (its first step, or ``node``)."""

    node: str = ""
    flow: str = ""
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str  # http(s); {var} fields are URL-quoted when filled in
    method: str = "POST"
    timeout_s: float = 3.0
    body: dict[str, str] = field(default_factory=dict)  # JSON body (POST) / query (GET)
    map: dict[str, str] = field(default_factory=dict)  # variable -> dotted path in the reply
    secret_env: str = "ENGINE_IVR_WEBHOOK_SECRET"
    on_error: str = ""
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Transfer:
    """To a registered endpoint, a number through a trunk group, or a dialplan target."""

    endpoint: str = ""
    number: str = ""
    trunk_group: str = ""
    context: str = ""
    exten: str = ""
    priority: int = 1
    timeout_s: float = 30.0
    on_error: str = ""
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Record:
    into: str = "record.path"
    max_s: float = 60.0
    beep: bool = True
    silence_s: float = 0.0
    on_error: str = ""
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    share: int
    goto: str


@dataclass(frozen=True, slots=True)
class Split:
    name: str
    variants: tuple[Variant, ...]
    line: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class Analyze:
    """Run the intent classifier and the emotion scorer on ``text``."""

    text: str = "{speech.text}"
    line: int = 0
    label: str = ""


Step = (
    Answer
    | Play
    | Say
    | Gather
    | SetVars
    | Hangup
    | EnterQueue
    | Menu
    | Condition
    | Switch
    | Goto
    | Webhook
    | Transfer
    | Record
    | Split
    | Analyze
)


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    source: str
    steps: tuple[Step, ...]
    description: str = ""
    defaults: dict[str, Value] = field(default_factory=dict)  # `variables:`
    labels: dict[str, int] = field(default_factory=dict)  # node id -> step index
    asr: str = ""  # the flow's ASR plugin ("" = the engine's default)

    def index_of(self, label: str) -> int:
        return self.labels[label]
