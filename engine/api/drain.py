"""Graceful drain, API half: while the engine drains, new originates get
``503 draining`` (with ``Retry-After``, from ``EngineDraining.retry_after_s``)
and every other route still works, so live calls can be watched, hung up and
redirected until they end."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from engine.api.errors import Handler
from engine.calls.errors import EngineDraining


def refuses_while_draining(request: web.Request) -> bool:
    """The requests that start new work: POST /v1/calls."""
    return request.method == "POST" and request.path == "/v1/calls"


def drain_middleware(draining: Callable[[], bool]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Checked before the body is read: the call service refuses too
        # (EngineDraining), but a draining engine need not parse the request.
        if refuses_while_draining(request) and draining():
            raise EngineDraining(
                "the engine is shutting down and takes no new calls; retry on another instance",
                details={"retry_after_s": EngineDraining.retry_after_s},
            )
        return await handler(request)

    return middleware
