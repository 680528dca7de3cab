"""PostgreSQL: pool, migrations, repositories (the system of record)."""

from engine.store.pg.audit import AuditEntry, AuditLog
from engine.store.pg.cdr import CdrCursor, CdrRepository, CdrRow
from engine.store.pg.migrations import apply_migrations, load_migrations
from engine.store.pg.pool import PgStore

__all__ = [
    "AuditEntry",
    "AuditLog",
    "CdrCursor",
    "CdrRepository",
    "CdrRow",
    "PgStore",
    "apply_migrations",
    "load_migrations",
]
