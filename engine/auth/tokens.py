"""API tokens: bootstrap tokens from engine.toml, and tokens created through the API.

A created token is ``te_`` + 43 url-safe characters (256 random bits), shown once. Only its
SHA-256 is stored (``api_tokens.hash``). Why SHA-256 and not bcrypt/argon2: those slow hashes
protect *low-entropy* secrets (passwords) against guessing; nobody can guess 256 random bits
however fast the hash is, and a salted slow hash could not be looked up by value: every
request would cost a bcrypt run (~100 ms of CPU) or a scan. A leaked table of SHA-256 hashes
of random tokens gives nothing usable.

Lookups are cached per engine for ``ttl_s`` (``[api] token_cache_ttl_s``): a token revoked or
expired elsewhere stops working here within that time; the engine that revoked it forgets it
at once. While PostgreSQL cannot be reached, an entry older than the TTL is still used for up
to ``STALE_GRACE_S`` (an outage of the database does not lock every integration out of call
control); a token never seen before is then answered 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engine.auth.roles import Identity, Role
from engine.store.errors import StoreError, StoreUnavailable
from engine.store.pg.errors import pool_call

PREFIX = "te_"
STALE_GRACE_S = 60.0
MAX_CACHED = 10_000


def new_token() -> tuple[str, str, bytes]:
    """(token_id, token, sha256 of the token)."""
    token = PREFIX + secrets.token_urlsafe(32)
    return f"tok_{secrets.token_hex(8)}", token, digest(token)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class TokenRow:
    token_id: str
    label: str
    role: Role
    agent_id: str | None
    rate_per_s: float | None
    rate_burst: int | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "label": self.label,
            "role": self.role.value,
            "agent_id": self.agent_id,
            "rate_per_s": self.rate_per_s,
            "rate_burst": self.rate_burst,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


_COLUMNS = (
    "token_id, label, role, agent_id, rate_per_s, rate_burst, created_at, created_by, "
    "expires_at, revoked_at"
)


def _row(r: Any) -> TokenRow:
    return TokenRow(
        r["token_id"],
        r["label"],
        Role(r["role"]),
        r["agent_id"],
        r["rate_per_s"],
        r["rate_burst"],
        r["created_at"],
        r["created_by"],
        r["expires_at"],
        r["revoked_at"],
    )


class TokenRepository:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 5.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def _run(self, doing: str, method: str, sql: str, *args: Any) -> Any:
        return await pool_call(self._pool, self._timeout_s, doing, method, sql, *args)

    async def create(
        self,
        *,
        label: str,
        role: Role,
        agent_id: str | None,
        expires_at: datetime | None,
        rate_per_s: float | None,
        rate_burst: int | None,
        created_by: str,
    ) -> tuple[TokenRow, str]:
        token_id, token, hashed = new_token()
        r = await self._run(
            "creating an API token",
            "fetchrow",
            f"INSERT INTO api_tokens (token_id, hash, label, role, agent_id, rate_per_s, "
            f"rate_burst, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            f"RETURNING {_COLUMNS}",
            token_id,
            hashed,
            label,
            role.value,
            agent_id,
            rate_per_s,
            rate_burst,
            created_by,
            expires_at,
        )
        return _row(r), token

    async def all(self, *, include_revoked: bool = False) -> list[TokenRow]:
        rows = await self._run(
            "listing API tokens",
            "fetch",
            f"SELECT {_COLUMNS} FROM api_tokens WHERE $1 OR revoked_at IS NULL "
            "ORDER BY created_at, token_id",
            include_revoked,
        )
        return [_row(r) for r in rows]

    async def revoke(self, token_id: str) -> tuple[TokenRow, bytes] | None:
        """Revoke (idempotent): the row and its hash; None when no such token."""
        r = await self._run(
            "revoking an API token",
            "fetchrow",
            f"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) "
            f"WHERE token_id = $1 RETURNING {_COLUMNS}, hash",
            token_id,
        )
        return (_row(r), bytes(r["hash"])) if r is not None else None

    async def by_hash(self, hashed: bytes) -> TokenRow | None:
        r = await self._run(
            "checking an API token",
            "fetchrow",
            f"SELECT {_COLUMNS} FROM api_tokens WHERE hash = $1",
            hashed,
        )
        return _row(r) if r is not None else None


@dataclass(slots=True)
class _Cached:
    identity: Identity | None  # None: no such token, or revoked
    fetched: float  # monotonic


class TokenAuthority:
    """Turns a presented token into an :class:`Identity`, or None when it is not valid."""

    def __init__(
        self,
        bootstrap: Iterable[str],
        repo: TokenRepository | None,
        *,
        ttl_s: float = 5.0,
        default_rate: tuple[float, int] = (50.0, 100),
        bootstrap_rate_per_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._bootstrap = [
            (t.encode("utf-8", "surrogateescape"), f"bootstrap-{i + 1}")
            for i, t in enumerate(bootstrap)
        ]
        self._bootstrap_rate = bootstrap_rate_per_s
        self._repo = repo
        self._ttl_s = ttl_s
        self._default_rate = default_rate
        self._monotonic = monotonic
        self._wall = wall
        self._cache: dict[bytes, _Cached] = {}
        self._inflight: dict[bytes, asyncio.Future[Identity | None]] = {}

    @property
    def repo(self) -> TokenRepository | None:
        return self._repo

    def bootstrap(self, token: str) -> Identity | None:
        try:
            raw = token.encode()
        except UnicodeEncodeError:
            # aiohttp decodes header bytes that are not UTF-8 with surrogateescape; such a
            # header cannot be one of our tokens.
            return None
        # Constant-time compare against every token so timing does not reveal a prefix.
        found = None
        for accepted, token_id in self._bootstrap:
            if hmac.compare_digest(raw, accepted):
                found = token_id
        if found is None:
            return None
        burst = max(1, int(self._bootstrap_rate * 2))
        return Identity(found, "engine.toml", Role.ADMIN, None, self._bootstrap_rate, burst)

    async def identify(self, token: str) -> Identity | None:
        """The token's identity; None when unknown, revoked or expired. Raises StoreError
        when the answer needs PostgreSQL and PostgreSQL does not give it."""
        identity = self.bootstrap(token)
        if identity is not None:
            return identity
        if self._repo is None or not token.startswith(PREFIX) or len(token) > 100:
            return None
        hashed = digest(token)
        identity = await self._lookup(hashed)
        expires = identity.expires_at if identity is not None else None
        if expires is not None and self._wall() >= expires:
            return None
        return identity

    def forget(self, hashed: bytes) -> None:
        self._cache.pop(hashed, None)

    async def _lookup(self, hashed: bytes) -> Identity | None:
        now = self._monotonic()
        cached = self._cache.get(hashed)
        if cached is not None and now - cached.fetched < self._ttl_s:
            return cached.identity
        pending = self._inflight.get(hashed)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Identity | None] = asyncio.get_running_loop().create_future()
        self._inflight[hashed] = future
        try:
            try:
                identity = await self._fetch(hashed)
            except StoreError:
                if cached is not None and now - cached.fetched < self._ttl_s + STALE_GRACE_S:
                    identity = cached.identity
                else:
                    raise
            else:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[hashed] = _Cached(identity, now)
            future.set_result(identity)
            return identity
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: waiters get it through shield
            raise
        finally:
            self._inflight.pop(hashed, None)

    async def _fetch(self, hashed: bytes) -> Identity | None:
        assert self._repo is not None
        row = await self._repo.by_hash(hashed)
        if row is None or row.revoked_at is not None:
            return None
        rate = row.rate_per_s if row.rate_per_s is not None else self._default_rate[0]
        burst = row.rate_burst if row.rate_burst is not None else self._default_rate[1]
        return Identity(
            row.token_id,
            row.label,
            row.role,
            row.agent_id,
            rate,
            burst,
            row.expires_at.timestamp() if row.expires_at else None,
        )


def expiry(value: datetime | None, *, now: datetime | None = None) -> datetime | None:
    """An ``expires_at`` checked to be in the future (UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value <= (now or datetime.now(UTC)):
        raise ValueError("expires_at must be in the future")
    return value


__all__ = [
    "PREFIX",
    "StoreUnavailable",
    "TokenAuthority",
    "TokenRepository",
    "TokenRow",
    "digest",
    "new_token",
]
