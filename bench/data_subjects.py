"""How long a data-subject export (rows only) and erase take on a database of realistic size,
and what migration 0010's indexes are worth.

``ENGINE_TEST_PG_DSN=... python -m bench.data_subjects`` makes a fresh database (dropped after),
applies the migrations, and loads 400,000 contacts (2 campaigns), 400,000 attempts, 1,000,000
CDRs (inbound and outbound, numbers in several spellings) and 200,000 stored webhook events,
among which 20 subjects each have 2 contacts, 2 attempts and 6 CDRs. It then times
``SubjectStore.gather`` (what the export reads before it streams) and ``SubjectStore.erase``
(the whole transaction) once per subject, and ``gather`` again with the 0010 indexes dropped.
Prints the figures and writes reports/data_subjects.json. Recordings are not part of it (their
cost is the recordings bench's decryption throughput).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from engine.privacy.store import SubjectStore
from engine.privacy.subject import PseudonymKey, subject
from engine.store.pg.admin import create_database, drop_database
from engine.store.pg.pool import PgStore

ROOT = Path(__file__).resolve().parent.parent
CONTACTS, CDRS, EVENTS, SUBJECTS = 400_000, 1_000_000, 200_000, 20
KEY = PseudonymKey("bench", bytes(range(32)))
SPEC = {"trunk_group": "outbound", "queue": "sales"}

# Background numbers are +1415 and 7 digits below 0400000; subjects +1415999xxxx, never
# generated among them.
_LOAD = [
    "INSERT INTO campaigns (campaign_id, spec) VALUES ('bench-a', $1), ('bench-b', $1)",
    f"""INSERT INTO contacts (campaign_id, phone, tz, fields, state)
    SELECT CASE WHEN i % 2 = 0 THEN 'bench-a' ELSE 'bench-b' END,
           '+1415' || lpad(i::text, 7, '0'),
           'America/Los_Angeles', jsonb_build_object('name', 'n' || i), 'done'
    FROM generate_series(1, {CONTACTS}) i""",
    """INSERT INTO campaign_attempts (attempt_id, campaign_id, contact_id, call_id, fence, seq,
        state, phone, dialed_number, outcome)
    SELECT 'a' || contact_id, campaign_id, contact_id, 'call-a' || contact_id, 1, 1, 'done',
           phone, '00' || substr(phone, 2), 'answered' FROM contacts""",
    f"""INSERT INTO cdr (call_id, switch, direction, channel, caller_id_num, destination,
        started_at, ended_at, final_state)
    SELECT 'call-' || i, 'asterisk-1',
           CASE WHEN i % 3 = 0 THEN 'inbound' ELSE 'outbound' END, 'PJSIP/carrier-' || i,
           CASE WHEN i % 3 = 0 THEN '415201' || lpad((i % 10000)::text, 4, '0')
                ELSE '+18005550000' END,
           CASE WHEN i % 3 = 0 THEN '100' ELSE '1415202' || lpad((i % 10000)::text, 4, '0') END,
           now() - make_interval(secs => i), now() - make_interval(secs => i) + interval '30 s',
           'ended'
    FROM generate_series(1, {CDRS}) i""",
    f"""INSERT INTO webhook_events (event_id, type, order_key, occurred_at, payload)
    SELECT 'ev' || i, 'call.ended', 'call:call-' || i, now(),
           jsonb_build_object('cdr', jsonb_build_object('call_id', 'call-' || i))
    FROM generate_series(1, {EVENTS}) i""",
]

_DROP_0010 = [
    "DROP INDEX contacts_phone_idx",
    "DROP INDEX campaign_attempts_phone_idx",
    "DROP INDEX cdr_caller_id_num_idx",
    "DROP INDEX cdr_destination_idx",
    "DROP INDEX webhook_events_order_key_idx",
]


async def _seed_subject(conn: Any, n: int) -> str:
    phone = f"+1415999{n:04d}"
    for cid in ("bench-a", "bench-b"):
        contact = await conn.fetchval(
            "INSERT INTO contacts (campaign_id, phone, tz, state) VALUES ($1, $2,"
            " 'America/Los_Angeles', 'done') RETURNING contact_id",
            cid,
            phone,
        )
        await conn.execute(
            "INSERT INTO campaign_attempts (attempt_id, campaign_id, contact_id, call_id, fence,"
            " seq, state, phone, dialed_number) VALUES ($1, $2, $3, $4, 1, 1, 'done', $5, $6)",
            f"s{n}{cid}",
            cid,
            contact,
            f"s-call-{n}-{cid}",
            phone,
            "00" + phone[1:],
        )
        await conn.execute(
            "INSERT INTO cdr (call_id, switch, direction, channel, destination, started_at,"
            " ended_at, final_state) VALUES ($1, 'asterisk-1', 'outbound', 'PJSIP/c', $2,"
            " now(), now(), 'ended')",
            f"s-call-{n}-{cid}",
            "00" + phone[1:],
        )
    for k in range(4):
        await conn.execute(
            "INSERT INTO cdr (call_id, switch, direction, channel, caller_id_num, destination,"
            " started_at, ended_at, final_state) VALUES ($1, 'asterisk-1', 'inbound', 'PJSIP/c',"
            " $2, '100', now(), now(), 'ended')",
            f"s-in-{n}-{k}",
            phone[2:],  # national spelling
        )
    return phone


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 2),
        "max_ms": round(ms[-1], 2),
    }


async def _bench() -> dict[str, Any]:
    server = os.environ.get("ENGINE_TEST_PG_DSN")
    if not server:
        raise SystemExit("set ENGINE_TEST_PG_DSN (a PostgreSQL server to make a database on)")
    name = f"bench_dsr_{uuid.uuid4().hex[:8]}"
    dsn = await create_database(server, name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with PgStore(dsn, Path(tmp)) as pg:
                pool = pg.pool
                started = time.perf_counter()
                async with pool.acquire() as conn:
                    for sql in _LOAD:
                        if "$1" in sql:
                            await conn.execute(sql, SPEC)
                        else:
                            await conn.execute(sql, timeout=600)
                    phones = [await _seed_subject(conn, n) for n in range(SUBJECTS)]
                    await conn.execute("ANALYZE")
                load_s = time.perf_counter() - started
                store = SubjectStore(pool, timeout_s=600)
                who = [subject(p, KEY, "US") for p in phones]
                gather, erase = [], []
                for w in who:
                    t = time.perf_counter()
                    data = await store.gather(w)
                    gather.append(time.perf_counter() - t)
                    assert (len(data.contacts), len(data.cdrs)) == (2, 6), data
                for w in who[: SUBJECTS // 2]:
                    t = time.perf_counter()
                    result = await store.erase(w)
                    erase.append(time.perf_counter() - t)
                    assert result.cdrs_pseudonymised == 6, result
                rerun = []
                for w in who[: SUBJECTS // 2]:
                    t = time.perf_counter()
                    await store.erase(w)
                    rerun.append(time.perf_counter() - t)
                for sql in _DROP_0010:
                    await pool.execute(sql)
                await pool.execute("ANALYZE")
                unindexed = []
                for w in who[SUBJECTS // 2 :]:
                    t = time.perf_counter()
                    await store.gather(w)
                    unindexed.append(time.perf_counter() - t)
    finally:
        await drop_database(server, name)
    return {
        "rows": {
            "contacts": CONTACTS + 2 * SUBJECTS,
            "attempts": CONTACTS + 2 * SUBJECTS,
            "cdrs": CDRS + 6 * SUBJECTS,
            "webhook_events": EVENTS,
        },
        "load_s": round(load_s, 1),
        "export_read_with_0010": _stats(gather),
        "erase_transaction": _stats(erase),
        "erase_rerun_nothing_left": _stats(rerun),
        "export_read_without_0010": _stats(unindexed),
    }


def run() -> dict[str, Any]:
    result = asyncio.run(_bench())
    out = ROOT / "reports" / "data_subjects.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
