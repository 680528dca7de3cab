"""Contact import, DNC and the hopper against a real PostgreSQL (migrated session database)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.campaigns.contacts import importer
from engine.campaigns.contacts.importer import (
    CsvRejects,
    ImportReport,
    ImportSettings,
    InlineRejects,
    file_chunks,
    run_import,
)
from engine.campaigns.contacts.loader import ContactLoader
from engine.campaigns.contacts.parse import Format
from engine.campaigns.contacts.service import ContactsService
from engine.campaigns.dnc import GLOBAL
from engine.campaigns.errors import CampaignNotFound
from engine.campaigns.hopper import Hopper
from engine.cli import main as cli_main
from engine.store.pg.pool import PgStore

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


async def run_cli(argv: list[str]) -> int:
    # The CLI runs its own event loop (asyncio.run): on a thread, as from a shell.
    return await asyncio.to_thread(cli_main, argv)


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
async def campaign(pg_store: PgStore) -> str:
    name = f"c{uuid.uuid4().hex[:10]}"
    spec = {"trunk_group": "outbound", "queue": "sales", "default_region": "US"}
    await pg_store.pool.execute(
        "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2)", name, spec
    )
    return name


@pytest.fixture
def service(pg_store: PgStore) -> ContactsService:
    return ContactsService(pg_store.pool, timeout_s=5)


LIST = (
    "phone,tz,priority,name,account\n"
    "(212) 555-0101,,,Ann,A-1\n"
    "+1 212 555 0102,,5,Bo,A-2\n"
    "212-555-0101,,,Ann again,A-3\n"
    "12345,,,Bad,A-4\n"
    "+44 20 7946 0123,Europe/London,,Cy,A-5\n"
)


async def test_import_loads_dedups_and_reruns_insert_nothing(
    service: ContactsService, campaign: str, pg_store: PgStore
) -> None:
    rejects = InlineRejects()
    report = await service.import_contacts(
        campaign, chunks(LIST.encode()), fmt=Format.CSV, rejects=rejects, list_name="l1"
    )
    assert (report.rows, report.loaded, report.duplicates, report.rejected) == (5, 3, 1, 1)
    assert [(r.line, r.raw) for r in rejects.items] == [(5, "12345,,,Bad,A-4")]
    rows = await pg_store.pool.fetch(
        "SELECT phone, tz, priority, fields, source_line, list_name, state, rank FROM contacts"
        " WHERE campaign_id = $1 ORDER BY phone",
        campaign,
    )
    assert [(r["phone"], r["tz"], r["priority"], r["source_line"]) for r in rows] == [
        ("+12125550101", "America/New_York", 0, 2),  # the first line of the number wins
        ("+12125550102", "America/New_York", 5, 3),
        ("+442079460123", "Europe/London", 0, 6),
    ]
    assert rows[0]["fields"] == {"name": "Ann", "account": "A-1"}
    assert {(r["list_name"], r["state"], r["rank"]) for r in rows} == {("l1", "ready", 2)}
    again = await service.import_contacts(
        campaign, chunks(LIST.encode()), fmt=Format.CSV, rejects=InlineRejects()
    )
    assert (again.loaded, again.duplicates) == (0, 4)


async def test_failure_midway_keeps_loaded_batches_and_a_rerun_finishes(
    service: ContactsService, campaign: str, pg_store: PgStore
) -> None:
    body = "phone\n" + "".join(f"+1212555{i:04d}\n" for i in range(1000, 1600))

    async def broken() -> AsyncIterator[bytes]:
        async for block in chunks(body.encode(), 512):
            yield block
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await service.import_contacts(campaign, broken(), fmt=Format.CSV, rejects=InlineRejects())
    report = await service.import_contacts(
        campaign, chunks(body.encode()), fmt=Format.CSV, rejects=InlineRejects()
    )
    count = await pg_store.pool.fetchval(
        "SELECT count(*) FROM contacts WHERE campaign_id = $1", campaign
    )
    assert count == 600
    assert report.loaded + report.duplicates == 600


async def test_unknown_campaign(service: ContactsService) -> None:
    with pytest.raises(CampaignNotFound, match="no campaign named 'nope'"):
        await service.import_contacts(
            "nope", chunks(LIST.encode()), fmt=Format.CSV, rejects=InlineRejects()
        )


async def test_listing_is_keyset_paginated(service: ContactsService, campaign: str) -> None:
    await service.import_contacts(
        campaign, chunks(LIST.encode()), fmt=Format.CSV, rejects=InlineRejects()
    )
    page1 = await service.list_contacts(campaign, limit=2)
    page2 = await service.list_contacts(campaign, limit=2, after=page1[-1]["contact_id"])
    assert [c["phone"] for c in page1 + page2] == [
        "+12125550101",
        "+12125550102",
        "+442079460123",
    ]
    assert page1[0]["next_at"] is None  # -infinity: due at once
    assert await service.list_contacts(campaign, state="done") == []


async def test_dnc_lists(service: ContactsService, campaign: str) -> None:
    dnc = service.dnc
    assert await dnc.add(GLOBAL, ["+12125550101", "+12125550102"]) >= 0
    assert await dnc.add(campaign, ["+12125550103"]) == 1
    assert await dnc.add(campaign, ["+12125550103"]) == 0
    asked = ["+12125550101", "+12125550103", "+12125550104"]
    assert await dnc.blocked(campaign, asked) == {"+12125550101", "+12125550103"}
    other = f"{campaign}x"
    assert await dnc.blocked(other, asked) == {"+12125550101"}
    entries = await dnc.list(campaign)
    assert [(e.phone, e.source) for e in entries] == [("+12125550103", "api")]
    assert await dnc.remove(campaign, ["+12125550103"]) == 1
    assert await dnc.blocked(campaign, ["+12125550103"]) == set()
    await dnc.remove(GLOBAL, ["+12125550101", "+12125550102"])


async def test_dnc_import(service: ContactsService, campaign: str, tmp_path: Path) -> None:
    data = b"phone,comment\n(415) 555-0100,asked\n415.555.0101,\nbad,\n"
    rejects = InlineRejects()
    report = await service.dnc.import_numbers(
        campaign, chunks(data), fmt=Format.CSV, region="US", rejects=rejects
    )
    assert (report.loaded, report.rejected) == (2, 1)
    assert await service.dnc.blocked(campaign, ["+14155550100", "+14155550101"]) == {
        "+14155550100",
        "+14155550101",
    }


# -- the hopper ------------------------------------------------------------


async def _seed(pool: asyncpg.Pool, campaign: str, rows: list[dict[str, object]]) -> list[int]:
    ids = []
    for i, r in enumerate(rows):
        ids.append(
            await pool.fetchval(
                "INSERT INTO contacts (campaign_id, phone, tz, priority, state, rank, next_at,"
                " attempts, attempts_day, attempts_today) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
                " RETURNING contact_id",
                campaign,
                r.get("phone", f"+1212555{i:04d}"),
                r.get("tz", "America/New_York"),
                r.get("priority", 0),
                r.get("state", "ready"),
                r.get("rank", 2),
                r.get("next_at", datetime(1, 1, 1, tzinfo=UTC)),
                r.get("attempts", 0),
                r.get("attempts_day"),
                r.get("attempts_today", 0),
            )
        )
    return ids


async def test_hopper_order_and_filters(pg_store: PgStore, campaign: str) -> None:
    pool = pg_store.pool
    today = NOW.date()
    ids = await _seed(
        pool,
        campaign,
        [
            {"rank": 2},  # 0 fresh
            {"rank": 2, "priority": 5},  # 1 fresh, higher priority
            {"rank": 1, "next_at": NOW - timedelta(minutes=5), "attempts": 1},  # 2 due retry
            {"rank": 1, "next_at": NOW + timedelta(minutes=5), "attempts": 1},  # 3 not due
            {"rank": 0, "next_at": NOW - timedelta(minutes=1)},  # 4 callback
            {"tz": "America/Los_Angeles"},  # 5 window shut
            {"state": "done"},  # 6 finished
            {"state": "dialing"},  # 7 in flight
            {"attempts": 3},  # 8 at max_attempts
            {"attempts": 2, "attempts_day": today, "attempts_today": 2},  # 9 at today's limit
            {"attempts": 2, "attempts_day": today - timedelta(days=1), "attempts_today": 2},  # 10
            {"phone": "+12125559990"},  # 11 on the global DNC
            {"phone": "+12125559991"},  # 12 on the campaign's DNC
            {"phone": "+12125559992"},  # 13 on another campaign's DNC: dialable
        ],
    )
    dnc = ContactsService(pool).dnc
    await dnc.add(GLOBAL, ["+12125559990"])
    await dnc.add(campaign, ["+12125559991"])
    await dnc.add(f"{campaign}-other", ["+12125559992"])
    hopper = Hopper(pool)
    picked = await hopper.pick(
        campaign, limit=50, now=NOW, open_tzs=["America/New_York"], max_attempts=3, max_per_day=2
    )
    order = [ids.index(c.contact_id) for c in picked]
    assert order == [4, 2, 1, 0, 10, 13]
    limited = await hopper.pick(
        campaign, limit=2, now=NOW, open_tzs=["America/New_York"], max_attempts=3, max_per_day=2
    )
    assert [c.contact_id for c in limited] == [ids[4], ids[2]]
    assert picked[0].fields == {} and picked[0].tz == "America/New_York"
    # Tomorrow (UTC), contact 9's count of today no longer holds it back.
    later = await hopper.pick(
        campaign,
        limit=50,
        now=NOW + timedelta(days=1),
        open_tzs=["America/New_York"],
        max_attempts=3,
        max_per_day=2,
    )
    assert ids[9] in {c.contact_id for c in later}
    assert (
        await hopper.pick(campaign, limit=50, now=NOW, open_tzs=[], max_attempts=3, max_per_day=2)
        == []
    )
    await dnc.remove(GLOBAL, ["+12125559990"])


async def test_a_priority_the_cache_does_not_know_is_still_picked(
    pg_store: PgStore, campaign: str
) -> None:
    ids = await _seed(pg_store.pool, campaign, [{"priority": 1}, {"priority": 0}])
    hopper = Hopper(pg_store.pool, tz_cache_s=3600)
    args = dict(now=NOW, open_tzs=["America/New_York"], max_attempts=3, max_per_day=2)
    assert [c.contact_id for c in await hopper.pick(campaign, limit=10, **args)] == ids  # type: ignore[arg-type]
    (late,) = await _seed(pg_store.pool, campaign, [{"priority": 9, "phone": "+13125550199"}])
    picked = await hopper.pick(campaign, limit=10, **args)  # type: ignore[arg-type]
    assert [c.contact_id for c in picked] == [*ids, late]  # after the known groups, not lost
    await hopper.distinct_timezones(campaign, refresh=True)
    picked = await hopper.pick(campaign, limit=10, **args)  # type: ignore[arg-type]
    assert [c.contact_id for c in picked] == [late, *ids]


async def test_distinct_timezones_cached_until_refresh(pg_store: PgStore, campaign: str) -> None:
    await _seed(pg_store.pool, campaign, [{"tz": "Europe/London"}, {"tz": "Asia/Shanghai"}])
    hopper = Hopper(pg_store.pool, tz_cache_s=3600)
    assert await hopper.distinct_timezones(campaign) == ["Asia/Shanghai", "Europe/London"]
    await _seed(pg_store.pool, campaign, [{"tz": "America/Chicago", "phone": "+13125550100"}])
    assert await hopper.distinct_timezones(campaign) == ["Asia/Shanghai", "Europe/London"]
    assert await hopper.distinct_timezones(campaign, refresh=True) == [
        "America/Chicago",
        "Asia/Shanghai",
        "Europe/London",
    ]


async def _hopper_plan_alone(conn: Any, campaign: str, pick: str) -> Any:
    """EXPLAIN of the pick on a contacts table that holds this campaign's 20,000 rows alone
    and an empty DNC table (the caller's transaction, rolled back after)."""
    # The DNC table too: the pick's anti-join reads it, and what earlier tests of the session
    # left in it (numbers per campaign) gave the embedded run a second sort in one full run.
    await conn.execute("TRUNCATE contacts, dnc CASCADE")
    await conn.execute("ANALYZE dnc")
    # A campaign big enough that a sequential scan is not the cheap plan.
    await conn.execute(
        "INSERT INTO contacts (campaign_id, phone, tz, state) SELECT $1,"
        " '+1212' || lpad(g::text, 7, '0'), 'America/New_York',"
        " CASE WHEN g % 3 = 0 THEN 'done' ELSE 'ready' END"
        " FROM generate_series(1, 20000) g",
        campaign,
    )
    await conn.execute("ANALYZE contacts")
    return await conn.fetchval(
        "EXPLAIN (FORMAT JSON) " + pick,
        campaign,
        NOW,
        ["America/New_York"],
        3,
        2,
        50,
        [2],
        [0],
    )


async def test_hopper_plan_uses_the_partial_index(pg_store: PgStore, campaign: str) -> None:
    from engine.campaigns.hopper import PICK

    async with pg_store.pool.acquire() as conn:
        # Rolled back at the end, statistics included: the plan is judged on a table that holds
        # this campaign alone. The session database also holds what earlier tests imported, and
        # with those rows in ANALYZE's sample the planner chose a second sort in one full run
        # (embedded PostgreSQL) and not in another: a verdict on the test order, not the query.
        tr = conn.transaction()
        await tr.start()
        try:
            plan = await _hopper_plan_alone(conn, campaign, PICK)
        finally:
            await tr.rollback()
    text = plan if isinstance(plan, str) else json.dumps(plan)
    nodes = list(_nodes(json.loads(text)[0]["Plan"]))
    (scan,) = [n for n in nodes if n.get("Index Name") == "contacts_hopper_hash_idx"]
    # One range of the zone's index per group (rank 2, priority 0 here), bounded by next_at: no
    # contact not yet due is read; the only sort is the merge of the zones' batches.
    assert "next_at <=" in scan["Index Cond"] and "rank =" in scan["Index Cond"]
    assert [n["Node Type"] for n in nodes].count("Sort") == 1


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


async def test_cli_import_exit_codes(
    pg_dsn: str,
    campaign: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_store: PgStore,
) -> None:
    monkeypatch.setenv("ENGINE_PG_DSN", pg_dsn)
    clean = tmp_path / "clean.csv"
    clean.write_text("phone,name\n+14155550100,Ann\n", encoding="utf-8")
    dirty = tmp_path / "dirty.jsonl"
    dirty.write_text('{"phone": "+14155550101"}\n{"phone": "nope"}\n', encoding="utf-8")
    args = ["--config", str(tmp_path / "none.toml"), "--no-progress", "--workers", "0"]
    assert await run_cli(["contacts", "import", str(clean), "--campaign", campaign, *args]) == 0
    rejects = tmp_path / "r.csv"
    code = await run_cli(
        ["contacts", "import", str(dirty), "--campaign", campaign, "--rejects", str(rejects), *args]
    )
    assert code == 1
    assert "nope" in rejects.read_text(encoding="utf-8")
    assert await run_cli(["contacts", "import", str(clean), "--campaign", "absent", *args]) == 3
    assert (
        await run_cli(
            ["contacts", "import", str(tmp_path / "x.csv"), "--campaign", campaign, *args]
        )
        == 2
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nAnn\n", encoding="utf-8")
    assert await run_cli(["contacts", "import", str(bad), "--campaign", campaign, *args]) == 2
    dnc_args = [a for a in args if a not in ("--workers", "0")]
    assert await run_cli(["dnc", "import", str(clean), "--campaign", campaign, *dnc_args]) == 0
    count = await pg_store.pool.fetchval(
        "SELECT count(*) FROM contacts WHERE campaign_id = $1", campaign
    )
    assert count == 2
    assert await ContactsService(pg_store.pool).dnc.blocked(campaign, ["+14155550100"]) == {
        "+14155550100"
    }


async def test_file_chunks_and_rejects_file(
    service: ContactsService, campaign: str, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(LIST, encoding="utf-8")
    sink = CsvRejects(tmp_path / "rejects.csv")
    report = await service.import_contacts(
        campaign, file_chunks(path, 7), fmt=Format.CSV, rejects=sink
    )
    sink.close()
    assert report.rejected == 1
    assert (tmp_path / "rejects.csv").read_text(encoding="utf-8").splitlines()[1].startswith("5,")


async def test_contacts_campaign_is_checked_per_statement(pg_store: PgStore, campaign: str) -> None:
    """Migration 0006: what the foreign key guaranteed, kept by statement triggers."""
    insert = "INSERT INTO contacts (campaign_id, phone, tz) VALUES ($1, $2, 'UTC')"
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="no campaign 'no-such'"):
        await pg_store.pool.execute(insert, "no-such", "+12125550111")
    # A statement with one bad row among good ones inserts nothing.
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pg_store.pool.execute(
            "INSERT INTO contacts (campaign_id, phone, tz) VALUES ($1, '+12125550112', 'UTC'),"
            " ('no-such', '+12125550113', 'UTC')",
            campaign,
        )
    await pg_store.pool.execute(insert, campaign, "+12125550114")
    count = "SELECT count(*) FROM contacts WHERE campaign_id = $1"
    assert await pg_store.pool.fetchval(count, campaign) == 1
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="campaign_id cannot change"):
        await pg_store.pool.execute(
            "UPDATE contacts SET campaign_id = 'other' WHERE campaign_id = $1", campaign
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="has contacts"):
        await pg_store.pool.execute(
            "UPDATE campaigns SET campaign_id = $2 WHERE campaign_id = $1", campaign, "moved"
        )
    # The inserting transaction holds the campaign: a DELETE of it waits for the commit,
    # then takes the new contacts with it (was ON DELETE CASCADE).
    async with pg_store.pool.acquire() as conn, conn.transaction():
        await conn.execute(insert, campaign, "+12125550115")
        deleting = asyncio.ensure_future(
            pg_store.pool.execute("DELETE FROM campaigns WHERE campaign_id = $1", campaign)
        )
        waiting = 0
        for _ in range(500):  # until the DELETE reaches its lock wait
            waiting = await pg_store.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'DELETE FROM campaigns%'"
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting == 1
        assert not deleting.done()
    await asyncio.wait_for(deleting, 5)
    assert await pg_store.pool.fetchval(count, campaign) == 0


async def test_hopper_function_runs_the_queries_the_plans_are_checked_on(
    pg_store: PgStore,
) -> None:
    """hopper_pick (migration 0014) runs PICK and PICK_REST, their parameters named: the
    plan test above EXPLAINs the Python text, so the two must not drift apart."""
    import re

    from engine.campaigns.hopper import PICK, PICK_IN_FUNCTION, PICK_REST, REST_IN_FUNCTION

    def normal(sql: str, names: dict[str, str]) -> str:
        for number, name in names.items():
            sql = sql.replace(number, name)
        sql = re.sub(r"--[^\n]*", "", sql)
        return re.sub(r"\s+", " ", sql).strip()

    body = await pg_store.pool.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'hopper_pick'")
    body = normal(body, {})
    assert normal(PICK, PICK_IN_FUNCTION) in body
    assert normal(PICK_REST, REST_IN_FUNCTION) in body


async def _colliding(pool: asyncpg.Pool, prefix: str, suffix: str = "") -> tuple[str, str]:
    """Two names ``prefix`` + letters + ``suffix`` with the same hashtext (32 bits: among
    300,000 names the birthday bound makes a pair all but certain)."""
    row = await pool.fetchrow(
        "SELECT min(s) AS a, max(s) AS b FROM (SELECT $1 || translate(lpad(to_hex(g), 6, '0'),"
        " '0123456789abcdef', 'abcdefghijklmnop') || $2 AS s FROM generate_series(1, 300000) g)"
        " n GROUP BY hashtext(s) HAVING count(*) > 1 LIMIT 1",
        prefix,
        suffix,
        timeout=30,
    )
    assert row is not None, "no hashtext collision among 300,000 names"
    return str(row["a"]), str(row["b"])


async def test_hopper_names_sharing_a_hash_are_told_apart(pg_store: PgStore) -> None:
    """The hopper's index is keyed on hashtext() of the campaign and the zone (migration
    0014): names with one hash share an index range, and the rows must still be told apart."""
    pool = pg_store.pool
    camp_a, camp_b = await _colliding(pool, f"h{uuid.uuid4().hex[:6]}-")
    # POSIX zone specs ("ZABCDEF5": 5 hours west of UTC), which PostgreSQL accepts as zones.
    zone_x, zone_y = await _colliding(pool, "Z", "5")
    for name in (camp_a, camp_b):
        await pool.execute(
            "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2)",
            name,
            {"trunk_group": "outbound", "queue": "sales", "default_region": "US"},
        )
    (ax, ay) = await _seed(pool, camp_a, [{"tz": zone_x}, {"tz": zone_y, "phone": "+12125550001"}])
    (bx,) = await _seed(pool, camp_b, [{"tz": zone_x, "phone": "+12125550002"}])
    hopper = Hopper(pool)
    args = dict(limit=10, now=NOW, max_attempts=3, max_per_day=2)

    async def ids(campaign: str, zones: list[str]) -> list[int]:
        picked = await hopper.pick(campaign, open_tzs=zones, **args)  # type: ignore[arg-type]
        return [c.contact_id for c in picked]

    assert await ids(camp_a, [zone_x]) == [ax]
    assert await ids(camp_a, [zone_y]) == [ay]
    assert await ids(camp_a, [zone_x, zone_y]) == [ax, ay]
    assert await ids(camp_b, [zone_x, zone_y]) == [bx]
    # PICK_REST (no known groups: every priority is one the cache does not know) as well.
    rest = await pool.fetch(
        "SELECT contact_id FROM hopper_pick($1, $2, $3, 3, 2, 10, '{}', '{}')",
        camp_a,
        NOW,
        [zone_y],
    )
    assert [r["contact_id"] for r in rest] == [ay]


async def test_a_list_overlapping_the_campaign_keeps_the_same_rows_either_way(
    pg_store: PgStore, campaign: str
) -> None:
    """A loader inserts without ON CONFLICT while the campaign has none of a batch's numbers
    and falls back to it, for that batch and the rest, at the first it has: the rows are the
    ones ON CONFLICT alone keeps, and the counts the same."""
    # A number repeated two batches later: loaded without ON CONFLICT, then skipped with it.
    first = "phone\n" + "".join(f"+1212555{i:04d}\n" for i in [*range(1100, 1200), 1101])
    # Batches of 40 rows: the first two are new numbers (one repeated within the batch), the
    # third meets the first list's numbers, the last ones hold both.
    second = "phone,n\n" + "".join(
        f"+1212555{i:04d},{n}\n"
        for n, i in enumerate([*range(1000, 1079), 1000, *range(1150, 1250)])
    )

    async def load(body: str, *, lanes: int) -> tuple[ImportReport, list[ContactLoader]]:
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(pg_store.pool.acquire()) for _ in range(lanes)]
            loaders = [ContactLoader(c, campaign, "l") for c in conns]
            report = await run_import(
                chunks(body.encode()),
                ImportSettings(Format.CSV, "US", batch_rows=40),
                [ld.load for ld in loaders],
                InlineRejects(),
            )
        return report, loaders

    report, loaders = await load(first, lanes=1)
    assert (report.loaded, report.duplicates) == (100, 1)
    assert loaders[0].new_numbers  # the campaign never had a number of a "new" row
    report, loaders = await load(second, lanes=2)
    assert (report.rows, report.loaded, report.duplicates) == (180, 129, 51)
    assert not any(ld.new_numbers for ld in loaders)  # both fell back
    rows = await pg_store.pool.fetch(
        "SELECT phone, source_line, fields FROM contacts WHERE campaign_id = $1", campaign
    )
    kept = {r["phone"]: (r["source_line"], r["fields"]) for r in rows}
    assert len(kept) == 229
    assert kept["+12125551000"] == (2, {"n": "0"})  # the first of its two lines
    assert kept["+12125551150"] == (52, {})  # the first list's
    assert kept["+12125551101"] == (3, {})
    assert kept["+12125551249"] == (181, {"n": "179"})


