"""Upgrading from the pre-outbox CDR spool (docs/durability.md: "Rows of the pre-outbox spool
file (``<data_dir>/cdr-spool.jsonl``) are moved into the outbox at start; the old file is kept
as ``cdr-spool.imported``"; ``CdrWriter.import_legacy_spool``, engine/calls/cdr.py).

The spool is written here as the last engine before the outbox wrote it (git 5ef4ebb^,
engine/calls/cdr.py ``_append_spool``): one JSON object per line, ``dataclasses.asdict`` of
that version's ``CdrRow`` (no ``ringing_at``; ``duration_s``/``billsec_s`` are not fields),
datetimes as ``{"__dt__": isoformat}``, one line per leg that PostgreSQL refused, in the order
the legs ended. Its old replay could leave a row spooled twice (rows written, then the rewrite
of the file lost), and a blank line.

The engine is started on that data directory: every row is in PostgreSQL once, the spool is
renamed ``cdr-spool.imported`` (same bytes), and a second start imports nothing again. A copy of
the spool put back (a crash between the import and the rename leaves it in place) is imported
again without a duplicate: the rows are idempotent on (call_id, attempt).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.app import Engine
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config, running_engine


def _dt(value: datetime | None) -> dict[str, str] | None:
    return {"__dt__": value.isoformat()} if value is not None else None


def _old_row(
    call_id: str,
    *,
    at: datetime,
    attempt: int = 1,
    direction: str = "outbound",
    destination: str = "1001",
    trunk: str | None = "carrier-a",
    answered_s: float | None = None,
    ended_s: float = 20.0,
    final_state: str = "ended",
    cause: int | None = 16,
    cause_text: str = "NORMAL_CLEARING",
    sip_code: int | None = None,
    variables: dict[str, str] | None = None,
    interrupted: bool = False,
) -> dict[str, Any]:
    """``asdict(CdrRow)`` of git 5ef4ebb^ (engine/store/pg/cdr.py), field order included."""
    return {
        "call_id": call_id,
        "switch": "asterisk-1",
        "direction": direction,
        "channel": f"PJSIP/{trunk or 'ep'}-0000{attempt:04x}",
        "destination": destination,
        "started_at": _dt(at),
        "ended_at": _dt(at + timedelta(seconds=ended_s)),
        "final_state": final_state,
        "attempt": attempt,
        "caller_id_num": "442079460000" if direction == "outbound" else "07700900123",
        "caller_id_name": "",
        "endpoint": None if trunk else "agent1",
        "trunk": trunk,
        "answered_at": _dt(at + timedelta(seconds=answered_s) if answered_s is not None else None),
        "cause": cause,
        "cause_text": cause_text,
        "sip_code": sip_code,
        "variables": variables or {},
        "interrupted": interrupted,
    }


def _spool_rows(tag: str) -> list[dict[str, Any]]:
    t0 = datetime(2026, 3, 2, 9, 15, 4, 250000, tzinfo=UTC)
    return [
        # Answered through a trunk, with the caller's variables.
        _old_row(
            f"{tag}-answered",
            at=t0,
            answered_s=4.2,
            ended_s=63.9,
            variables={"ENGINE_CAMPAIGN": "spring", "account": "A-17"},
        ),
        # A failover: attempt 1 on the first trunk (503), attempt 2 on the second, busy.
        _old_row(
            f"{tag}-failover",
            at=t0 + timedelta(minutes=1),
            ended_s=0.4,
            cause=34,
            cause_text="NORMAL_CIRCUIT_CONGESTION",
            sip_code=503,
        ),
        _old_row(
            f"{tag}-failover",
            at=t0 + timedelta(minutes=1, seconds=0.4),
            attempt=2,
            trunk="carrier-b",
            ended_s=2.1,
            cause=17,
            cause_text="USER_BUSY",
            sip_code=486,
        ),
        # Inbound to an endpoint, never answered.
        _old_row(
            f"{tag}-inbound",
            at=t0 + timedelta(minutes=2),
            direction="inbound",
            destination="700",
            trunk=None,
            ended_s=30.0,
            cause=19,
            cause_text="NO_ANSWER",
        ),
        # Ended by the engine's crash recovery (the channel was gone).
        _old_row(
            f"{tag}-interrupted",
            at=t0 + timedelta(minutes=3),
            answered_s=1.0,
            ended_s=200.0,
            cause=None,
            cause_text="",
            interrupted=True,
        ),
    ]


async def _cdrs(engine: Engine, tag: str) -> list[dict[str, Any]]:
    assert engine.pg is not None
    rows = await engine.pg.pool.fetch(
        "SELECT * FROM cdr WHERE call_id LIKE $1 ORDER BY call_id, attempt", f"{tag}-%", timeout=10
    )
    return [dict(r) for r in rows]


async def _start_and_settle(cfg: Any, tag: str) -> list[dict[str, Any]]:
    async with running_engine(cfg) as (engine, _client):
        assert engine.cdr_lane is not None
        assert await engine.cdr_lane.wait_drained(30), "the cdrs lane never drained"
        return await _cdrs(engine, tag)


async def test_the_pre_outbox_cdr_spool_is_imported_once_and_retired(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    tag = f"spool-{uuid.uuid4().hex[:10]}"
    data_dir = store_data_dir / f"engine-{tag}"
    data_dir.mkdir()
    rows = _spool_rows(tag)
    lines = [json.dumps(r) for r in rows]
    # The old replay could leave a row twice (written, then the file rewrite lost); a blank line.
    text = "\n".join([*lines, lines[0], ""]) + "\n"
    spool = data_dir / "cdr-spool.jsonl"
    spool.write_text(text, encoding="utf-8")
    retired = data_dir / "cdr-spool.imported"

    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"{tag}:",
            data_dir=data_dir,
            ami_port=ami.port,
            agi_bind_port=0,
        )
        stored = await _start_and_settle(cfg, tag)
        # The file is retired as documented: renamed, same bytes, the old name gone.
        assert not spool.exists()
        assert retired.read_text(encoding="utf-8") == text

        # Every leg once, with what the old row said.
        assert Counter((r["call_id"], r["attempt"]) for r in stored) == Counter(
            {(r["call_id"], r["attempt"]): 1 for r in rows}
        )
        by_key = {(r["call_id"], r["attempt"]): r for r in stored}
        for old in rows:
            row = by_key[(old["call_id"], old["attempt"])]
            for name in (
                "switch",
                "direction",
                "channel",
                "destination",
                "final_state",
                "caller_id_num",
                "endpoint",
                "trunk",
                "cause",
                "cause_text",
                "sip_code",
                "interrupted",
            ):
                assert row[name] == old[name], (name, row, old)
            for name in ("started_at", "ended_at", "answered_at"):
                want = old[name] and datetime.fromisoformat(old[name]["__dt__"])
                assert row[name] == want, (name, row[name], want)
            variables = row["variables"]
            variables = json.loads(variables) if isinstance(variables, str) else variables
            assert variables == old["variables"]
            assert row["ringing_at"] is None  # the old rows had none

        # A second start: nothing left to import, nothing doubled, the retired file untouched.
        again = await _start_and_settle(cfg, tag)
        assert again == stored
        assert not spool.exists() and retired.read_text(encoding="utf-8") == text

        # A crash between the import and the rename leaves the spool in place: imported
        # again at the next start, and still once in PostgreSQL.
        spool.write_text(text, encoding="utf-8")
        third = await _start_and_settle(cfg, tag)
        assert third == stored
        assert not spool.exists()
