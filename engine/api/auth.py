"""Authentication, authorization, rate limits and the audit row of every API request.

Who a request is: ``Authorization: Bearer <token>``; on the WebSocket also the subprotocol
``bearer.<token>`` (offered next to ``telephony-engine.v1``) or a single-use ``?ticket=``
from ``POST /v1/events/ticket``. A token in the URL (``?token=``) is refused.

What it may do: ``engine.auth.matrix`` (route x role). The agent role's ``own`` routes are
checked against the path: its own agent id here, before any forwarding (the id is in the
path); a call the ACD says is its agent's in :func:`own_call_middleware`, which runs after
forwarding, on the engine that owns the call (only that engine's ACD knows the calls it
offered: the entry engine's check refused what the owner accepts).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from aiohttp import web

from engine.acd.http import ACD
from engine.api.errors import Handler, json_error
from engine.api.forward import FORWARDED_HEADER, FORWARDED_TO, HOP_HEADER
from engine.auth.audit import AUDIT, IDENTITY, source_ip
from engine.auth.hop import HopSeal
from engine.auth.matrix import Rule, Scope, rule_for
from engine.auth.ratelimit import RateLimiter
from engine.auth.roles import Identity, Role
from engine.auth.subprotocol import WS_BEARER
from engine.auth.tickets import Tickets
from engine.auth.tokens import TokenAuthority
from engine.store.errors import StoreError
from engine.telemetry.logging import get_logger

log = get_logger("engine.api.auth")

EVENTS_PATH = "/v1/events"
REALM = 'Bearer realm="telephony-engine"'
# An agent token's request on a call: whose call it is is decided where the call is served.
OWN_CALL = web.RequestKey("own_call", str)


@dataclass
class Auth:
    """The API's access control: tokens, WebSocket tickets, rate limits.

    ``hops``: checks the seal of a request another engine forwarded here; such a request
    was counted against its token's rate limit where it entered and is not counted again
    (a request with a missing, forged or replayed seal is counted as any other)."""

    authority: TokenAuthority
    tickets: Tickets | None = None
    limiter: RateLimiter = field(default_factory=RateLimiter)
    hops: HopSeal | None = None

    @classmethod
    def bootstrap_only(cls, tokens: list[str]) -> Auth:
        return cls(TokenAuthority(tokens, None))

    # ------------------------------------------------------------ who

    def presented(self, request: web.Request) -> tuple[str, str] | None:
        """(kind, credential) the request carries: ``bearer`` or ``ticket``; None if none."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            return "bearer", token
        if request.path == EVENTS_PATH:
            # Browsers cannot set headers on a WebSocket handshake: the token rides in the
            # subprotocol list instead (RFC 6455 4.1: comma-separated tokens).
            offered = request.headers.get("Sec-WebSocket-Protocol", "")
            for proto in (p.strip() for p in offered.split(",")):
                if proto.startswith(WS_BEARER) and len(proto) > len(WS_BEARER):
                    return "bearer", proto[len(WS_BEARER) :]
            ticket = request.query.get("ticket")
            if ticket:
                return "ticket", ticket
        return None

    async def identify(self, request: web.Request) -> Identity | None:
        found = self.presented(request)
        if found is None:
            return None
        kind, credential = found
        if kind == "ticket":
            return await self.tickets.redeem(credential) if self.tickets else None
        return await self.authority.identify(credential)

    def counted_elsewhere(self, request: web.Request) -> bool:
        """A request forwarded by another engine of this deployment, with a good seal."""
        sender = request.headers.get(FORWARDED_HEADER)
        seal = request.headers.get(HOP_HEADER)
        if self.hops is None or sender is None or seal is None:
            return False
        return self.hops.check(
            sender,
            seal,
            request.method,
            request.rel_url.raw_path_qs,
            request.headers.get("Authorization", ""),
        )

    async def optional_identity(self, request: web.Request) -> Identity | None:
        """For public routes: who the caller is if it says so, never an error."""
        try:
            return await self.identify(request)
        except (StoreError, TimeoutError):
            return None

    # ------------------------------------------------------------ middleware

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        template = _template(request)
        rule = rule_for(request.method, template) if template else None
        if rule is not None and rule.public:
            identity = await self.optional_identity(request)
            if identity is not None:
                request[IDENTITY] = identity
            return await handler(request)
        if request.path == EVENTS_PATH and "token" in request.query:
            return _unauthorized(
                "token-in-url-refused",
                "tokens are not accepted in the URL; send an 'Authorization: Bearer <token>' "
                "header (a browser: the 'bearer.<token>' WebSocket subprotocol, or a ticket "
                "from POST /v1/events/ticket)",
            )
        identity = await self.identify(request)
        if identity is None:
            if self.presented(request) is None:
                return _unauthorized(
                    "missing-token",
                    "send 'Authorization: Bearer <token>' (docs/security.md: API tokens)",
                )
            return _unauthorized(
                "invalid-token", "the token is not accepted (unknown, revoked or expired)"
            )
        request[IDENTITY] = identity
        wait = (
            0.0
            if self.counted_elsewhere(request)
            else self.limiter.take(
                identity.token_id, identity.rate_per_s, identity.rate_burst, time.monotonic()
            )
        )
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            response = json_error(
                429,
                "rate-limited",
                f"this token is limited to {identity.rate_per_s:g} requests/s; retry later",
                {"retry_after_s": seconds, "rate_per_s": identity.rate_per_s},
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        if template is None:
            # Not routed (404, 405): answered by aiohttp, nothing to authorize.
            return await handler(request)
        refusal = _refusal(request, rule, identity)
        if refusal is not None:
            return refusal
        return await handler(request)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One audit row per mutating request (and per audited read), with its result. Outermost,
    so it sees the final status of every answer, refusals included; requests without an
    identity (401) are not written (they have no "who")."""
    rule = rule_for(request.method, t) if (t := _template(request)) else None
    audited = request.method in ("POST", "PUT", "PATCH", "DELETE") or bool(rule and rule.audited)
    if not audited:
        return await handler(request)
    result = "cancelled"
    try:
        response = await handler(request)
        result = str(response.status)
        return response
    except web.HTTPException as err:
        result = str(err.status)
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        result = "500"
        raise
    finally:
        identity = request.get(IDENTITY)
        trail = request.app.get(AUDIT)
        if identity is not None and trail is not None:
            try:
                trail.record(
                    actor=identity.actor,
                    role=identity.role.value,
                    action=f"{request.method} {rule.path if rule else request.path}",
                    target=_target(request),
                    source_ip=source_ip(request),
                    result=result,
                    details={"label": identity.label, **_forwarded(request)},
                )
            except Exception:
                # The journal refused the row (disk full): the answer stands, the log says so.
                log.exception("audit row not accepted", path=request.path, result=result)


def _forwarded(request: web.Request) -> dict[str, str]:
    # A request served by another engine (engine/api/forward.py) has a row there too.
    owner = request.get(FORWARDED_TO)
    return {"forwarded_to": owner} if owner is not None else {}


def _template(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def _target(request: web.Request) -> str:
    params = request.match_info
    if not params:
        return request.path
    return ",".join(f"{k}={v}" for k, v in sorted(params.items()))


def _refusal(request: web.Request, rule: Rule | None, identity: Identity) -> web.Response | None:
    if rule is None:
        # A route missing from the table: admin only until it is added.
        if identity.role is Role.ADMIN:
            return None
        return _forbidden(request, identity, [Role.ADMIN.value])
    scope = rule.scope(identity.role)
    if scope is None:
        return _forbidden(request, identity, sorted(r.value for r in rule.roles))
    if scope is not Scope.OWN:
        return None
    params = request.match_info
    if identity.agent_id is not None and "agent_id" not in params and "call_id" in params:
        # Decided after forwarding, where the call is served (own_call_middleware).
        request[OWN_CALL] = params["call_id"]
        return None
    if identity.agent_id is not None and params.get("agent_id") == identity.agent_id:
        return None
    return _not_own(request, identity)


@web.middleware
async def own_call_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An agent token acts on a call only if the ACD says the call is its agent's. After the
    forwarding middleware: a request for a call another engine owns is checked there, by
    the ACD that offered the call, not by this engine's, which may never have seen it."""
    call_id = request.get(OWN_CALL)
    if call_id is None:
        return await handler(request)
    identity = request[IDENTITY]
    acd = request.app.get(ACD)
    if acd is None or acd.agent_of_call(call_id) != identity.agent_id:
        return _not_own(request, identity)
    return await handler(request)


def _not_own(request: web.Request, identity: Identity) -> web.Response:
    return json_error(
        403,
        "not-own-resource",
        f"an agent token acts only on agent {identity.agent_id!r} and its calls",
        {"agent_id": identity.agent_id, "path": request.path},
    )


def _forbidden(request: web.Request, identity: Identity, roles: list[str]) -> web.Response:
    return json_error(
        403,
        "forbidden",
        f"role {identity.role.value!r} may not {request.method} {request.path}",
        {"role": identity.role.value, "allowed_roles": roles},
    )


def _unauthorized(error_id: str, message: str) -> web.Response:
    response = json_error(401, error_id, message)
    response.headers["WWW-Authenticate"] = REALM
    return response
