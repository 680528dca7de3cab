"""structlog setup: JSON lines, ``call_id`` bound by callers, secrets redacted.

Redaction is a processor, not a convention: any key that looks like a secret
is masked wherever it appears in an event dict, so a careless
``log.info("connect", **settings)`` cannot leak an AMI secret or API token.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"(secret|password|passwd|token|authorization|dsn|redis_url)", re.I)
_DSN_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _DSN_PASSWORD.sub(r"\1***@", value)
    if isinstance(value, dict):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) else _redact_value(v)) for k, v in value.items()
        }
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = "***"
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
