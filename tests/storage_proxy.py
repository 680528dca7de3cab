"""A TCP proxy in front of a storage server, so a drill decides what the engine's link does.

The engine's DSN (or URL) points at the proxy; the proxy forwards to the real server over
TCP or a unix socket. Three modes, switched at any time:

* ``pass``: bytes flow both ways.
* ``blackhole``: what a dead route or a hung server looks like. New connections are
  accepted and never answered; open connections stall in both directions (nothing is
  forwarded, nothing is closed). When the mode goes back to ``pass`` the stalled bytes
  flow again, as TCP would deliver them once the route healed.
* ``refuse``: the server is down. The listening socket is closed, so a connect gets
  ECONNREFUSED, and every open connection is reset. ``pass`` listens again on the
  same port.

Why a proxy instead of stopping the server: the session's PostgreSQL and Redis are
shared with the rest of the suite, and no server can be told to ignore one client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

Mode = Literal["pass", "blackhole", "refuse"]


@dataclass(frozen=True)
class Upstream:
    """Where the real server listens: ``host``/``port`` over TCP, or a unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.path:
            return await asyncio.open_unix_connection(self.path)
        return await asyncio.open_connection(self.host, self.port)


def pg_upstream(dsn: str) -> Upstream:
    """The server of a ``postgresql://`` DSN (TCP, or ``?host=/socket/dir&port=N``)."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or parts.hostname or "127.0.0.1"
    port = int(query.get("port") or parts.port or 5432)
    if host.startswith("/"):
        return Upstream(path=f"{host}/.s.PGSQL.{port}")
    return Upstream(host=host, port=port)


def pg_dsn_via(dsn: str, port: int) -> str:
    """``dsn`` with its server replaced by ``127.0.0.1:port`` (user and database kept)."""
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    query = "&".join(
        f"{k}={v[-1]}" for k, v in parse_qs(parts.query).items() if k not in ("host", "port")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class StorageProxy:
    """``127.0.0.1:<port>`` -> ``upstream``, in mode ``pass`` until told otherwise."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.host = "127.0.0.1"
        self.port = 0
        self.mode: Mode = "pass"
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()

    async def __aenter__(self) -> StorageProxy:
        await self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        await self._close_listener()
        self._reset_all()
        self._flowing.set()
        for task in list(self._links):
            task.cancel()
        for task in list(self._links):
            with contextlib.suppress(BaseException):
                await task

    async def set_mode(self, mode: Mode) -> None:
        if mode == self.mode:
            return
        previous, self.mode = self.mode, mode
        if mode == "pass":
            if previous == "refuse":
                await self._listen()
            self._flowing.set()
        elif mode == "blackhole":
            self._flowing.clear()
            if previous == "refuse":
                await self._listen()
        else:  # refuse
            self._flowing.clear()
            await self._close_listener()
            self._reset_all()

    # ------------------------------------------------------------ internals

    async def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The same port across refuse -> pass, despite connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self._server = await asyncio.start_server(self._on_client, sock=sock)
        self.port = int(sock.getsockname()[1])

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # wait_closed() would wait for every handler (the links) to finish.

    def _reset_all(self) -> None:
        for transport in list(self._transports):
            _abort(transport)
        self._transports.clear()
        for task in list(self._links):
            task.cancel()

    async def _on_client(
        self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._transports.add(c_writer.transport)
        self.accepted += 1
        try:
            await self._link(c_reader, c_writer)
        except asyncio.CancelledError:
            # Only our own reset or stop cancels a link. Ending normally keeps
            # asyncio's start_server from logging the cancelled handler.
            pass
        finally:
            _abort(c_writer.transport)
            self._transports.discard(c_writer.transport)
            self._links.discard(task)

    async def _link(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        # Black-holed: accepted, never answered, until the route heals.
        await self._flowing.wait()
        if self.mode == "refuse" or c_writer.transport.is_closing():
            return
        try:
            u_reader, u_writer = await self.upstream.open()
        except OSError:
            return
        self._transports.add(u_writer.transport)
        up = asyncio.create_task(self._pipe(c_reader, u_writer))
        down = asyncio.create_task(self._pipe(u_reader, c_writer))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in (up, down):
                pipe.cancel()
            _abort(u_writer.transport)
            self._transports.discard(u_writer.transport)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    return
                # Bytes read just before the black hole began are held, not lost.
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()


def _abort(transport: asyncio.BaseTransport) -> None:
    with contextlib.suppress(Exception):
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()
