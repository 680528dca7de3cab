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
_DSN_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


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
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, redact, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
