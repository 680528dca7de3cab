"""Graceful drain, API half: while the engine drains, new originates get
``503 draining`` (with ``Retry-After``) and every other route still works, so
live calls can be watched, hung up and redirected until they end."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from engine.api.errors import Handler, json_error

# Long enough for a load balancer to notice /v1/health/ready and send the
# retry to another instance.
DRAIN_RETRY_AFTER_S = 5


def refuses_while_draining(request: web.Request) -> bool:
    """The requests that start new work: POST /v1/calls."""
    return request.method == "POST" and request.path == "/v1/calls"


def drain_middleware(draining: Callable[[], bool]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if refuses_while_draining(request) and draining():
            return json_error(
                503,
                "draining",
                "the engine is shutting down and takes no new calls; retry on another instance",
                retry_after_s=DRAIN_RETRY_AFTER_S,
            )
        return await handler(request)

    return middleware
