"""Storage-layer errors.

asyncpg and redis exceptions never leave ``engine.store``: every public
coroutine translates them into one of these with ``raise ... from err`` so the
original stays on ``__cause__`` for logs. Domains translate them again into
their own :class:`~engine.core.errors.EngineError` subclasses.
"""

from __future__ import annotations


class StoreError(Exception):
    """A storage operation failed (bad SQL, constraint violation, server error)."""


class StoreUnavailable(StoreError):
    """The database or Redis could not be reached (refused, timed out, connection lost).

    Unlike a plain :class:`StoreError` this is usually transient: retry later.
    """


class MigrationError(StoreError):
    """The schema migrations cannot be applied; the engine must refuse to start."""


class EmbeddedServerError(StoreError):
    """An embedded PostgreSQL or Redis server could not be started or stopped.

    The message ends with the tail of the server's log file, since that is
    where the actual reason (port in use, bad permissions, corrupt data
    directory) is written.
    """
