"""``GET /v1/events``: the WebSocket stream of normalized events.

Every message is ``{"seq": N, "event": {...}}`` with ``N`` strictly increasing.
A client that reconnects passes ``?since=<last seq it saw>`` and receives
everything after it, from the Redis Stream, then the live events.

Whenever the client cannot have every event after the last one it got, it is
told before the next event, at connect or at any time later, as often as it
happens, with::

    {"gap": {"since": S, "oldest": O, "reason": R}}

``S`` is the last seq the client had, ``O`` the first seq it can still have
(the next message carries it). Reasons:

- ``not-retained``: the history was trimmed past ``S`` (the client was away,
  or too slow while connected), or Redis lost its data;
- ``ahead-of-stream``: ``S`` is above the stream's head (a seq from another
  deployment, or a stream that restarted); the message also names ``head``,
  and the stream continues from there.

Either way the client must re-read state (``GET /v1/calls``) rather than trust
a silent hole. Sockets are closed with 1001 "engine shutting down" when the
engine stops, and with 1013 when the event history is unavailable; when
``max_clients`` sockets are open, or during shutdown, the upgrade is refused
with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from engine.auth.subprotocol import WS_PROTOCOL
from engine.core.errors import InvalidRequest, ServiceUnavailable
from engine.store.errors import StoreError
from engine.store.redis.stream import MAX_SEQ, EventStream
from engine.store.redis.stream_fanout import Overflowed, StreamFanout, StreamReset, Subscription
from engine.telemetry.logging import get_logger

log = get_logger("engine.api.events")

DEFAULT_MAX_CLIENTS = 10_000
CATCH_UP_BATCH = 500
# Event sockets share the engine's Redis pool with call control. A burst of
# clients connecting (or catching up) at once must not take every pooled
# connection, so their reads of history go through this many at a time.
HISTORY_READERS = 8
# How long closing one socket may take at shutdown before its transport is
# dropped: a client that stopped reading would otherwise hold the close
# handshake (aiohttp waits for its reply, and the send may wait for a drain).
CLOSE_TIMEOUT_S = 3.0
_SINCE = re.compile(r"[0-9]{1,19}")

Send = Callable[[dict[str, Any]], Awaitable[None]]


class EventSockets:
    """The open event WebSockets of one app, their shared stream reader, and the limit."""

    def __init__(
        self, stream: EventStream, *, max_clients: int = DEFAULT_MAX_CLIENTS, buffer: int = 1000
    ) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients: expected >= 1, got {max_clients}")
        self.stream = stream
        self.fanout = StreamFanout(stream, buffer=buffer)
        self.max_clients = max_clients
        self.closing = False
        self.sockets: set[web.WebSocketResponse] = set()
        self.reads = asyncio.Semaphore(HISTORY_READERS)
        self._slots = 0

    async def head_for(self, since: int | None) -> int:
        """The stream's head, or a bound good enough to decide whether ``since``
        is ahead of it, without a Redis round trip when the reader knows."""
        cursor = self.fanout.cursor
        if cursor is not None and (since is None or since <= cursor):
            return cursor
        async with self.reads:
            return await self.stream.last_seq()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of ``max_clients`` places for the life of a connection.

        Taken before any await, so a burst of concurrent upgrades cannot all
        pass the check before the first one counts.
        """
        if self.closing:
            raise ServiceUnavailable(
                "the engine is shutting down; reconnect to another instance or later",
                error_id="shutting-down",
            )
        if self._slots >= self.max_clients:
            raise ServiceUnavailable(
                f"too many event stream clients (at most {self.max_clients}); retry later",
                error_id="too-many-event-clients",
                details={"max_clients": self.max_clients},
            )
        self._slots += 1
        try:
            yield
        finally:
            self._slots -= 1

    async def close_all(self) -> None:
        """Refuse new sockets and close every open one with 1001 (app shutdown)."""
        self.closing = True
        await asyncio.gather(
            *(_close(ws, WSCloseCode.GOING_AWAY, "engine shutting down") for ws in self.sockets),
            return_exceptions=True,
        )


EVENT_SOCKETS = web.AppKey("event_sockets", EventSockets)


def setup_events(
    app: web.Application,
    stream: EventStream,
    *,
    max_clients: int = DEFAULT_MAX_CLIENTS,
    buffer: int = 1000,
) -> EventSockets:
    """Route ``/v1/events`` and tie the reader and the sockets to the app's life.

    ``buffer`` is each client's live buffer, in events."""
    sockets = EventSockets(stream, max_clients=max_clients, buffer=buffer)
    app[EVENT_SOCKETS] = sockets

    async def reader(_: web.Application) -> AsyncIterator[None]:
        await sockets.fanout.start()
        yield
        await sockets.fanout.stop()

    async def on_shutdown(_: web.Application) -> None:
        # aiohttp runs on_shutdown before it waits for running handlers; a
        # WebSocket handler never ends by itself, so without this the
        # runner's cleanup waits out its whole shutdown timeout.
        await sockets.close_all()

    app.cleanup_ctx.append(reader)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/v1/events", events)
    return sockets


