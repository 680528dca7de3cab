"""Storage layer: PostgreSQL (system of record) and Redis (live shared state).

Sits below the domains: imports only ``engine.core`` and the two client
libraries (asyncpg, redis.asyncio). With no DSN/URL configured, embedded
servers are started under a data directory; the code path is the same.
"""

from engine.store.errors import (
    EmbeddedServerError,
    MigrationError,
    StoreError,
    StoreUnavailable,
)

__all__ = ["EmbeddedServerError", "MigrationError", "StoreError", "StoreUnavailable"]
