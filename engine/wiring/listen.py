"""Opening the engine's listeners: a bind that fails names the setting to change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from engine.core.errors import StartupError


@contextmanager
def named_bind(setting: str, address: str) -> Iterator[None]:
    """Turn the ``OSError`` of a listener that cannot bind (the address in use, not local, not
    allowed) into a :class:`StartupError` naming the ``engine.toml`` setting, not a traceback."""
    try:
        yield
    except OSError as err:
        raise StartupError(
            f"{setting} = {address!r}: cannot listen there ({err.strerror or err}); expected a "
            "free local HOST:PORT: is another engine or program using it?"
        ) from err
