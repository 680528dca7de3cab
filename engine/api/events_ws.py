"""``GET /v1/events``: the WebSocket stream of normalized events.

Every message is ``{"seq": N, "event": {...}}`` with ``N`` strictly increasing.
A client that reconnects passes ``?since=<last seq it saw>`` and receives
everything after it, from the Redis Stream. If the history was trimmed past
that point the first message is ``{"gap": {"since": ..., "oldest": ...}}`` so
the client knows it must re-read state (``GET /v1/calls``) instead of trusting
a silent hole.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from engine.api.keys import STREAM
from engine.core.errors import InvalidRequest

POLL_BLOCK_MS = 1000


async def events(request: web.Request) -> web.WebSocketResponse:
    stream = request.app[STREAM]
    since_text = request.query.get("since")
    if since_text is None:
        since = await stream.last_seq()
    elif since_text.isdigit():
        since = int(since_text)
    else:
        raise InvalidRequest(
            "'since' must be a non-negative integer sequence number", error_id="invalid-since"
        )
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    oldest = await stream.oldest_seq()
    if oldest is not None and since + 1 < oldest:
        await ws.send_json({"gap": {"since": since, "oldest": oldest}})

    async def drain_client() -> None:
        # We never expect client messages; reading detects the close frame.
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    reader = asyncio.create_task(drain_client())
    try:
        last = since
        while not ws.closed and not reader.done():
            batch = await stream.read_after(last, count=200, block_ms=POLL_BLOCK_MS)
            for seq, event in batch:
                await ws.send_json({"seq": seq, "event": event})
                last = seq
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await ws.close()
    return ws