async def test_a_parsing_process_killed_mid_file_then_the_same_import_again_completes_it(
    pg_store: PgStore, campaign: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real path (process pool, two loaders, PostgreSQL): a parsing process killed mid-file
    stops the import; the same service imports the file again (with a new pool: the broken one
    takes no more work) and the campaign ends with every number once, each with its first
    line, as an uninterrupted import leaves it."""
    monkeypatch.setattr(importer, "CHUNK_CHARS", 4096)  # many chunks: work is left after the kill
    # Each number twice, 3,000 lines apart; the first 3,000 lines hold every number once.
    body = "phone,n\n" + "".join(f"+1212555{(i * 7) % 3000:04d},{i}\n" for i in range(6000))
    data = body.encode()
    service = ContactsService(pg_store.pool, timeout_s=5, workers=2, loaders=2, batch_rows=200)

    async def killed_at_40_percent() -> AsyncIterator[bytes]:
        killed = False
        for at in range(0, len(data), 8192):
            yield data[at : at + 8192]
            if not killed and at >= 0.4 * len(data) and service._executor is not None:
                for process in list(service._executor._processes.values()):
                    process.kill()
                killed = True

    try:
        with pytest.raises(BrokenProcessPool):
            await service.import_contacts(
                campaign, killed_at_40_percent(), fmt=Format.CSV, rejects=InlineRejects()
            )
        kept = await pg_store.pool.fetchval(
            "SELECT count(*) FROM contacts WHERE campaign_id = $1", campaign
        )
        assert 0 < kept < 3000
        report = await service.import_contacts(
            campaign, chunks(data, 8192), fmt=Format.CSV, rejects=InlineRejects()
        )
    finally:
        service.close()
    assert (report.loaded, report.duplicates) == (3000 - kept, 3000 + kept)
    rows = await pg_store.pool.fetch(
        "SELECT phone, source_line, fields FROM contacts WHERE campaign_id = $1", campaign
    )
    first = {f"+1212555{(i * 7) % 3000:04d}": i for i in range(3000)}
    assert {r["phone"]: (r["source_line"], r["fields"]) for r in rows} == {
        phone: (i + 2, {"n": str(i)}) for phone, i in first.items()
    }


async def test_values_copy_must_escape_arrive_as_written_on_every_path(
    service: ContactsService, campaign: str, pg_store: PgStore
) -> None:
    # Rows reach PostgreSQL as COPY text written by the parsing process (parse.copy_row):
    # backslashes, tabs, newlines and carriage returns in a value must be escaped, whether
    # the row goes straight into contacts (a new number), through the staging table (a number
    # seen before in the import), or all through ON CONFLICT (a list the campaign overlaps).
    odd = ["back\\slash", "tab\there", "new\nline", "cr\rhere", "\\N", "\\\\t", "ünï 电话", ""]
    rows = [
        {"phone": f"+1212555{i:04d}", "note": value, "tz": "America/Chicago"}
        for i, value in enumerate(odd)
    ]
    rows.append({"phone": "+12125550000", "note": "a repeat: not kept"})
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    list_name = "list\twith \\ odd\nname"
    report = await service.import_contacts(
        campaign, chunks(body, 37), fmt=Format.JSONL, rejects=InlineRejects(), list_name=list_name
    )
    assert (report.loaded, report.duplicates, report.rejected) == (len(odd), 1, 0)
    # A second list overlapping the campaign: the ON CONFLICT path for every row.
    more = [{"phone": f"+1212556{i:04d}", "note": value} for i, value in enumerate(odd)]
    overlap = [*more, rows[0]]
    body2 = "".join(json.dumps(r) + "\n" for r in overlap).encode()
    again = await service.import_contacts(
        campaign, chunks(body2, 41), fmt=Format.JSONL, rejects=InlineRejects(), list_name="l2"
    )
    assert (again.loaded, again.duplicates) == (len(odd), 1)
    got = await pg_store.pool.fetch(
        "SELECT phone, tz, fields, source_line, list_name FROM contacts WHERE campaign_id = $1"
        " ORDER BY phone",
        campaign,
    )
    assert [(r["phone"], r["fields"], r["source_line"], r["list_name"]) for r in got] == [
        *((f"+1212555{i:04d}", {"note": v}, i + 1, list_name) for i, v in enumerate(odd)),
        *((f"+1212556{i:04d}", {"note": v}, i + 1, "l2") for i, v in enumerate(odd)),
    ]
    assert {r["tz"] for r in got[: len(odd)]} == {"America/Chicago"}
