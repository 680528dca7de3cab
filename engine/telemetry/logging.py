"""structlog setup: JSON lines, ``call_id`` bound by callers, secrets redacted.

Redaction is a processor, not a convention: any key that looks like a secret
is masked wherever it appears in an event dict, so a careless
``log.info("connect", **settings)`` cannot leak an AMI secret or API token.

It runs LAST before the renderer, after ``format_exc_info`` has turned an
exception into text: a traceback quotes exception messages and local reprs,
which is exactly where a DSN with its password ends up (``could not connect to
postgresql://engine:hunter2@db``). Every string is scanned, at any depth of
dicts, lists, tuples and sets; any other object is rendered with ``repr`` and
scanned too, because the JSON renderer would otherwise ``repr`` it unscanned.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# A key naming a secret: its value is masked whatever it is. "kek" only as a word of the key
# (recording_kek, kek_b64), so a word that merely contains the letters is left alone.
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|authorization|dsn|redis_url|api[_-]?key|private[_-]?key"
    r"|credential|cookie|(?<![a-z])kek(?![a-z]))",
    re.I,
)
# scheme://user:password@host -> scheme://user:***@host, and redis://:password@host.
# The password runs to the LAST "@" before a "/" or whitespace, so an
# unencoded "@" inside it cannot leave its tail behind.
_DSN_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^\s/]*@", re.I)
# key=value forms: libpq keyword DSNs ("host=db password=x"), query strings
# (?token=x&...), and "secret=..." in command lines.
_KEY_VALUE = re.compile(
    r"(\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?token)=)(['\"]?)[^\s&;,'\"]+",
    re.I,
)
# Quoted mapping keys, as reprs of dicts in tracebacks show them: {'password': 'x'}.
_QUOTED_KEY = re.compile(
    r"""((['"])[\w-]*(?:password|passwd|secret|token|dsn)[\w-]*\2\s*:\s*)(['"])[^'"]*\3""",
    re.I,
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
# What any _BEARER match contains, for ASCII text (a cheap pre-check, see redact_text).
_BEARER_HINT = re.compile(r"bearer|basic", re.I)
_PLAIN = (int, float, bool, type(None))


def redact_text(text: str) -> str:
    """``text`` with every password, token and DSN credential it contains masked.

    Each pattern runs only on text that has what any match of it must contain (an "@", an
    "=", a quote, the word Bearer/Basic): the four scans of every string of every log line
    cost ~13 us here, ~200 us for a "call ended" line, and almost no string has any of
    them. The result is the same: re.I also folds a few non-ASCII letters onto ASCII ones
    ("ſ" is an "s"), so text that is not ASCII always gets the Bearer/Basic scan."""
    if "@" in text:
        text = _DSN_PASSWORD.sub(r"\1***@", text)
    if "=" in text:
        text = _KEY_VALUE.sub(r"\1\2***", text)
    if "'" in text or '"' in text:
        text = _QUOTED_KEY.sub(r"\1\3***\3", text)
    if not text.isascii() or _BEARER_HINT.search(text):
        text = _BEARER.sub(r"\1 ***", text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) else _redact_value(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    # Exceptions, settings objects, URLs...: the renderer would repr() them.
    return redact_text(repr(value))


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.startswith("_"):
            # structlog's own metadata (_record, _from_structlog): never rendered.
            continue
        if _SECRET_KEY.search(key):
            event_dict[key] = "***"
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    """structlog for our loggers, and the standard ``logging`` module routed
    through the same processors, so a driver or library that logs with
    ``logging.getLogger`` still produces one redacted JSON line."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Exceptions and stacks become text first, so redaction sees them.
    render_then_redact: list[Any] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, *render_then_redact],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # ``extra={"switch": ..., "call_id": ...}`` of a stdlib call becomes fields.
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *render_then_redact,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
