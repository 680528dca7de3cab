"""A full (or read-only) outbox disk, injected where the journal writes.

``Journal._write_bytes`` is the journal's one ``os.write``: while ``full`` it raises
``OSError(ENOSPC)``, as a full ``data_dir`` does (docs/durability.md "A full or read-only
data_dir"); ``short = n`` lets the next write take only ``n`` bytes, then the disk is full.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from engine.store.outbox import Journal


class Disk:
    def __init__(self) -> None:
        self.full = False
        self.short: int | None = None
        self.refused = 0


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    state = Disk()
    real = Journal._write_bytes

    def write_bytes(self: Journal, data: bytes) -> int:
        if state.short is not None:
            n, state.short = state.short, None
            assert self._fd is not None
            taken = os.write(self._fd, data[:n])
            state.full = True
            return taken
        if state.full:
            state.refused += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Journal, "_write_bytes", write_bytes)
    yield state
