"""Contact import throughput and memory on a 1,000,000-row CSV.

``python -m bench.contacts_import [--rows N] [--workers W] [--loaders L] [--drop]`` (or
``python -m bench contacts_import``): generates a CSV of US, UK and CN numbers in the spellings
lists arrive in (national, E.164, spaced, dashed), about 2% invalid and 3% repeated, with custom
fields and a ``tz`` column on some rows; creates a fresh database on ``ENGINE_BENCH_PG_DSN``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``), migrates it, creates a campaign and
imports the file with :class:`ContactsService` exactly as ``python -m engine contacts import``
does (``--loaders`` PostgreSQL connections, 2 as the CLI's default).

Prints and writes ``reports/contacts_import.json``: rows/s end to end, the report, peak RSS of
this process (``getrusage``) and, sampled from /proc every 0.1 s, of the parsing processes and
of the whole tree at once. (``RUSAGE_CHILDREN`` cannot see the workers: the forkserver starts
them, so they are this process's grandchildren.) The database is kept (bench/hopper.py
uses it; the next run recreates it) unless ``--drop``. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER_DSN = os.environ.get("ENGINE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("ENGINE_BENCH_DB", "bench_contacts")  # another session may bench too
CAMPAIGN = "bench"
BENCH_DIR = Path(os.environ.get("ENGINE_BENCH_DIR", "/tmp"))

US_AREAS = (
    "212",
    "415",
    "312",
    "713",
    "305",
    "206",
    "617",
    "404",
    "303",
    "702",
    "907",
    "808",
    "602",
    "503",
    "214",
    "718",
    "480",
    "919",
)
FIRST = ("Ada", "Bob", "Chen", "Dana", "Eve", "Femi", "Guo", "Hana", "Ian", "Jo", "Li", "Mia")
LAST = ("Smith", "Wang", "Jones", "Li", "Brown", "Zhang", "Taylor", "Liu", "Evans", "Chen")


def _number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:  # US, several spellings (default region US)
        area, exch, line = rng.choice(US_AREAS), rng.randint(200, 999), rng.randint(0, 9999)
        style = rng.randrange(4)
        if style == 0:
            return f"+1{area}{exch}{line:04d}"
        if style == 1:
            return f"({area}) {exch}-{line:04d}"
        if style == 2:
            return f"{area}-{exch}-{line:04d}"
        return f"1 {area} {exch} {line:04d}"
    if kind < 0.75:  # UK mobile and London
        if rng.random() < 0.6:  # 07[4-9]xx (some 076 are pagers, invalid as mobiles)
            return f"+44 7{rng.randint(400, 999)} {rng.randint(0, 999999):06d}"
        return f"+44 20 {rng.choice('3478')}{rng.randint(0, 999):03d} {rng.randint(0, 9999):04d}"
    # CN mobiles: 13x, 15x, 18x (154 is not allocated: a few invalid numbers, as in life)
    return f"+86 1{rng.choice('358')}{rng.randint(0, 9)} {rng.randint(0, 99999999):08d}"


def generate(path: Path, rows: int, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    recent: list[str] = []
    counts = {"rows": rows, "invalid_written": 0, "repeats_written": 0}
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("phone,first_name,last_name,account,balance,tz,priority\n")
        for i in range(rows):
            r = rng.random()
            if r < 0.02:
                phone = rng.choice(("12345", "+1 555 12", "not a number", "+44 20 1", ""))
                counts["invalid_written"] += 1
            elif r < 0.05 and recent:
                phone = rng.choice(recent)
                counts["repeats_written"] += 1
            else:
                phone = _number(rng)
                if len(recent) < 5000:
                    recent.append(phone)
                else:
                    recent[rng.randrange(5000)] = phone
            tz = "America/New_York" if rng.random() < 0.05 else ""
            name = rng.choice(FIRST)
            last = rng.choice(LAST) if rng.random() > 0.01 else 'O"Neil, Jr'
            last = f'"{last.replace(chr(34), chr(34) * 2)}"' if '"' in last else last
            f.write(
                f"{phone},{name},{last},ACC{i:08d},{rng.randint(0, 99999) / 100},{tz},"
                f"{rng.choice(('', '', '', '1', '5'))}\n"
            )
    return counts


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Peak RSS of this process, of its children, and of the whole tree at once (/proc)."""

    def __init__(self, interval_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.peak_self_kb = 0
        self.peak_children_kb = 0
        self.peak_tree_kb = 0
        self.child_cpu_s: dict[int, float] = {}  # last seen, per process of the tree
        self._halt = threading.Event()

    @staticmethod
    def _rss_kb(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                    out.extend(int(p) for p in f.read().split())
        except OSError:
            pass
        return out

    def run(self) -> None:
        me = os.getpid()
        while not self._halt.wait(self.interval_s):
            own = self._rss_kb(me)
            todo, kids = self._children(me), 0
            while todo:
                pid = todo.pop()
                kids += self._rss_kb(pid)
                self.child_cpu_s[pid] = max(self.child_cpu_s.get(pid, 0.0), cpu_s(pid))
                todo.extend(self._children(pid))
            self.peak_self_kb = max(self.peak_self_kb, own)
            self.peak_children_kb = max(self.peak_children_kb, kids)
            self.peak_tree_kb = max(self.peak_tree_kb, own + kids)

    def stop(self) -> None:
        self._halt.set()
        self.join()


async def _prepare(dsn: str) -> None:
    from engine.store.pg.pool import PgStore

    async with PgStore(dsn, Path("/tmp/unused-bench-pg")) as store:
        spec = {"trunk_group": "outbound", "queue": "sales", "default_region": "US"}
        await store.pool.execute(
            "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2)", CAMPAIGN, spec
        )


async def _import(dsn: str, path: Path, workers: int, loaders: int = 2) -> dict[str, Any]:
    from engine.campaigns.contacts.importer import CsvRejects, file_chunks
    from engine.campaigns.contacts.parse import Format
    from engine.campaigns.contacts.service import ContactsService
    from engine.store.pg.pool import PgStore

    rejects = CsvRejects(path.with_name(path.name + ".rejects.csv"))
    async with PgStore(dsn, Path("/tmp/unused-bench-pg"), min_size=2, max_size=2) as store:
        # The PostgreSQL backends the import may use (the pool's two), for their CPU time.
        async with store.pool.acquire() as a, store.pool.acquire() as b:
            backends = [
                await a.fetchval("SELECT pg_backend_pid()"),
                await b.fetchval("SELECT pg_backend_pid()"),
            ]
        pg_cpu0 = sum(cpu_s(pid) for pid in backends)
        service = ContactsService(store.pool, workers=workers, loaders=loaders)
        try:
            report = await service.import_contacts(
                CAMPAIGN,
                file_chunks(path),
                fmt=Format.CSV,
                rejects=rejects,
                list_name=path.name,
            )
        finally:
            if service._executor is not None:
                service._executor.shutdown(wait=True)  # so RUSAGE_CHILDREN counts the workers
            rejects.close()
        pg_cpu = sum(cpu_s(pid) for pid in backends) - pg_cpu0
        total = await store.pool.fetchval(
            "SELECT count(*) FROM contacts WHERE campaign_id = $1", CAMPAIGN
        )
    return {**report.as_dict(), "contacts_in_db": total, "postgres_cpu_s": round(pg_cpu, 2)}


async def _fresh_db() -> str:
    from engine.store.pg.admin import create_database, drop_database

    await drop_database(SERVER_DSN, DB_NAME)
    return await create_database(SERVER_DSN, DB_NAME)


def csv_path(rows: int) -> Path:
    return BENCH_DIR / f"bench-contacts-{rows}.csv"


def run(
    rows: int = 1_000_000, workers: int = 2, keep: bool = True, loaders: int = 2
) -> dict[str, Any]:
    started = time.perf_counter()
    path = csv_path(rows)
    gen = generate(path, rows)
    gen_s = time.perf_counter() - started
    dsn = asyncio.run(_fresh_db())
    asyncio.run(_prepare(dsn))
    sampler = RssSampler()
    sampler.start()
    load = os.getloadavg()
    self_cpu0 = time.process_time()
    t0 = time.perf_counter()
    report = asyncio.run(_import(dsn, path, workers, loaders))
    wall = time.perf_counter() - t0
    self_cpu = time.process_time() - self_cpu0
    sampler.stop()
    # CPU per row of each part: what the 2 cores must share, whatever else runs on them.
    pg_cpu = report.pop("postgres_cpu_s")
    workers_cpu = sum(sampler.child_cpu_s.values())
    per_row = 1e6 / report["rows"] if report["rows"] else 0.0
    result = {
        "file": str(path),
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "generated": gen,
        "generate_s": round(gen_s, 1),
        "workers": workers,
        "loaders": loaders,
        "report": report,
        "wall_s": round(wall, 2),
        "rows_per_s": round(report["rows"] / wall, 0),
        "peak_rss_mb": {
            "self_getrusage": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "self_sampled": round(sampler.peak_self_kb / 1024, 1),
            "children_sampled_sum": round(sampler.peak_children_kb / 1024, 1),
            "tree_sampled_sum": round(sampler.peak_tree_kb / 1024, 1),
        },
        "cpu_s": {
            "importer": round(self_cpu, 2),
            "parsing_processes": round(workers_cpu, 2),
            "postgres_backend": round(pg_cpu, 2),
        },
        "cpu_us_per_row": {
            "importer": round(self_cpu * per_row, 1),
            "parsing_processes": round(workers_cpu * per_row, 1),
            "postgres_backend": round(pg_cpu * per_row, 1),
            "total": round((self_cpu + workers_cpu + pg_cpu) * per_row, 1),
        },
        "loadavg_1_5_15_at_start": [round(x, 2) for x in load],
        "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        "database": DB_NAME,
    }
    if not keep:
        from engine.store.pg.admin import drop_database

        asyncio.run(drop_database(SERVER_DSN, DB_NAME))
    out = ROOT / "reports" / "contacts_import.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.contacts_import")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--loaders", type=int, default=2, help="PostgreSQL connections inserting (as the CLI)"
    )
    parser.add_argument(
        "--drop", action="store_true", help="drop the database after (bench/hopper.py needs it)"
    )
    args = parser.parse_args(argv)
    print(
        json.dumps(run(args.rows, args.workers, keep=not args.drop, loaders=args.loaders), indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
