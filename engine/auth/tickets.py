"""WebSocket tickets: ``POST /v1/events/ticket`` gives a short-lived, single-use ticket that
opens ``/v1/events?ticket=...`` for the identity that asked for it.

Why: a browser cannot set headers on a WebSocket handshake, and a long-lived token in a URL
ends up in proxy logs and browser history. A ticket in a URL is worth little: it dies on first
use or after ``ttl_s`` seconds. Tickets live in Redis (only their SHA-256 is the key), so one
engine can issue a ticket and another accept it behind a load balancer.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import redis.asyncio as aioredis

from engine.auth.roles import Identity, Role
from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate

# GET and DEL in one step: a ticket opens one socket, even when two engines race for it.
_TAKE = """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('DEL', KEYS[1])
end
return value
"""


class Tickets:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, ttl_s: int = 30) -> None:
        self._r = redis
        self._prefix = check_prefix(prefix)
        self.ttl_s = ttl_s
        self._take = redis.register_script(_TAKE)

    def _key(self, ticket: str) -> str:
        return f"{self._prefix}ws-ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"

    async def issue(self, identity: Identity) -> str:
        ticket = "wst_" + secrets.token_urlsafe(24)
        value = json.dumps({**identity.to_json(), "expires_at": identity.expires_at})
        try:
            await self._r.set(self._key(ticket), value, ex=self.ttl_s)
        except REDIS_ERRORS as err:
            raise translate(err, "issuing a WebSocket ticket") from err
        return ticket

    async def redeem(self, ticket: str) -> Identity | None:
        if not ticket.startswith("wst_") or len(ticket) > 64:
            return None
        try:
            raw = await self._take(keys=[self._key(ticket)])
        except REDIS_ERRORS as err:
            raise translate(err, "redeeming a WebSocket ticket") from err
        if raw is None:
            return None
        data = json.loads(raw)
        return Identity(
            str(data["token_id"]),
            str(data["label"]),
            Role(data["role"]),
            data.get("agent_id"),
            expires_at=data.get("expires_at"),
        )
