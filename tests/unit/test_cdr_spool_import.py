"""Importing the pre-outbox CDR spool (``CdrWriter.import_legacy_spool``, engine/calls/cdr.py;
docs/durability.md "CDRs are never lost"): lines that are not a CDR row go to
``cdr-spool.rejects`` with their line numbers and are logged as ``file:line``; the spool is
retired only after the rows are fsynced into the journal, and its directory is fsynced after
the rename. The end-to-end upgrade (PostgreSQL) is tests/api/test_cdr_spool_upgrade.py."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from engine.calls.cdr import CdrWriter
from engine.store.outbox import Journal, Lane, Record
from engine.store.outbox.dead import is_data_error
from engine.store.pg.cdr import CdrRepository
from engine.telemetry.metrics import Metrics


def _row(call_id: str) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "switch": "asterisk-1",
        "direction": "outbound",
        "channel": "PJSIP/carrier-a-00000001",
        "destination": "1001",
        "started_at": {"__dt__": "2026-03-02T09:15:04+00:00"},
        "ended_at": {"__dt__": "2026-03-02T09:15:24+00:00"},
        "final_state": "ended",
        "attempt": 1,
    }


async def _no_sink(records: Sequence[Record]) -> None:
    raise AssertionError("the lane is not run here")


def _writer(data_dir: Path) -> tuple[CdrWriter, Lane]:
    lane = Lane(Journal(data_dir / "outbox", "cdrs"), _no_sink, Metrics())
    lane.open()
    writer = CdrWriter(cast(CdrRepository, None))
    writer.attach(lane)
    return writer, lane


def _journalled(lane: Lane) -> list[str]:
    return [r.payload["cdr"]["call_id"] for r in lane.journal.peek(100)]


def _rejects(data_dir: Path) -> list[dict[str, Any]]:
    text = (data_dir / "cdr-spool.rejects").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _import(tmp_path: Path, lines: list[str]) -> tuple[int, Lane, list[MutableMapping[str, Any]]]:
    spool = tmp_path / "cdr-spool.jsonl"
    spool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    writer, lane = _writer(tmp_path)
    try:
        with capture_logs() as logs:
            moved = writer.import_legacy_spool(spool)
    finally:
        lane.journal.close()
    assert not spool.exists()
    assert (tmp_path / "cdr-spool.imported").read_text(encoding="utf-8") == "\n".join(lines) + "\n"
    return moved, lane, logs


def test_unparsable_lines_go_to_the_rejects_file_with_their_line_numbers(tmp_path: Path) -> None:
    missing = {k: v for k, v in _row("c-missing").items() if k != "ended_at"}
    lines = [
        json.dumps(_row("c-1")),
        '{"call_id": "c-torn", "switch": "asteri',  # cut short
        json.dumps(missing),  # not a CdrRow
        json.dumps({**_row("c-baddt"), "started_at": {"__dt__": "yesterday"}}),
        json.dumps({**_row("c-strdt"), "started_at": "2026-03-02T09:15:04+00:00"}),
        "",
        json.dumps(_row("c-2")),
    ]
    moved, lane, logs = _import(tmp_path, lines)

    assert moved == 2 and _journalled(lane) == ["c-1", "c-2"]
    rejects = _rejects(tmp_path)
    assert [(r["file"], r["line"], r["text"]) for r in rejects] == [
        ("cdr-spool.jsonl", n, lines[n - 1]) for n in (2, 3, 4, 5)
    ]
    assert all(r["error"] for r in rejects)
    logged = [e for e in logs if e["event"].startswith("unreadable spooled CDR rejected")]
    spool = tmp_path / "cdr-spool.jsonl"
    assert [e["where"] for e in logged] == [f"{spool}:{n}" for n in (2, 3, 4, 5)]
    assert all(e["log_level"] == "error" and e["error"] for e in logged)


def test_json_lines_that_are_not_objects_are_rejected_not_fatal(tmp_path: Path) -> None:
    lines = ["null", json.dumps(_row("c-1")), "[]", "42", '"text"', "true"]
    moved, lane, logs = _import(tmp_path, lines)

    assert moved == 1 and _journalled(lane) == ["c-1"]
    rejects = _rejects(tmp_path)
    assert [(r["line"], r["text"]) for r in rejects] == [
        (1, "null"),
        (3, "[]"),
        (4, "42"),
        (5, '"text"'),
        (6, "true"),
    ]
    assert "expected a JSON object, got NoneType" in rejects[0]["error"]
    spool = tmp_path / "cdr-spool.jsonl"
    assert [e["where"] for e in logs if e["event"].startswith("unreadable spooled CDR")] == [
        f"{spool}:{n}" for n in (1, 3, 4, 5, 6)
    ]


def test_the_rows_are_fsynced_before_the_rename_and_the_directory_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "cdr-spool.jsonl"
    spool.write_text(json.dumps(_row("c-1")) + "\n{\n", encoding="utf-8")
    writer, lane = _writer(tmp_path)
    steps: list[str] = []
    real_fsync, real_rename = os.fsync, Path.rename

    def fsync(fd: int) -> None:
        steps.append("fsync " + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def rename(self: Path, target: Any) -> Path:
        steps.append(f"rename {self}")
        return real_rename(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "rename", rename)
    try:
        writer.import_legacy_spool(spool)
    finally:
        monkeypatch.undo()
        lane.journal.close()

    journal = f"fsync {lane.journal.path}"
    renamed = f"rename {spool}"
    assert journal in steps and renamed in steps, steps
    assert steps.index(journal) < steps.index(renamed)
    assert steps.index(f"fsync {tmp_path / 'cdr-spool.rejects'}") < steps.index(renamed)
    assert f"fsync {tmp_path}" in steps[steps.index(renamed) + 1 :], steps
    assert (tmp_path / "cdr-spool.imported").exists()


def test_the_spool_is_not_retired_if_the_journal_cannot_be_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "cdr-spool.jsonl"
    spool.write_text(json.dumps(_row("c-1")) + "\n", encoding="utf-8")
    writer, lane = _writer(tmp_path)

    def sync() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(lane.journal, "sync", sync)
    try:
        with capture_logs() as logs:
            moved = writer.import_legacy_spool(spool)
    finally:
        monkeypatch.undo()
        lane.journal.close()

    assert moved == 1
    assert spool.exists() and not (tmp_path / "cdr-spool.imported").exists()
    assert any(
        e["event"].startswith("pre-outbox CDR spool not retired") and "Input/output" in e["error"]
        for e in logs
    ), logs


_NOT_INTEGERS = [
    ("attempt", True, "true"),
    ("attempt", False, "false"),
    ("attempt", 1.5, "1.5"),
    ("attempt", "1", '"1"'),
    ("cause", True, "true"),
    ("cause", 16.0, "16.0"),
    ("sip_code", "200", '"200"'),
    ("sip_code", False, "false"),
]


def test_integer_fields_given_as_booleans_floats_or_strings_are_rejected(tmp_path: Path) -> None:
    """``bool`` is an ``int`` in Python: ``"attempt": true`` was imported as attempt 1."""
    lines = [json.dumps(_row("c-1"))]
    lines += [json.dumps({**_row(f"c-{n}-{i}"), n: v}) for i, (n, v, _) in enumerate(_NOT_INTEGERS)]
    lines.append(json.dumps({**_row("c-2"), "cause": 16, "sip_code": 486, "attempt": 2}))
    moved, lane, _ = _import(tmp_path, lines)

    assert moved == 2 and _journalled(lane) == ["c-1", "c-2"]
    rejects = _rejects(tmp_path)
    assert [r["line"] for r in rejects] == list(range(2, 2 + len(_NOT_INTEGERS)))
    assert [r["error"] for r in rejects] == [
        f"TypeError: {n}: expected an integer, got {shown}" for n, _, shown in _NOT_INTEGERS
    ]


async def test_the_lane_reads_and_sets_aside_such_a_record_the_same_way(tmp_path: Path) -> None:
    """A journalled record with ``"attempt": true`` (a requeue file, or imported before the
    check): ``pending()`` leaves it out, and the sink's error is a data error, so the lane
    sets it aside (``cdrs.dead.jsonl``) rather than writing attempt 1."""
    writer, lane = _writer(tmp_path)
    try:
        lane.put({"cdr": {**_row("c-bool"), "attempt": True}})
        lane.put({"cdr": _row("c-1")})
        assert [r.call_id for r in writer.pending()] == ["c-1"]
        with pytest.raises(TypeError, match="attempt: expected an integer, got true") as err:
            await writer.sink(lane.journal.peek(1))
        assert is_data_error(err.value)
    finally:
        lane.journal.close()
