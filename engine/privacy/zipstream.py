"""A zip archive written straight into an HTTP response, in bounded memory.

``zipfile`` writes to any object with ``write`` and ``tell``; without ``seek`` it puts each
entry's sizes and CRC in a data descriptor after the data (general purpose flag bit 3), so
nothing is ever rewritten and every byte can go out as soon as it is made. The buffer holds
at most one chunk (one 64 KiB frame of audio, or one JSON file) before it is sent.
"""

from __future__ import annotations

import json
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from typing import Any


class _Sink:
    """What ``zipfile`` writes into: bytes wait here until :meth:`take`."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._data += data
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self._data)
        self._data.clear()
        return out


def to_json(value: Any) -> bytes:
    def default(o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        if isinstance(o, uuid.UUID):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON-serialisable")

    return (json.dumps(value, default=default, indent=2, ensure_ascii=False) + "\n").encode()


class ZipStream:
    def __init__(
        self, send: Callable[[bytes], Awaitable[None]], *, when: float | None = None
    ) -> None:
        self._send = send
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", allowZip64=True)
        self._when = time.gmtime(when if when is not None else time.time())[:6]

    def _info(self, name: str, compress: int, size: int = 0) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self._when)
        info.compress_type = compress
        # A known size lets zipfile decide on ZIP64 before writing (an entry over 2 GiB).
        info.file_size = size
        info.external_attr = 0o600 << 16
        return info

    async def _flush(self) -> None:
        data = self._sink.take()
        if data:
            await self._send(data)

    async def add_json(self, name: str, value: Any) -> None:
        with self._zip.open(self._info(name, zipfile.ZIP_DEFLATED), "w") as entry:
            entry.write(to_json(value))
        await self._flush()

    async def add_stream(self, name: str, size: int, chunks: AsyncIterator[bytes]) -> None:
        """An entry of ``size`` bytes from ``chunks``; stored, not compressed (audio)."""
        with self._zip.open(self._info(name, zipfile.ZIP_STORED, size), "w") as entry:
            async for chunk in chunks:
                entry.write(chunk)
                await self._flush()
        await self._flush()

    async def close(self) -> None:
        """The central directory: without it the archive is unreadable, so a transfer cut
        short is never mistaken for a complete export."""
        self._zip.close()
        await self._flush()
