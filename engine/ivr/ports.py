"""What the IVR runtime needs from outside, as small ports (Protocols).

The runtime never imports the switch drivers' internals, an ASR engine, the
calls service or an HTTP client directly: the engine (``engine/wiring/ivr.py``) plugs
the real ones in, the offline flow tester (``engine/ivr/tester.py``) plugs in
scripted ones, and the media tap + ASR plugins (a later issue) plug in behind
:class:`SpeechInput` without the flow language changing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from engine.ivr.expr import Value
from engine.pbx.base import CallSession

InputKind = Literal["dtmf", "speech", "timeout"]


@dataclass(frozen=True, slots=True)
class ListenRequest:
    """One turn of caller input for a ``gather`` or ``menu``.

    ``prompt`` (a sound name, may be ``""``) plays first; input may stop it
    (barge-in). ``dtmf``/``speech`` say which kinds are wanted; ``keywords`` are
    the menu's speech keywords, a grammar hint for recognisers that take one;
    ``plugin`` names the ASR plugin (``""`` = the engine's default).
    """

    prompt: str
    dtmf: bool
    speech: bool
    max_digits: int = 1
    timeout_s: float = 5.0
    terminators: str = "#"
    speech_timeout_s: float = 5.0
    keywords: tuple[str, ...] = ()
    language: str = ""
    plugin: str = ""


@dataclass(frozen=True, slots=True)
class Heard:
    """What the caller gave: keys, an utterance, or nothing (``timeout``)."""

    kind: InputKind
    digits: str = ""
    text: str = ""
    confidence: float = 0.0
    alternatives: tuple[tuple[str, float], ...] = ()
    barged_in: bool = False  # the caller spoke over the prompt, which stopped


class SpeechInput(Protocol):
    """Collect one turn of input that may be speech.

    Called only when the step wants speech; DTMF-only steps use the session's
    ``get_digits`` directly. An implementation that also accepts DTMF races the
    two (whichever comes first wins, and stops the prompt).
    """

    async def listen(self, session: CallSession, request: ListenRequest) -> Heard: ...


class DtmfOnlySpeech:
    """The :class:`SpeechInput` of an engine with no media tap yet: keys only.

    A speech-only step hears nothing (a timeout, so its timeout branch runs);
    a ``both`` step still gets the caller's keys.
    """

    async def listen(self, session: CallSession, request: ListenRequest) -> Heard:
        if not request.dtmf:
            if request.prompt:
                await session.play(request.prompt)
            return Heard("timeout")
        digits = await session.get_digits(
            request.prompt, request.max_digits, request.timeout_s, request.terminators
        )
        return Heard("dtmf", digits=digits) if digits else Heard("timeout")


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    score: float


class IntentClassifier(Protocol):
    """Transcript -> the most likely intent (``Intent("", 0.0)`` when none fits)."""

    def classify(self, text: str) -> Intent: ...


class EmotionScorer(Protocol):
    """Transcript -> scores in 0..1 by emotion (``anger``, ``joy``, ``sadness``,
    ``fear``) plus ``sentiment`` in -1..1."""

    def score(self, text: str) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    method: str
    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class WebhookReply:
    status: int
    body: bytes


class WebhookError(Exception):
    """No usable reply: timeout, connection refused, not JSON... (the fallback branch runs)."""


class WebhookClient(Protocol):
    async def send(self, request: WebhookRequest) -> WebhookReply: ...


@dataclass(frozen=True, slots=True)
class TransferRequest:
    leg: str  # the session's channel
    flow: str
    endpoint: str = ""
    number: str = ""
    trunk_group: str = ""
    context: str = ""
    exten: str = ""
    priority: int = 1
    timeout_s: float = 30.0


class TransferRefused(Exception):
    """The transfer did not happen and the caller is still in the flow."""


class CallControl(Protocol):
    """What the IVR asks of the calls service."""

    async def transfer(self, request: TransferRequest) -> None:
        """Connect the caller to the target. Returns once the IVR session is no
        longer needed (the caller was handed over); raises :class:`TransferRefused`."""
        ...

    async def annotate(self, leg: str, values: Mapping[str, str]) -> None:
        """Record ``values`` on the call (its ``variables``, hence its CDR)."""
        ...


@dataclass(slots=True)
class RunResult:
    """What one run of a flow did (the tester prints it; tests read it)."""

    flow: str
    path: list[str] = field(default_factory=list)  # "flow:step-id" per step run
    prompts: list[str] = field(default_factory=list)
    variables: dict[str, Value] = field(default_factory=dict)
    end: str = ""  # completed | hangup | queued | transferred | caller hung up | failed
    detail: str = ""


class CallContext(Protocol):
    """Variables the engine knows about a session's call before its flow starts: a
    campaign call's contact (``contact.name``, ``contact.account``, ...; docs/ivr.md
    "Variables"). Looked up by the session's channel id in the engine's own state: no
    I/O, and nothing of it rides on the switch's channel variables."""

    def variables_of(self, leg: str) -> Mapping[str, Value]: ...
