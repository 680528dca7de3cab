"""Every JSON answer of the API ends with a newline, so ``curl`` output does not run into the
shell prompt. One middleware, so no handler changes: it appends ``\\n`` to a complete JSON body
(``application/json`` or ``application/problem+json``: ``web.json_response``, the calls API's
orjson bodies, the error bodies, a body forwarded from another engine) that lacks one. JSON
parsers skip trailing whitespace (RFC 8259 section 2), so no client reads a different value.

Left as they are: a body that already ends with a newline (an owner's answer relayed by
engine/api/forward.py gets no second one), a streamed answer (``StreamResponse``, the
WebSocket), a non-JSON body (metrics, CSV, HTML, zip), and an answer whose handler set its own
``Content-Length`` (aiohttp otherwise counts the body when it sends it).
"""

from __future__ import annotations

from aiohttp import hdrs, web

from engine.api.errors import Handler

JSON_TYPES = frozenset({"application/json", "application/problem+json"})


@web.middleware
async def json_newline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (
        isinstance(response, web.Response)
        and not response.prepared
        and response.content_type in JSON_TYPES
        and hdrs.CONTENT_LENGTH not in response.headers
    ):
        body = response.body
        if isinstance(body, bytes | bytearray) and body and not body.endswith(b"\n"):
            response.body = bytes(body) + b"\n"
    return response
