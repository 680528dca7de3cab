"""A recording's ``.key`` file that the recordings lane cannot use (engine/recordings/service.py
``RecordingService._with_key``; docs/recordings.md "Durability"): a corrupt one is set aside at
once, one that gives an I/O error after ``KEY_READ_ATTEMPTS`` tries, into
``recordings.dead.jsonl``, counted and logged with the file and the reason; the lane goes on with
the records behind it, and the sealed file and its ``.key`` stay on disk. Before, an unreadable
``.key`` stopped the lane for good (an OSError reads as "storage away": retried forever), and a
``.key`` without a wrapped key let the row be written without one and the file be deleted."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from engine.recordings import crypto
from engine.recordings.config import RecordingsSection
from engine.recordings.service import (
    KEY_READ_ATTEMPTS,
    CallsPort,
    RecordingService,
    recording_key,
)
from engine.recordings.store import RecordingIndex
from engine.store.outbox import Journal, Lane, Record
from engine.telemetry.metrics import Metrics

GOOD = f"k1:{base64.b64encode(bytes(60)).decode()}".encode()


class _Sink:
    def put(self, payload: dict[str, Any]) -> None:
        pass


class _Index:
    def __init__(self) -> None:
        self.rows: list[Mapping[str, Any]] = []

    async def write(
        self, records: Sequence[Record], on_ready: Callable[[Mapping[str, Any]], None]
    ) -> list[str]:
        self.rows.extend(r.payload for r in records)
        return []


def _finished(store: Path, key: bytes | None) -> dict[str, Any]:
    """A sealed recording on disk (its ``.enc`` and ``.key``) and its ``finished`` record;
    ``key=None`` makes the ``.key`` path a directory (reading it is an I/O error)."""
    rid = str(uuid.uuid4())
    day = store / "2026/12/05"
    day.mkdir(parents=True, exist_ok=True)
    (day / f"{rid}.enc").write_bytes(b"sealed")
    if key is None:
        (day / f"{rid}.key").mkdir()
    else:
        (day / f"{rid}.key").write_bytes(key)
    return {
        "kind": "finished",
        "recording_id": rid,
        "state": "ready",
        "key_id": "k1",
        "file": f"2026/12/05/{rid}.enc",
    }


async def _drain(tmp_path: Path, payloads: list[dict[str, Any]]) -> tuple[Lane, _Index, Metrics]:
    index, metrics = _Index(), Metrics()
    service = RecordingService(
        RecordingsSection(store_dir=str(tmp_path / "store")),
        keys=crypto.KeyRing({"k1": bytes(32)}, "k1"),
        calls=cast(CallsPort, None),
        records=_Sink(),
        events=_Sink(),
        index=cast(RecordingIndex, index),
        store_dir=tmp_path / "store",
    )
    lane = Lane(
        Journal(tmp_path / "outbox", "recordings"),
        service.sink,
        metrics,
        backoff_s=(0.001, 0.01),
        dead_letter=True,
        key=recording_key,  # as engine/wiring/outbox.py builds it
    )
    lane.open()
    lane.put_many(payloads)
    task = asyncio.create_task(lane.run())
    try:
        assert await lane.wait_drained(20.0), "the lane never got past the bad .key file"
    finally:
        lane.close()
        await task
        lane.journal.close()
    return lane, index, metrics


def _dead(tmp_path: Path) -> list[dict[str, Any]]:
    text = (tmp_path / "outbox" / "recordings.dead.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is corrupt: not '<key id>:<base64>' (0 bytes)"),
        (b"garbage", "is corrupt: not '<key id>:<base64>'"),
        (b"k1:", "is corrupt: not '<key id>:<base64>'"),
        (b"k1:@@not base64@@", "is corrupt: the wrapped key is not base64"),
        (b"\xff\xfe:AAAA", "is corrupt: not ASCII text"),
        (GOOD.replace(b"k1:", b"k9:"), "is corrupt: key id 'k9', the sealed recording says 'k1'"),
    ],
)
async def test_a_corrupt_key_file_is_set_aside_at_once_and_kept(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    store = tmp_path / "store"
    bad, good = _finished(store, content), _finished(store, GOOD)
    with capture_logs() as logs:
        lane, index, metrics = await _drain(tmp_path, [bad, good])

    assert [r["recording_id"] for r in index.rows] == [good["recording_id"]]
    assert index.rows[0]["wrapped_key"] == GOOD.decode().partition(":")[2]
    assert not (store / good["file"]).with_suffix(".key").exists()  # in the row now
    key_file = (store / bad["file"]).with_suffix(".key")
    assert key_file.read_bytes() == content and (store / bad["file"]).exists()
    [dead] = _dead(tmp_path)
    assert dead["record"] == bad and dead["key"] == f"finished {bad['recording_id']}"
    assert f"key file {key_file} {reason}" in dead["error"]
    assert lane.set_aside == 1 and lane.failures == 0  # not retried: it cannot get better
    assert metrics.outbox_dead_letters.labels("recordings")._value.get() == 1
    [logged] = [e for e in logs if e["log_level"] == "error"]
    assert str(key_file) in logged["error"] and reason in logged["error"]


async def test_an_unreadable_key_file_is_set_aside_after_bounded_tries(tmp_path: Path) -> None:
    store = tmp_path / "store"
    bad, good = _finished(store, None), _finished(store, GOOD)
    with capture_logs() as logs:
        lane, index, _ = await _drain(tmp_path, [bad, good])

    assert [r["recording_id"] for r in index.rows] == [good["recording_id"]]
    key_dir = (store / bad["file"]).with_suffix(".key")
    assert key_dir.is_dir() and (store / bad["file"]).exists()
    [dead] = _dead(tmp_path)
    assert dead["record"] == bad
    # KEY_READ_ATTEMPTS - 1 failed rounds, backing off; then refused (and once more alone).
    assert lane.failures == KEY_READ_ATTEMPTS - 1 and lane.set_aside == 1
    assert f"key file {key_dir} unreadable after " in dead["error"]
    assert "IsADirectoryError" in dead["error"]
    assert len([e for e in logs if e["log_level"] == "error"]) == 1


def test_engine_doctor_names_set_aside_recordings() -> None:
    from engine.doctor.verdicts import Status, dead_letters

    held = dead_letters("outbox dead letters", "/data/outbox", {"recordings": 1, "cdrs": 0})
    assert held.status is Status.WARN and "recordings 1" in held.message
    assert ".key" in held.fix and "kept" in held.fix
    other = dead_letters("outbox dead letters", "/data/outbox", {"cdrs": 2})
    assert ".key" not in other.fix
