"""Bearer tokens: who may call the API, and which paths need no token."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web

from engine.api.errors import Handler, json_error

# Paths reachable without a token: liveness and readiness probes must work
# before a monitoring system is given credentials (per-switch detail of the
# readiness report still needs one, see engine.api.health), and the API
# reference with its OpenAPI document holds nothing secret.
PUBLIC_PATHS = frozenset(
    {"/v1/health", "/v1/health/live", "/v1/health/ready", "/v1/docs", "/v1/openapi.json"}
)
PUBLIC_PREFIXES = ("/v1/docs/",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Tokens:
    """The accepted bearer tokens, compared in constant time."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._accepted = [t.encode() for t in tokens]

    def valid(self, candidate: str) -> bool:
        try:
            raw = candidate.encode()
        except UnicodeEncodeError:
            # aiohttp decodes header bytes that are not UTF-8 with
            # surrogateescape; such a header cannot be one of our tokens.
            return False
        # Constant-time compare against every token so timing does not reveal
        # which prefix matched.
        return any(hmac.compare_digest(raw, t) for t in self._accepted)

    def bearer(self, request: web.Request) -> str | None:
        """The token the request carries, or None (not checked)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            return token
        # Browsers cannot set headers on a WebSocket handshake; accept
        # ?token= there only.
        if request.path == "/v1/events" and request.query.get("token"):
            return request.query["token"]
        return None

    def authenticated(self, request: web.Request) -> bool:
        token = self.bearer(request)
        return token is not None and self.valid(token)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request.path):
            return await handler(request)
        token = self.bearer(request)
        if token is None:
            response = json_error(
                401,
                "missing-token",
                "send 'Authorization: Bearer <token>' (tokens are in engine.toml [api])",
            )
        elif not self.valid(token):
            response = json_error(401, "invalid-token", "the bearer token is not accepted")
        else:
            return await handler(request)
        response.headers["WWW-Authenticate"] = 'Bearer realm="telephony-engine"'
        return response
