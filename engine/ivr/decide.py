"""Pure decisions of the IVR runtime: which branch an input takes, which variant
a caller gets, whether a transfer target is acceptable. No I/O."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

from engine.ivr.model import MenuOption, Split, Variant
from engine.ivr.ports import Heard, TransferRequest
from engine.ivr.syntax import ENDPOINT, NUMBER

Outcome = Literal["ok", "invalid", "timeout"]

# Numbers and endpoints are checked again here after {var} substitution (the
# load-time patterns of engine/ivr/syntax.py), so a webhook or a caller cannot put
# dial-string syntax (",", "&", "/", "@", a trailing newline) in front of the switch.


def normalize(text: str) -> str:
    """Lower case, width-folded (ｓａｌｅｓ -> sales), punctuation as spaces."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return " ".join("".join(ch if ch.isalnum() else " " for ch in folded).split())


def keyword_in(keyword: str, text: str) -> bool:
    kw, t = normalize(keyword), normalize(text)
    if not kw:
        return False
    if kw.isascii():
        return re.search(rf"(?<![a-z0-9]){re.escape(kw)}(?![a-z0-9])", t) is not None
    return kw in t.replace(" ", "")


def gather_outcome(heard: Heard, min_digits: int, min_confidence: float) -> Outcome:
    if heard.kind == "timeout" or (heard.kind == "dtmf" and not heard.digits):
        return "timeout"
    if heard.kind == "dtmf":
        return "ok" if len(heard.digits) >= max(1, min_digits) else "invalid"
    if not heard.text.strip() or heard.confidence < min_confidence:
        return "invalid"
    return "ok"


def menu_choice(
    options: tuple[MenuOption, ...], heard: Heard, intent: str, min_confidence: float
) -> tuple[MenuOption | None, Outcome]:
    """The option an input picks. Speech below ``min_confidence`` is invalid
    (the retry branch), as is speech that matches no keyword and no intent."""
    if heard.kind == "timeout":
        return None, "timeout"
    if heard.kind == "dtmf":
        if not heard.digits:
            return None, "timeout"
        for o in options:
            if o.dtmf and o.dtmf == heard.digits:
                return o, "ok"
        return None, "invalid"
    if heard.confidence < min_confidence or not heard.text.strip():
        return None, "invalid"
    for o in options:
        if any(keyword_in(k, heard.text) for k in o.speech):
            return o, "ok"
    if intent:
        for o in options:
            if o.intent and o.intent == intent:
                return o, "ok"
    return None, "invalid"


def split_variant(step: Split, call_id: str) -> Variant:
    """The same caller always gets the same variant of a test (hash of test and
    call), and the shares hold over many callers."""
    point = int.from_bytes(hashlib.sha256(f"{step.name}:{call_id}".encode()).digest()[:8], "big")
    slot = point % 100
    acc = 0
    for v in step.variants:
        acc += v.share
        if slot < acc:
            return v
    return step.variants[-1]


def transfer_problem(request: TransferRequest) -> str:
    """Why a transfer must not be tried ("" if fine). Runs on the values after
    substitution: a number or endpoint from a variable is checked here."""
    if request.number:
        if not NUMBER.match(request.number):
            return f"not a number to dial: {request.number!r} (digits, optionally after +)"
        if not request.trunk_group:
            return "a number needs a trunk group"
    elif request.endpoint:
        if not ENDPOINT.match(request.endpoint):
            return f"not an endpoint name: {request.endpoint!r}"
    elif not (request.context and request.exten):
        return "no transfer target (empty endpoint or number)"
    return ""


def transfer_target(request: TransferRequest) -> str:
    if request.number:
        return f"number:{request.number}@{request.trunk_group}"
    if request.endpoint:
        return f"endpoint:{request.endpoint}"
    return f"dialplan:{request.context},{request.exten},{request.priority}"
