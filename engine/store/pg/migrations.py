"""Schema migrations: ordered plain ``.sql`` files applied at startup.

Files live in ``engine/store/pg/migrations/`` and are named
``NNNN_some_name.sql`` (four-digit version, lower-case snake name). Each is
applied once, in version order, inside its own transaction together with its
row in ``schema_migrations`` — so a failing migration leaves no trace and the
next start retries it.

Several engine instances may start at once against one database. All of the
work happens while holding a session-level ``pg_advisory_lock``: the first
starter applies, the others wait and then find nothing left to do.

An applied migration must never change: if its file's checksum differs from
the recorded one, the engine refuses to start rather than run against a
schema that does not match the code. Fix forward with a new file instead.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from engine.store.errors import MigrationError, StoreError
from engine.store.pg.errors import PG_ERRORS, translate

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Fixed, arbitrary 64-bit key for pg_advisory_lock; it only has to differ from
# any other advisory lock the application takes in the same database.
# int.from_bytes(sha256(b"telephony-engine:schema-migrations")[:8], signed=True)
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"telephony-engine:schema-migrations").digest()[:8], "big", signed=True
)

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    checksum: str
    sql: str
    path: Path


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str


def checksum(sql: str) -> str:
    """sha256 of the file text with line endings normalised to LF.

    Normalising means a checkout with ``core.autocrlf`` (CRLF files) does not
    look like an edited migration.
    """
    return hashlib.sha256(sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read and validate the migration files of ``directory``, sorted by version.

    Raises :class:`MigrationError` naming the offending file for a bad name, a
    duplicate version, or a file that is not UTF-8.
    """
    found: dict[int, Migration] = {}
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(
                f"{path}: bad migration file name; expected NNNN_lower_snake_name.sql "
                "(four-digit version, e.g. 0002_add_recordings.sql)"
            )
        version = int(m["version"])
        if version == 0:
            raise MigrationError(f"{path}: version 0000 is reserved; start at 0001")
        if version in found:
            raise MigrationError(
                f"{path}: duplicate migration version {version:04d} "
                f"(also {found[version].path.name})"
            )
        try:
            sql = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise MigrationError(f"{path}: not valid UTF-8 ({err.reason})") from err
        if not sql.strip():
            raise MigrationError(f"{path}: migration file is empty")
        found[version] = Migration(version, m["name"], checksum(sql), sql, path)
    return [found[v] for v in sorted(found)]


def plan(available: list[Migration], applied: list[AppliedMigration]) -> list[Migration]:
    """The migrations still to apply, or :class:`MigrationError` if history disagrees.

    Pure: compares files with the ``schema_migrations`` rows. Refuses when an
    applied migration's file changed (checksum) or disappeared, since either
    means the code no longer describes the database.
    """
    by_version = {m.version: m for m in available}
    for row in applied:
        m = by_version.get(row.version)
        if m is None:
            raise MigrationError(
                f"database has migration {row.version:04d}_{row.name} applied but there is no "
                "such file; the database is newer than this code (or a file was deleted)"
            )
        if m.checksum != row.checksum:
            raise MigrationError(
                f"migration {m.path.name} was changed after it was applied "
                f"(recorded checksum {row.checksum[:12]}..., file now {m.checksum[:12]}...). "
                "Applied migrations are immutable: restore the file and add a new migration."
            )
    done = {row.version for row in applied}
    return [m for m in available if m.version not in done]


async def apply_migrations(
    pool: asyncpg.Pool,
    directory: Path = MIGRATIONS_DIR,
    *,
    lock_timeout_s: float = 120.0,
) -> list[Migration]:
    """Apply pending migrations under the advisory lock; return the ones applied now.

    Safe to call concurrently from several processes: the advisory lock
    serialises them and the second caller returns ``[]``.
    """
    available = load_migrations(directory)
    try:
        async with pool.acquire() as conn:
            try:
                await conn.execute(
                    "SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY, timeout=lock_timeout_s
                )
            except TimeoutError as err:
                raise MigrationError(
                    f"could not take the migration lock within {lock_timeout_s:.0f}s; another "
                    "engine instance is migrating or hung while holding it (see pg_locks)"
                ) from err
            try:
                return await _apply_locked(conn, available)
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
                except BaseException:
                    # The pool does not reset sessions on release (pool.py
                    # _no_reset): a lock we could not release dies with its
                    # session instead of staying held by a pooled connection.
                    conn.terminate()
                    raise
    except StoreError:
        raise
    except PG_ERRORS as err:
        raise translate(err, "applying migrations") from err


async def applied_migrations(conn: asyncpg.Connection) -> list[AppliedMigration]:
    rows = await conn.fetch(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
    )
    return [AppliedMigration(r["version"], r["name"], r["checksum"]) for r in rows]


async def _apply_locked(conn: asyncpg.Connection, available: list[Migration]) -> list[Migration]:
    # Created under the lock: two concurrent CREATE TABLE IF NOT EXISTS can
    # still collide on the pg_type unique index.
    await conn.execute(_CREATE_TABLE)
    pending = plan(available, await applied_migrations(conn))
    for m in pending:
        log.info("applying migration %s", m.path.name)
        try:
            async with conn.transaction():
                # No arguments -> simple query protocol, so a file may hold
                # many statements. Statements that cannot run in a
                # transaction (CREATE INDEX CONCURRENTLY) are not supported.
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
        except asyncpg.PostgresError as err:
            raise MigrationError(f"migration {m.path.name} failed: {err}") from err
    return pending
