"""Small pure helpers of the store layer."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import redis.exceptions

from engine.store.embedded import log_tail, server_error, socket_dir_for
from engine.store.errors import StoreError, StoreUnavailable
from engine.store.pg import errors as pg_errors
from engine.store.pg.admin import with_database
from engine.store.pg.pool import _redact
from engine.store.redis import errors as redis_errors
from engine.store.redis.client import check_prefix


def test_with_database_tcp_and_unix_socket() -> None:
    assert (
        with_database("postgresql://postgres@127.0.0.1:5432/postgres", "x1")
        == "postgresql://postgres@127.0.0.1:5432/x1"
    )
    assert (
        with_database("postgresql://postgres@/postgres?host=/tmp/s&port=5432", "x1")
        == "postgresql://postgres@/x1?host=/tmp/s&port=5432"
    )
    with pytest.raises(ValueError, match="not a postgresql:// DSN"):
        with_database("mysql://u@h/db", "x")


def test_redact_hides_password_only() -> None:
    assert _redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert _redact("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("bad", ["", "a*", "x?", "[x]", "a b"])
def test_prefix_rejects_glob_characters(bad: str) -> None:
    with pytest.raises(ValueError, match="redis prefix"):
        check_prefix(bad)
    assert check_prefix("engine:") == "engine:"


def test_long_socket_dir_falls_back_to_short_stable_path(tmp_path: Path) -> None:
    short = tmp_path / "run"
    assert socket_dir_for(short, "pg") == short
    long = tmp_path / ("x" * 120) / "run"
    fallback = socket_dir_for(long, "pg")
    assert fallback != long
    assert len(str(fallback)) < 60
    assert fallback == socket_dir_for(long, "pg")  # stable across calls


def test_server_error_carries_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)) + "\n")
    err = server_error("could not start", log, detail="exit 1")
    text = str(err)
    assert text.startswith("could not start\nexit 1\n")
    assert "line 99" in text and "line 60" in text and "line 59" not in text
    assert "(no log at" in log_tail(tmp_path / "missing.log")


def test_pg_error_translation() -> None:
    unavailable = pg_errors.translate(asyncpg.CannotConnectNowError("starting up"), "x")
    assert isinstance(unavailable, StoreUnavailable)
    plain = pg_errors.translate(asyncpg.UniqueViolationError("dup"), "inserting")
    assert type(plain) is StoreError
    assert "SQLSTATE 23505" in str(plain)
    assert isinstance(pg_errors.translate(ConnectionRefusedError(), "x"), StoreUnavailable)


def test_redis_error_translation() -> None:
    err = redis_errors.translate(redis.exceptions.ConnectionError("refused"), "reading")
    assert isinstance(err, StoreUnavailable)
    err2 = redis_errors.translate(redis.exceptions.ResponseError("WRONGTYPE"), "reading")
    assert type(err2) is StoreError
    assert "WRONGTYPE" in str(err2)
