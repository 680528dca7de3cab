"""The one place errors become HTTP responses.

Domain errors (:class:`EngineError`) carry their own status and ``error_id``.
Storage failures become ``503 storage-unavailable`` with ``Retry-After``:
the store layer translates asyncpg and redis exceptions into
:class:`StoreError`, and anything it missed (a raw asyncpg/redis exception, a
timeout, a refused connection) is mapped here too, so no storage exception
ever reaches a client as a 500.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import asyncpg
import redis.exceptions
from aiohttp import web

from engine.core.errors import EngineError
from engine.core.ids import new_error_ref
from engine.store.errors import StoreError, StoreUnavailable
from engine.store.pg.errors import translate as pg_translate
from engine.store.redis.errors import translate as redis_translate
from engine.telemetry.logging import get_logger

log = get_logger("engine.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Seconds a client should wait before retrying a 503 that has no better hint
# (storage outage, switch link down). Short: both usually recover in seconds.
DEFAULT_RETRY_AFTER_S = 2

_HTTP_ERROR_IDS = {
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
}


def error_body(
    error_id: str, message: str, details: dict[str, object] | None = None
) -> dict[str, object]:
    return {"error_id": error_id, "message": message, "details": details or {}}


def json_error(
    status: int,
    error_id: str,
    message: str,
    details: dict[str, object] | None = None,
    *,
    retry_after_s: float | None = None,
) -> web.Response:
    response = web.json_response(error_body(error_id, message, details), status=status)
    if status == 503:
        # RFC 9110 10.2.3: whole seconds.
        hint = DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
        response.headers["Retry-After"] = str(max(1, math.ceil(hint)))
    return response


def storage_failure(err: BaseException) -> StoreError | None:
    """``err`` as a store error if it is a storage failure, else None."""
    if isinstance(err, StoreError):
        return err
    doing = "answering an API request"
    if isinstance(err, redis.exceptions.RedisError):
        return redis_translate(err, doing)
    if isinstance(err, asyncpg.PostgresError | asyncpg.InterfaceError):
        return pg_translate(err, doing)
    # Pool acquire timeouts and refused connections surface as these when a
    # store call did not translate them; nothing else in a request handler
    # waits on a socket.
    if isinstance(err, TimeoutError | ConnectionError):
        return StoreUnavailable(f"storage did not answer: {err!r}")
    return None


def _http_error(request: web.Request, err: web.HTTPException) -> web.Response:
    error_id = _HTTP_ERROR_IDS.get(err.status, "http-error")
    # aiohttp's own text says what was wrong (e.g. a plain GET on the
    # WebSocket route: "No WebSocket UPGRADE hdr"), unless it is the default.
    text = (err.text or "").strip()
    message = text if text and text != f"{err.status}: {err.reason}" else err.reason
    if err.status == 413:
        message = f"request body is larger than {request.client_max_size} bytes"
    response = json_error(err.status, error_id, message, {"path": request.path})
    if err.status == 405:
        # RFC 9110 15.5.6: a 405 MUST list the methods the resource supports.
        allowed = sorted(getattr(err, "allowed_methods", ()))
        response.headers["Allow"] = ", ".join(allowed)
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EngineError as err:
        return json_error(
            err.status,
            err.error_id,
            err.message,
            err.details,
            retry_after_s=getattr(err, "retry_after_s", None),
        )
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return _http_error(request, err)
    except Exception as err:
        ref = new_error_ref()
        if (store_err := storage_failure(err)) is not None:
            log.warning(
                "storage failure answering an API request",
                path=request.path,
                ref=ref,
                error=str(store_err),
                unavailable=isinstance(store_err, StoreUnavailable),
            )
            return json_error(
                503,
                "storage-unavailable",
                "storage (PostgreSQL or Redis) is unavailable; retry later",
                {"ref": ref},
            )
        log.exception("unhandled API error", path=request.path, ref=ref)
        return json_error(500, "internal-error", "internal error; see the engine log", {"ref": ref})
