"""Secrets never reach the log, whatever key or value they hide in."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from engine.telemetry.logging import redact, setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup_logging binds stderr as captured by pytest for this test; put the
    defaults back so later tests do not log into a closed capture stream."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secret_keys_and_dsn_passwords_are_masked() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "connect",
            "secret": "enginesecret",
            "ami_password": "p4ss",
            "Authorization": "Bearer abc",
            "dsn": "postgresql://u:pw@db/x",
            "target": "postgresql://engine:hunter2@db.example:5432/engine",
            "settings": {"token": "t0k3n", "host": "h"},
            "call_id": "c-1",
        },
    )
    text = json.dumps(dict(event))
    for leaked in ("enginesecret", "p4ss", "Bearer abc", "hunter2", "t0k3n", ":pw@"):
        assert leaked not in text
    assert event["call_id"] == "c-1"
    assert event["settings"]["host"] == "h"
    assert event["target"] == "postgresql://engine:***@db.example:5432/engine"


def test_json_lines_with_bound_call_id(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "json")
    log = structlog.get_logger("t").bind(call_id="abc-123")
    log.info("call ended", cause=17, secret="nope")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["call_id"] == "abc-123" and record["cause"] == 17
    assert record["secret"] == "***"
    assert record["level"] == "info" and record["event"] == "call ended"


def test_stdlib_loggers_also_emit_redacted_json(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    setup_logging("info", "json")
    logging.getLogger("engine.pbx.test").warning(
        "connect to %s failed", "redis://:s3cr3t@cache:6379/0"
    )
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["logger"] == "engine.pbx.test"
    assert record["level"] == "warning"
    assert "s3cr3t" not in record["event"]
