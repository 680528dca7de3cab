"""IVR flow model: a flow is an ordered list of steps (frozen dataclasses)."""

from __future__ import annotations

import string
from dataclasses import dataclass, field


def template_fields(text: str) -> list[str]:
    """The ``{name}`` fields of a ``str.format`` template (``ValueError`` if malformed)."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


@dataclass(frozen=True, slots=True)
class Answer:
    line: int = 0


@dataclass(frozen=True, slots=True)
class Play:
    prompt: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Say:
    """Speak ``text`` with a TTS ``voice``. ``{name}`` placeholders are flow variables;
    a text without any is rendered when the flow loads."""

    text: str
    voice: str = "en"
    line: int = 0

    @property
    def is_static(self) -> bool:
        return not template_fields(self.text)


@dataclass(frozen=True, slots=True)
class Gather:
    into: str
    prompt: str = ""
    max_digits: int = 1
    timeout_s: float = 5.0
    terminators: str = "#"
    line: int = 0


@dataclass(frozen=True, slots=True)
class SetVars:
    values: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Hangup:
    line: int = 0


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


Step = Answer | Play | Say | Gather | SetVars | Hangup | EnterQueue


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    source: str
    steps: tuple[Step, ...]
    description: str = ""
