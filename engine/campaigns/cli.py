"""``python -m engine contacts import FILE --campaign NAME``, ``python -m engine dnc import FILE``.

Both connect to the configured PostgreSQL: ``ENGINE_PG_DSN``, else ``[storage] postgres_dsn`` of
the config file, else the embedded server under the config's data dir (engine/store/pg/pool.py;
not while an engine runs on that same data dir: stop it or point both at one server).

Exit codes (docs/contacts.md):

- 0: every row loaded (or already there: duplicates);
- 1: done, but some rows were rejected (see the rejects file);
- 2: bad invocation: arguments, config, unreadable file, or a file that cannot be read as a
  whole (no ``phone`` header, not UTF-8, unclosed quote);
- 3: no such campaign;
- 4: PostgreSQL failed or timed out; what was loaded stays, run the same command again to
  finish (nothing is inserted twice).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg

from engine.campaigns.contacts.importer import CsvRejects, ImportFailed, ImportReport, file_chunks
from engine.campaigns.contacts.parse import Format
from engine.campaigns.contacts.service import ContactsService
from engine.campaigns.dnc import GLOBAL
from engine.campaigns.errors import CampaignNotFound
from engine.campaigns.regions import region_problem
from engine.core.errors import ConfigError
from engine.store.errors import StoreError
from engine.store.pg.pool import PgStore

DEFAULT_CONFIG = "telephony-config/engine.toml"
EXIT_OK, EXIT_REJECTS, EXIT_USAGE, EXIT_NO_CAMPAIGN, EXIT_STORAGE = 0, 1, 2, 3, 4


# Opens the configured PostgreSQL for a config file path (engine/cli.py: this layer does not
# read the engine config itself); raises ConfigError.
StoreFactory = Callable[[str], PgStore]


def _region(value: str) -> str:
    # Refused here like ?region= on the API (400 invalid-region), not left to reject every
    # number written without +CC, or to pass unnoticed when each has one.
    problem = region_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="CSV (with a header) or JSONL file")
    parser.add_argument(
        "--format",
        choices=[f.value for f in Format],
        default=None,
        help="default: from the file name (.jsonl/.ndjson: jsonl, else csv)",
    )
    parser.add_argument(
        "--rejects",
        type=Path,
        default=None,
        help="rejects file (CSV: line,reason,raw); default FILE.rejects.csv",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parsers(subparsers: Any, open_store: StoreFactory) -> None:
    contacts = subparsers.add_parser("contacts", help="campaign contact lists")
    csub = contacts.add_subparsers(dest="contacts_command", required=True)
    imp = csub.add_parser(
        "import",
        help="import a contact list into a campaign",
        description=(__doc__ or "").replace("``", ""),  # plain text for --help
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(imp)
    imp.add_argument("--campaign", required=True)
    imp.add_argument(
        "--region",
        default=None,
        type=_region,
        help="default region of numbers without +CC (default: the campaign's)",
    )
    imp.add_argument(
        "--list-name", default=None, help="stored with each contact (default: file name)"
    )
    imp.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parsing processes (0: parse in this process)",
    )
    imp.add_argument(
        "--loaders",
        type=int,
        default=2,
        help="PostgreSQL connections inserting at once, each a share of the numbers (>= 1)",
    )
    imp.set_defaults(func=run_contacts_import, open_store=open_store)
    dnc = subparsers.add_parser("dnc", help="do-not-call lists")
    dsub = dnc.add_subparsers(dest="dnc_command", required=True)
    dimp = dsub.add_parser(
        "import",
        help="import numbers into a DNC list",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(dimp)
    dimp.add_argument("--campaign", default=GLOBAL, help="the campaign's list (default: global)")
    dimp.add_argument(
        "--region", default="US", type=_region, help="default region of numbers without +CC"
    )
    dimp.set_defaults(func=run_dnc_import, open_store=open_store)


def _format(args: argparse.Namespace) -> Format:
    if args.format:
        return Format(args.format)
    return Format.JSONL if args.file.suffix.lower() in (".jsonl", ".ndjson") else Format.CSV


class _Bar:
    """tqdm over the file's bytes (the ETA), with rows and rows/s beside it."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            disable=not enabled,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.started = time.perf_counter()
        self.last = 0

    def __call__(self, done_bytes: int, rows: int) -> None:
        self.bar.update(done_bytes - self.last)
        self.last = done_bytes
        elapsed = time.perf_counter() - self.started
        self.bar.set_postfix(
            rows=rows, rows_s=f"{rows / elapsed:,.0f}" if elapsed else "-", refresh=False
        )

    def close(self) -> None:
        self.bar.close()


def _print_report(report: ImportReport, rejects: CsvRejects) -> int:
    for key, value in report.as_dict().items():
        print(f"{key}: {value}")
    if rejects.count:
        print(f"rejects: {rejects.path}")
    return EXIT_REJECTS if report.rejected else EXIT_OK


def _run(args: argparse.Namespace, body: Any) -> int:
    path: Path = args.file
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    rejects = CsvRejects(args.rejects or path.with_name(path.name + ".rejects.csv"))
    bar = _Bar(path.stat().st_size, enabled=not args.no_progress)
    try:
        report = asyncio.run(body(args.open_store(args.config), file_chunks(path), rejects, bar))
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except ImportFailed as err:
        print(f"{path}: {err.message}", file=sys.stderr)
        return EXIT_USAGE
    except CampaignNotFound as err:
        print(f"error: {err.message}", file=sys.stderr)
        return EXIT_NO_CAMPAIGN
    except (
        StoreError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        OSError,
        TimeoutError,
    ) as err:
        print(
            f"storage error: {err}; loaded rows are kept, run the same command again to finish",
            file=sys.stderr,
        )
        return EXIT_STORAGE
    finally:
        bar.close()
        rejects.close()
    return _print_report(report, rejects)


def run_contacts_import(args: argparse.Namespace) -> int:
    fmt = _format(args)

    async def body(
        store: PgStore, stream: AsyncIterator[bytes], rejects: CsvRejects, bar: _Bar
    ) -> ImportReport:
        async with store:
            service = ContactsService(
                store.pool, workers=max(0, args.workers), loaders=max(1, args.loaders)
            )
            try:
                return await service.import_contacts(
                    args.campaign,
                    stream,
                    fmt=fmt,
                    rejects=rejects,
                    region=args.region,
                    list_name=args.list_name or args.file.name,
                    progress=bar,
                )
            finally:
                service.close()

    return _run(args, body)


def run_dnc_import(args: argparse.Namespace) -> int:
    fmt = _format(args)

    async def body(
        store: PgStore, stream: AsyncIterator[bytes], rejects: CsvRejects, bar: _Bar
    ) -> ImportReport:
        async with store:
            service = ContactsService(store.pool)
            if args.campaign != GLOBAL:
                await service.region_of(args.campaign)  # exit 3 for an unknown campaign
            return await service.dnc.import_numbers(
                args.campaign,
                stream,
                fmt=fmt,
                region=args.region,
                rejects=rejects,
                progress=bar,
            )

    return _run(args, body)
