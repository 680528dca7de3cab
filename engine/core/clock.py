"""The engine clock. Pure code takes ``now`` as an argument; only services read it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    """Wall-clock seconds since the epoch (timestamps that go into CDRs)."""
    return time.time()


def monotonic() -> float:
    """Monotonic seconds, for timeouts and rates; never goes backwards."""
    return time.monotonic()


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
