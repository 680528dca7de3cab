"""A poison record in a PostgreSQL lane is set aside, not retried forever (issue 8 audit).

A lane delivers in order: a CDR that PostgreSQL refuses for a data reason used to be
retried forever and held up every CDR behind it. The lanes as the engine wires them
(``build_outbox``) against a real PostgreSQL: the refused record goes to
``<data_dir>/outbox/cdrs.dead.jsonl``, the good ones around it land, the lane drains.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.calls.cdr import _row_payload
from engine.store.pg.cdr import CdrRow
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.telemetry.metrics import Metrics
from engine.wiring.outbox import build_outbox
from tests.harness import engine_config


def row_payload(call_id: str) -> dict[str, Any]:
    t0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    row = CdrRow(
        call_id=call_id,
        switch="asterisk-1",
        direction="outbound",
        channel="PJSIP/x-1",
        destination="100",
        started_at=t0,
        ended_at=t0,
        final_state="failed",
    )
    return _row_payload(row)


# Each one passes the lane's journal but PostgreSQL (or building its row) refuses it.
POISONS: dict[str, dict[str, Any]] = {
    # a NUL in a text column: PostgreSQL's own DataError (SQLSTATE 22021)
    "nul_in_text": {"caller_id_name": "a\x00b"},
    # out of int4 range: asyncpg refuses to encode the argument (DataError)
    "attempt_out_of_range": {"attempt": 2**40},
    # the wrong type: building the CdrRow raises TypeError
    "attempt_not_a_number": {"attempt": "one"},
    # variables not a dict of strings (ValueError / AttributeError building the row)
    "variables_not_strings": {"variables": {"k": 1}},
    "variables_not_a_dict": {"variables": ["k"]},
}


@pytest.mark.parametrize("poison", sorted(POISONS))
async def test_a_poison_cdr_is_set_aside_and_the_cdrs_behind_it_land(
    poison: str,
    pg_store: PgStore,
    pg_dsn: str,
    redis_store: RedisStore,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    cfg = engine_config(pg_dsn=pg_dsn, redis_url=redis_url, prefix=redis_prefix, data_dir=tmp_path)
    metrics = Metrics()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    bad = {**row_payload(ids[1]), **POISONS[poison]}
    async with AsyncExitStack() as stack:
        outbox = build_outbox(cfg, pg_store, redis_store, tmp_path, metrics, stack)
        lane = outbox.cdr
        lane.put({"cdr": row_payload(ids[0])})
        lane.put({"cdr": bad})
        lane.put({"cdr": row_payload(ids[2])})
        # GET /v1/cdrs merges the rows still in the outbox: a poison one never fails it.
        assert {ids[0], ids[2]} <= {r.call_id for r in outbox.cdrs.pending()}
        task = asyncio.create_task(lane.run())
        try:
            assert await lane.wait_drained(20), "the cdrs lane is stuck behind the poison record"
        finally:
            lane.close()
            await asyncio.wait_for(task, 10)
        assert lane.journal.depth == 0

    stored = await pg_store.pool.fetch("SELECT call_id FROM cdr WHERE call_id = ANY($1)", ids)
    assert sorted(r["call_id"] for r in stored) == sorted([ids[0], ids[2]])

    dead = tmp_path / "outbox" / "cdrs.dead.jsonl"
    entries = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["lane"] == "cdrs"
    assert entry["record"] == {"cdr": bad}
    assert entry["key"] == f"{ids[1]}/{bad['attempt']}"
    assert entry["error_class"] and entry["error"]
    assert entry["dead_at"] >= entry["accepted_at"] > 0
    assert metrics.outbox_dead_letters.labels("cdrs")._value.get() == 1
    assert metrics.outbox_delivered.labels("cdrs")._value.get() == 2

    # Nothing of it is replayed by the next start: the dead-letter file is the record.
    async with AsyncExitStack() as stack:
        again = build_outbox(cfg, pg_store, redis_store, tmp_path, Metrics(), stack)
        assert again.cdr.journal.depth == 0

    # The operator fixes the record and puts it back: the dead-letter line, its record
    # corrected, as <lane>.requeue.jsonl; the next start takes it and delivers it.
    entry["record"]["cdr"] = row_payload(ids[1])
    requeue = tmp_path / "outbox" / "cdrs.requeue.jsonl"
    requeue.write_text(json.dumps(entry) + "\n")
    async with AsyncExitStack() as stack:
        fixed = build_outbox(cfg, pg_store, redis_store, tmp_path, Metrics(), stack)
        assert fixed.cdr.journal.depth == 1
        assert not requeue.exists()
        assert (tmp_path / "outbox" / "cdrs.requeued.jsonl").exists()
        task = asyncio.create_task(fixed.cdr.run())
        try:
            assert await fixed.cdr.wait_drained(20)
        finally:
            fixed.cdr.close()
            await asyncio.wait_for(task, 10)
    stored = await pg_store.pool.fetch("SELECT call_id FROM cdr WHERE call_id = ANY($1)", ids)
    assert sorted(r["call_id"] for r in stored) == sorted(ids)
