"""``python -m engine audit verify`` and ``python -m engine auth matrix``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from engine.auth.matrix import render
from engine.store.errors import StoreError
from engine.store.pg.audit import AuditLog
from engine.store.pg.pool import PgStore

StoreFactory = Callable[[str], PgStore]


def add_parsers(subparsers: Any, open_store: StoreFactory) -> None:
    audit = subparsers.add_parser("audit", help="the audit trail")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    verify = asub.add_parser(
        "verify",
        help="recompute the audit log's hash chain; exit 1 at the first broken row",
    )
    verify.add_argument("--config", default="telephony-config/engine.toml")
    verify.set_defaults(func=run_verify, open_store=open_store)
    auth = subparsers.add_parser("auth", help="roles and access")
    usub = auth.add_subparsers(dest="auth_command", required=True)
    matrix = usub.add_parser("matrix", help="print the route x role table (Markdown)")
    matrix.set_defaults(func=run_matrix)


def run_matrix(args: argparse.Namespace) -> int:
    print(render())
    return 0


def run_verify(args: argparse.Namespace) -> int:
    async def verify() -> int:
        store: PgStore = args.open_store(args.config)
        async with store:
            report = await AuditLog(store.pool, timeout_s=30.0).verify()
        if report.ok:
            print(
                f"audit chain OK: {report.rows} rows "
                f"({report.unchained} from before the chain existed)"
            )
            return 0
        print(f"audit chain BROKEN at row id {report.broken_at}: {report.reason}")
        return 1

    try:
        return asyncio.run(verify())
    except StoreError as err:
        print(f"cannot read the audit log: {err}")
        return 2
