"""Auth and error middlewares: the only place errors become HTTP responses."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from engine.core.errors import EngineError
from engine.core.ids import new_error_ref
from engine.telemetry.logging import get_logger

log = get_logger("engine.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths reachable without a token: liveness probes must work before a
# monitoring system is given credentials, and the human-readable API reference
# holds nothing secret.
PUBLIC_PATHS = frozenset({"/v1/health", "/v1/docs"})


def error_body(
    error_id: str, message: str, details: dict[str, object] | None = None
) -> dict[str, object]:
    return {"error_id": error_id, "message": message, "details": details or {}}


def json_error(
    status: int, error_id: str, message: str, details: dict[str, object] | None = None
) -> web.Response:
    return web.json_response(error_body(error_id, message, details), status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EngineError as err:
        return json_error(err.status, err.error_id, err.message, err.details)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        error_id = {404: "not-found", 405: "method-not-allowed"}.get(err.status, "http-error")
        return json_error(err.status, error_id, err.reason, {"path": request.path})
    except Exception:
        ref = new_error_ref()
        log.exception("unhandled API error", path=request.path, ref=ref)
        return json_error(500, "internal-error", "internal error; see the engine log", {"ref": ref})


def auth_middleware(tokens: Iterable[str]) -> Middleware:
    accepted = [t.encode() for t in tokens]

    def valid(candidate: str) -> bool:
        raw = candidate.encode()
        # Constant-time compare against every token so timing does not reveal
        # which prefix matched.
        return any(hmac.compare_digest(raw, t) for t in accepted)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            # Browsers cannot set headers on a WebSocket handshake; accept
            # ?token= there only.
            if request.path == "/v1/events" and request.query.get("token"):
                token = request.query["token"]
            else:
                return json_error(
                    401,
                    "missing-token",
                    "send 'Authorization: Bearer <token>' (tokens are in engine.toml [api])",
                )
        if not valid(token):
            return json_error(401, "invalid-token", "the bearer token is not accepted")
        return await handler(request)

    return middleware