def parse_since(request: web.Request) -> int | None:
    values = request.query.getall("since", [])
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest("give 'since' once", error_id="invalid-since")
    text = values[0]
    if not _SINCE.fullmatch(text) or int(text) > MAX_SEQ:
        raise InvalidRequest(
            f"'since' must be a sequence number from 0 to {MAX_SEQ}, got {text[:40]!r}",
            error_id="invalid-since",
            details={"parameter": "since", "expected": f"integer 0..{MAX_SEQ}"},
        )
    return int(text)


async def events(request: web.Request) -> web.WebSocketResponse:
    sockets = request.app[EVENT_SOCKETS]
    since = parse_since(request)
    with sockets.slot():
        try:
            head = await sockets.head_for(since)
        except StoreError as err:
            raise ServiceUnavailable(
                "the event history is unavailable; retry later",
                error_id="storage-unavailable",
                details={"retry_after_s": 1},
            ) from err
        # A browser that sent its token as the 'bearer.<token>' subprotocol also offered
        # this one: the server must select one it was offered (RFC 6455 4.2.2), and never
        # echoes the token back.
        ws = web.WebSocketResponse(heartbeat=20, protocols=(WS_PROTOCOL,))
        await ws.prepare(request)
        sockets.sockets.add(ws)
        try:
            if sockets.closing:
                # Shutdown began while we were upgrading: close_all() did not see us.
                await _close(ws, WSCloseCode.GOING_AWAY, "engine shutting down")
                return ws
            await _serve(ws, sockets, head if since is None else since, head)
        finally:
            sockets.sockets.discard(ws)
    return ws


async def _serve(ws: web.WebSocketResponse, sockets: EventSockets, since: int, head: int) -> None:
    sub = sockets.fanout.subscribe()
    stopped = False
    sender = asyncio.create_task(
        pump(ws.send_json, sockets.stream, sub, since, head, lambda: stopped, reads=sockets.reads)
    )
    receiver = asyncio.create_task(_drain_client(ws))
    code, reason = WSCloseCode.OK, ""
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done() and not sender.cancelled():
            err = sender.exception()
            if isinstance(err, StoreError):
                log.warning("event stream client closed: history unavailable", error=str(err))
                code, reason = WSCloseCode.TRY_AGAIN_LATER, "event history unavailable"
            elif err is not None and not isinstance(err, ConnectionError):
                log.error("event stream client failed", error=repr(err))
                code, reason = WSCloseCode.INTERNAL_ERROR, "internal error"
    finally:
        # The sender may sit in a Redis read, where redis-py can swallow a
        # cancel: the flag ends its loop after that read in any case.
        stopped = True
        sub.close()
        sender.cancel()
        receiver.cancel()
        await asyncio.wait({sender, receiver}, timeout=sockets.stream.command_timeout_s + 1)
        await _close(ws, code, reason)


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    with contextlib.suppress(TimeoutError, ConnectionError):
        # On timeout aiohttp drops the transport (abnormal closure).
        await asyncio.wait_for(ws.close(code=code, message=reason.encode()), CLOSE_TIMEOUT_S)


async def _drain_client(ws: web.WebSocketResponse) -> None:
    # We never expect client messages; reading detects the close frame (and
    # the close that close_all() starts from another task).
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


async def pump(
    send: Send,
    stream: EventStream,
    sub: Subscription,
    since: int,
    head: int,
    stopped: Callable[[], bool],
    *,
    reads: asyncio.Semaphore | None = None,
) -> None:
    """Send the client every event after ``since``, then live events, with a
    ``gap`` notice before any event that does not follow the last one sent.

    ``sub`` must be subscribed before this starts, so no event falls between
    history and live: history is read from the stream until it runs dry, then
    the live buffer takes over, skipping what history already delivered. A
    hole in the live buffer (this client was too slow and its buffer
    overflowed) is refilled from history the same way.
    """
    last = since
    if since > head:
        await send(_gap(since, head + 1, "ahead-of-stream", head=head))
        last = head

    async def catch_up(last: int) -> int:
        while not stopped():
            async with reads or contextlib.nullcontext():
                batch = await stream.read_after(last, count=CATCH_UP_BATCH)
            if not batch:
                break
            for seq, event in batch:
                last = await deliver(last, seq, event)
        return last

    async def deliver(last: int, seq: int, event: dict[str, Any]) -> int:
        if seq != last + 1:
            await send(_gap(last, seq, "not-retained"))
        await send({"seq": seq, "event": event})
        return seq

    if sub.start is None or last < sub.start:
        # Otherwise everything after ``last`` is coming through the buffer.
        last = await catch_up(last)
    while not stopped():
        item = await sub.get()
        if item is None:
            return
        if isinstance(item, Overflowed):
            last = await catch_up(last)
            continue
        if isinstance(item, StreamReset):
            if item.head < last:
                await send(_gap(last, item.head + 1, "ahead-of-stream", head=item.head))
                last = item.head
            continue
        seq, event = item
        if seq <= last:
            continue  # already delivered from history
        if seq != last + 1:
            # Dropped from our buffer, or trimmed from the stream: history has
            # whatever is still retained.
            last = await catch_up(last)
            if seq <= last:
                continue
        last = await deliver(last, seq, event)


def _gap(since: int, oldest: int, reason: str, **extra: int) -> dict[str, Any]:
    return {"gap": {"since": since, "oldest": oldest, "reason": reason, **extra}}
