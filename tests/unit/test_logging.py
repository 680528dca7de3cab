"""Secrets never reach the log, whatever key or value they hide in."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from engine.telemetry import logging as logmod
from engine.telemetry.logging import redact, redact_text, setup_logging


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


def test_key_material_and_credentials_by_key_name_are_masked() -> None:
    """KEKs, API and private keys, credentials and cookies, at the top or nested; a key
    that only contains the letters (``keke``, ``kekule``) and record keys are kept."""
    event = redact(
        None,
        "info",
        {
            "event": "loaded",
            "kek": "a2VrLXNlY3JldA==",
            "recording_kek_b64": "cmVjLWtlaw==",
            "api_key": "ak-live-1",
            "carrier": {"Private-Key": "-----BEGIN", "credentials": "user:pw1", "Cookie": "s=1"},
            "key": "outbox-record-7",
            "kekule": "benzene",
        },
    )
    text = json.dumps(dict(event))
    for leaked in ("a2VrLXNlY3JldA==", "cmVjLWtlaw==", "ak-live-1", "BEGIN", "pw1", "s=1"):
        assert leaked not in text, text
    assert (event["key"], event["kekule"]) == ("outbox-record-7", "benzene")


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


def test_stdlib_extra_fields_become_json_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """The switch drivers log through the stdlib with ``extra``: the switch and the call are
    fields an operator can filter on, redacted like any other field."""
    import logging

    setup_logging("info", "json")
    logging.getLogger("engine.pbx.test").warning(
        "ami %s link down", "pbx1", extra={"switch": "pbx1", "call_id": "c-9", "secret": "x1"}
    )
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (record["switch"], record["call_id"], record["secret"]) == ("pbx1", "c-9", "***")


class _ConnectFailed(Exception):
    pass


def test_exception_traceback_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """The password was in the rendered traceback: redaction ran before format_exc_info."""
    setup_logging("info", "json")
    log = structlog.get_logger("t")
    try:
        raise _ConnectFailed("could not connect to postgresql://engine:hunter2@db:5432/engine")
    except _ConnectFailed:
        log.exception("storage down", target="redis://:r3dpass@cache:6379/0")
    out = capsys.readouterr().err
    record = json.loads(out.strip().splitlines()[-1])
    assert "_ConnectFailed" in record["exception"], "the traceback is still logged"
    assert "postgresql://engine:***@db:5432/engine" in record["exception"]
    for leaked in ("hunter2", "r3dpass"):
        assert leaked not in out


def test_stdlib_exception_traceback_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    setup_logging("info", "json")
    try:
        raise _ConnectFailed("dsn host=db user=engine password=s3cr3t dbname=engine")
    except _ConnectFailed:
        logging.getLogger("engine.store.test").exception("pool failed")
    out = capsys.readouterr().err
    record = json.loads(out.strip().splitlines()[-1])
    assert "password=***" in record["exception"]
    assert "s3cr3t" not in out


def test_secrets_inside_lists_tuples_and_objects_are_masked() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "retrying",
            "targets": ["postgresql://u:pw1@a/x", ("redis://:pw2@b:6379", {"token": "pw3"})],
            "error": _ConnectFailed("redis://:pw4@c:6379/0 refused"),
            "query": "GET /v1/events?since=3&token=pw5",
            "header": "Authorization: Bearer pw6abc",
            "config": repr({"host": "h", "password": "pw7"}),
            "hidden": "postgresql://u:p@w8@db/x",
        },
    )
    text = json.dumps(dict(event))
    for leaked in ("pw1", "pw2", "pw3", "pw4", "pw5", "pw6abc", "pw7", "w8"):
        assert leaked not in text, leaked
    assert event["targets"][0] == "postgresql://u:***@a/x"
    assert event["hidden"] == "postgresql://u:***@db/x"
    assert "?since=3&token=***" in event["query"]


def _all_four_scans(text: str) -> str:
    # redact_text before its pre-checks: every pattern on every string.
    text = logmod._DSN_PASSWORD.sub(r"\1***@", text)
    text = logmod._KEY_VALUE.sub(r"\1\2***", text)
    text = logmod._QUOTED_KEY.sub(r"\1\3***\3", text)
    return logmod._BEARER.sub(r"\1 ***", text)


_PIECES = st.sampled_from(
    [
        "postgresql://u:",
        "redis://:",
        "@db/x",
        "@",
        " password=",
        "token=",
        "'secret': '",
        '"dsn": "',
        "'",
        "Bearer ",
        "bAsIc ",
        "beare\u017f ",  # long s: re.I folds it onto "s"
        "ba\u017fic ",
        "abc",
        " ",
        "/",
        "ü",
    ]
)


@given(st.lists(_PIECES | st.text(max_size=5), max_size=8).map("".join))
def test_the_pre_checks_change_no_result(text: str) -> None:
    assert redact_text(text) == _all_four_scans(text)


def test_each_pattern_still_masks_behind_its_pre_check() -> None:
    assert redact_text("postgresql://u:pw@db/x") == "postgresql://u:***@db/x"
    assert redact_text("a password=pw b") == "a password=*** b"
    assert redact_text("{'secret': 'pw'}") == "{'secret': '***'}"
    assert redact_text("Bearer abc.def") == "Bearer ***"
    assert redact_text("ba\u017fic abc") == "ba\u017fic ***"
