"""A TCP proxy between a driver and its switch, so the suite controls the control link.

Why a proxy instead of each switch's own way to drop a client: Asterisk has no CLI command
that kicks one AMI session, and a real FreeSWITCH cannot be told by the test to cut one ESL
connection. Cutting the link *between* the two works the same for the Asterisk sandbox, the
fake FreeSWITCH and a real FreeSWITCH, and it leaves the switch (and its calls) untouched,
which is exactly the "link lost, switch kept the call" case.

It also records every byte the driver wrote to the switch, on every connection, so a test
can count what the peer really received (e.g. that an originate was written once, never
re-sent after a reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib


class LinkProxy:
    """``127.0.0.1:<port>`` -> ``upstream_host:upstream_port``.

    * :meth:`cut` aborts every open connection (both sides), as a network failure would.
    * :meth:`hold` makes new connections fail (accepted, then closed at once) until
      :meth:`release`; the driver keeps retrying with its backoff meanwhile.
    * :attr:`sent` holds every byte written by the driver, across all connections.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = "127.0.0.1"
        self.port = 0
        self.sent = bytearray()
        self.connections = 0
        self.refused = 0
        self._held = False
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def cut(self) -> None:
        """Abort every proxied connection now (RST on both sides)."""
        for client, upstream in list(self._pairs):
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()

    def hold(self) -> None:
        """Cut the link and refuse new connections until :meth:`release`."""
        self._held = True
        self.cut()

    def release(self) -> None:
        self._held = False

    def sent_text(self) -> str:
        return self.sent.decode("utf-8", "replace")

    async def _on_client(
        self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
    ) -> None:
        if self._held:
            self.refused += 1
            c_writer.transport.abort()
            return
        try:
            u_reader, u_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            # The switch is down (e.g. restarting): the driver sees a closed link and retries.
            self.refused += 1
            c_writer.transport.abort()
            return
        self.connections += 1
        pair = (c_writer, u_writer)
        self._pairs.add(pair)
        up = asyncio.create_task(self._pipe(c_reader, u_writer, record=True))
        down = asyncio.create_task(self._pipe(u_reader, c_writer, record=False))
        for task in (up, down):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # One side ended: end the other too, as a single TCP link would.
            self._pairs.discard(pair)
            c_writer.transport.abort()
            u_writer.transport.abort()
            for task in (up, down):
                task.cancel()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                if record:
                    self.sent += data
                writer.write(data)
                await writer.drain()
