"""Tokens, the audit trail and WebSocket tickets (docs/security.md).

``POST/GET /v1/tokens``, ``DELETE /v1/tokens/{token_id}`` (admin), ``GET /v1/audit``
(auditor, admin), ``POST /v1/events/ticket``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.acd.http import ACD
from engine.api.keys import AUTH
from engine.auth.audit import IDENTITY
from engine.auth.roles import Role
from engine.auth.tokens import TokenRepository
from engine.calls.schemas import JsonInt
from engine.core.errors import InvalidRequest, NotFound, ServiceUnavailable
from engine.store.pg.audit import AuditLog
from engine.web.validation import parse_body

TOKENS = web.AppKey("tokens", TokenRepository)
AUDIT_LOG = web.AppKey("audit_log", AuditLog)

LABEL = r"^[^\x00-\x1f\x7f]{1,100}$"
AGENT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
TOKEN_ID = re.compile(r"^tok_[0-9a-f]{16}$")
ACTOR = re.compile(r"^[\x21-\x7e]{1,100}$")
ACTION = re.compile(r"^[\x20-\x7e]{1,200}$")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    label: Annotated[str, Field(pattern=LABEL)]
    role: Literal["admin", "supervisor", "agent", "integration", "auditor"]
    agent_id: Annotated[str, Field(pattern=AGENT_ID)] | None = None
    # Lifetime in seconds from now (1 minute to 10 years); absent: no expiry.
    expires_in_s: JsonInt | None = Field(default=None, ge=60, le=315_360_000)
    rate_per_s: float | None = Field(default=None, gt=0, le=100_000)
    rate_burst: JsonInt | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _agent(self) -> TokenCreate:
        if (self.role == "agent") != (self.agent_id is not None):
            raise ValueError("agent_id: required for role 'agent', and only for it")
        return self


async def create_token(request: web.Request) -> web.Response:
    body = await parse_body(request, TokenCreate)
    acd = request.app.get(ACD)
    if body.agent_id is not None and (acd is None or body.agent_id not in acd.agent_ids()):
        raise InvalidRequest(
            f"agent_id: no agent {body.agent_id!r} is configured",
            error_id="unknown-agent",
            details={"agent_id": body.agent_id},
        )
    identity = request[IDENTITY]
    expires = (
        datetime.now(UTC) + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    )
    row, token = await request.app[TOKENS].create(
        label=body.label,
        role=Role(body.role),
        agent_id=body.agent_id,
        expires_at=expires,
        rate_per_s=body.rate_per_s,
        rate_burst=body.rate_burst,
        created_by=identity.actor,
    )
    return web.json_response(
        {**row.to_json(), "token": token},
        status=201,
        headers={"Location": f"/v1/tokens/{row.token_id}", "Cache-Control": "no-store"},
    )


async def list_tokens(request: web.Request) -> web.Response:
    values = request.query.getall("include_revoked", [])
    if len(values) > 1 or (values and values[0] not in ("true", "false")):
        raise InvalidRequest(
            "include_revoked: expected true or false, once", error_id="invalid-parameter"
        )
    rows = await request.app[TOKENS].all(include_revoked=values == ["true"])
    return web.json_response({"tokens": [r.to_json() for r in rows]})


async def revoke_token(request: web.Request) -> web.Response:
    token_id = request.match_info["token_id"]
    if not TOKEN_ID.fullmatch(token_id):
        raise NotFound(f"no token {token_id[:40]!r}", error_id="token-not-found")
    found = await request.app[TOKENS].revoke(token_id)
    if found is None:
        raise NotFound(f"no token {token_id!r}", error_id="token-not-found")
    row, hashed = found
    # This engine forgets it at once; the others within [api] token_cache_ttl_s.
    request.app[AUTH].authority.forget(hashed)
    return web.json_response(row.to_json())


def _int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    values = request.query.getall(name, [])
    if not values:
        return None
    text = values[0]
    if len(values) > 1 or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise InvalidRequest(
            f"{name}: expected an integer {low}..{high}, once", error_id="invalid-parameter"
        )
    value = int(text)
    if not low <= value <= high:
        raise InvalidRequest(
            f"{name}: expected an integer {low}..{high}", error_id="invalid-parameter"
        )
    return value


def _text_param(request: web.Request, name: str, pattern: re.Pattern[str]) -> str | None:
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1 or not pattern.fullmatch(values[0]):
        raise InvalidRequest(
            f"{name}: expected {pattern.pattern}, once", error_id="invalid-parameter"
        )
    return values[0]


async def list_audit(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 1, 1000) or 100
    before = _int_param(request, "before_id", 1, 2**63 - 1)
    actor = _text_param(request, "actor", ACTOR)
    action = _text_param(request, "action", ACTION)
    entries = await request.app[AUDIT_LOG].recent(limit, before, actor=actor, action=action)
    body: dict[str, Any] = {"entries": [e.to_json() for e in entries]}
    body["next_before_id"] = entries[-1].id if len(entries) == limit else None
    return web.json_response(body)


async def events_ticket(request: web.Request) -> web.Response:
    tickets = request.app[AUTH].tickets
    if tickets is None:
        raise ServiceUnavailable("tickets need Redis, which this app was built without")
    ticket = await tickets.issue(request[IDENTITY])
    return web.json_response(
        {"ticket": ticket, "expires_in_s": tickets.ttl_s},
        status=201,
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events/ticket", events_ticket)
    if TOKENS in app:
        app.router.add_post("/v1/tokens", create_token)
        app.router.add_get("/v1/tokens", list_tokens)
        app.router.add_delete("/v1/tokens/{token_id}", revoke_token)
    if AUDIT_LOG in app:
        app.router.add_get("/v1/audit", list_audit)
