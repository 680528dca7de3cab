"""Database-level administration: DSN rewriting, create/drop database.

Used by the test fixtures (one throwaway database per session) and by ops
scripts; not by the running engine.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from engine.store.pg.errors import PG_ERRORS, translate

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at ``database`` instead; host, port, user and query kept.

    Works for TCP DSNs and for unix-socket DSNs of the form
    ``postgresql://user@/db?host=/socket/dir``.
    """
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"not a postgresql:// DSN: {dsn.split('@')[-1]!r}")
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def _check_name(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"database name {name!r} must match {_IDENT.pattern}")
    return name


async def _execute_on_server(dsn: str, sql: str, doing: str) -> None:
    """Run one statement that cannot run in a transaction (CREATE/DROP DATABASE)."""
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    except PG_ERRORS as err:
        raise translate(err, doing) from err


async def create_database(dsn: str, name: str) -> str:
    """Create database ``name`` on the server of ``dsn``; return a DSN for it."""
    # Identifiers cannot be bind parameters; _check_name validates the name.
    await _execute_on_server(
        dsn, f'CREATE DATABASE "{_check_name(name)}"', f"creating database {name}"
    )
    return with_database(dsn, name)


async def drop_database(dsn: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting its sessions (PG 13+)."""
    await _execute_on_server(
        dsn,
        f'DROP DATABASE IF EXISTS "{_check_name(name)}" WITH (FORCE)',
        f"dropping database {name}",
    )
