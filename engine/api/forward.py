"""Any engine serves the API: a command for an object another engine owns is forwarded to it.

Several engines share PostgreSQL and Redis; each switch link, ACD queue and campaign runner is
owned by one of them through a Redis lease (engine/store/redis/locks.py). A client may send a
command to any engine. This middleware runs after authentication and the role check (so a
request that would be refused is refused here, without a hop), before the checks that need
the owner's state (an agent's own call: engine/api/auth.py), and, for the routes that name an
owned object:

1. asks the route's resolver which lease the object falls under (engine/api/ownership.py).
   It answers None when this engine has the object itself (a call in its live table, a
   campaign whose runner holds the lease here): then nothing else happens, no Redis round.
2. asks who holds that lease (:class:`OwnerDirectory`, cached for about a second).
   - This engine, or nobody and this engine can serve it (a single engine, or leases not in
     use): the request is served here as before.
   - Nobody and this engine cannot serve it (a call on a switch it has no link to):
     ``503 owner-unknown`` with ``Retry-After`` (a takeover is under way).
   - Another engine: the request is sent there over HTTP, unchanged, and its answer is
     returned unchanged (status, problem JSON, ``Retry-After``, ``Location``).

Why a direct HTTP call rather than a request/reply over Redis (docs/architecture.md "Any
engine serves the API"): the owner runs the very same handler stack, so errors, idempotency
keys, body limits, authentication, authorization, rate limits and the audit row are the
owner's own, with no second encoding of requests to keep in step; a dead owner is seen at
connect time (refused, or no address) rather than after a reply timeout; and Redis carries no
extra traffic.

The hop is authenticated like any request: the caller's own ``Authorization`` header is
forwarded and checked again by the owner (tokens live in the shared PostgreSQL, bootstrap
tokens in every engine's config). ``X-Engine-Forwarded: <instance>`` marks a forwarded
request; an engine never forwards a request that carries it. If a forwarded request reaches
an engine that is no longer the owner (the lease moved while the request was on its way) it
answers ``503 owner-moved`` instead of forwarding again, so a request never loops. That use
of the marker grants nothing (a client that sends it only loses forwarding). The one thing
the owner skips for a forwarded request, the rate limit the entry engine already counted,
needs more: ``X-Engine-Hop`` carries a seal (an HMAC with a key the engines share,
engine/auth/hop.py) that a client cannot forge, and without a good one the owner counts the
request as any other.

An owner that cannot be reached (no address published, connection refused, no answer in
``timeout_s``) gives ``503 owner-unreachable`` with ``Retry-After``, never a 500. When the
request may have reached the owner before the connection failed, the answer says so
(``details.sent``): a retry with the same ``Idempotency-Key`` is then safe for an originate,
and a hangup of an ended call answers 409.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web
from yarl import URL

from engine.api.errors import Handler
from engine.auth.hop import HopSeal
from engine.core.config import ApiConfig
from engine.core.errors import ServiceUnavailable
from engine.store.errors import StoreError
from engine.store.redis.owners import OwnerDirectory
from engine.telemetry.logging import get_logger

log = get_logger("engine.api.forward")

FORWARDED_HEADER = "X-Engine-Forwarded"
HOP_HEADER = "X-Engine-Hop"
SERVED_BY_HEADER = "X-Engine-Served-By"
DEFAULT_TIMEOUT_S = 10.0
# A peer that does not accept a connection within this long is taken as down (on one
# site's network a connect takes well under a millisecond).
CONNECT_TIMEOUT_S = 1.0
RETRY_AFTER_S = 1

# What goes to the owner: who the caller is, what the body is, the idempotency key.
_REQUEST_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Accept")
# What comes back: everything a client acts on.
_RESPONSE_HEADERS = ("Content-Type", "Retry-After", "Location", "WWW-Authenticate", "Allow")


class OwnerUnknown(ServiceUnavailable):
    error_id = "owner-unknown"
    retry_after_s = RETRY_AFTER_S


class OwnerUnreachable(ServiceUnavailable):
    error_id = "owner-unreachable"
    retry_after_s = RETRY_AFTER_S


class OwnerMoved(ServiceUnavailable):
    error_id = "owner-moved"
    retry_after_s = RETRY_AFTER_S


class EngineUnreachable(ServiceUnavailable):
    """A peer engine did not answer a request sent to every engine (:meth:`Forwarder.relay`)."""

    error_id = "engine-unreachable"
    retry_after_s = RETRY_AFTER_S


@dataclass(frozen=True)
class Claim:
    """The lease an object falls under. ``local_ok``: with nobody holding the lease, this
    engine may serve the request itself (as a lone engine always does)."""

    lease: str
    local_ok: bool = True


Resolver = Callable[[web.Request], Awaitable[Claim | None]]
# (method, route template) -> resolver, e.g. ("DELETE", "/v1/calls/{call_id}").
Routes = Mapping[tuple[str, str], Resolver]


class AddressBook(Protocol):
    async def address_of(self, instance: str) -> str | None: ...

    def forget(self, instance: str) -> None: ...


FORWARDED_TO = web.RequestKey("forwarded_to", str)


def advertised_address(api: ApiConfig, bound_port: int) -> str:
    """The base URL other engines reach this API at: ``[api] advertise`` if set, else the
    bind address with the bound port (a wildcard bind advertises this host's name)."""
    scheme = "https" if api.tls else "http"
    if api.advertise:
        return f"{scheme}://{api.advertise}"
    host = api.host
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{bound_port}"


def peer_context(own_cert: Path) -> ssl.SSLContext:
    """TLS to peer engines: the system's trust store, plus this engine's own certificate as a
    trust anchor (engines of one deployment usually share a certificate or its CA; a
    self-signed one is then trusted by its peers and by nothing else)."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(own_cert))
    return context


class Forwarder:
    """Resolve, decide and carry out the hop (see the module docstring)."""

    def __init__(
        self,
        routes: Routes,
        owners: OwnerDirectory,
        engines: AddressBook,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
        count: Callable[[str], None] | None = None,
        seal: HopSeal | None = None,
    ) -> None:
        """``count(result)``: one call per request not served here, with ``forwarded``
        or the 503's ``error_id`` (a metric). ``seal``: signs each hop, so the owner knows
        this engine counted the request against its rate limit already."""
        self._seal = seal
        self.routes = dict(routes)
        self._count = count or (lambda result: None)
        self.owners = owners
        self.engines = engines
        self.timeout_s = timeout_s
        self._ssl = ssl_context
        self._http: aiohttp.ClientSession | None = None
        self.forwarded = 0  # requests sent to another engine (tests, metrics)

    @property
    def instance(self) -> str:
        return self.owners.instance

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # Kept-alive connections to peers: a forward costs one request, not a handshake.
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, self.timeout_s)
                ),
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        resolve = self.routes.get((request.method, resource.canonical)) if resource else None
        if resolve is None:
            return await handler(request)
        claim = await resolve(request)
        if claim is None:
            return await handler(request)
        try:
            return await self._route(request, handler, claim)
        except ServiceUnavailable as err:
            self._count(err.error_id)
            raise

    async def _route(
        self, request: web.Request, handler: Handler, claim: Claim
    ) -> web.StreamResponse:
        try:
            owner = await self.owners.owner_of(claim.lease)
        except (StoreError, TimeoutError) as err:
            if not claim.local_ok:
                raise
            # Routing must not make Redis a dependency of requests this engine can serve:
            # with the owner unknown because Redis is away, serve here; the handler's own
            # checks (the switch gate, the queue lease) refuse what another engine owns.
            log.debug("owner lookup failed; serving here", lease=claim.lease, error=str(err))
            self._count("lookup-failed")
            return await handler(request)
        if owner is None:
            if claim.local_ok:
                return await handler(request)
            raise OwnerUnknown(
                f"no engine owns {claim.lease} right now (a takeover may be under way); "
                "retry shortly",
                details={"lease": claim.lease},
            )
        if owner == self.instance:
            return await handler(request)
        hop = request.headers.get(FORWARDED_HEADER)
        if hop is not None:
            # Never a second hop: the lease moved while the request was on its way.
            self.owners.forget(claim.lease)
            raise OwnerMoved(
                f"{claim.lease} moved to engine {owner!r} while the request was forwarded "
                f"by {hop[:64]!r}; retry",
                details={"lease": claim.lease, "owner": owner},
            )
        return await self.forward(request, owner, claim.lease)

    def _hop_headers(self, request: web.Request, target: str) -> dict[str, str]:
        """What a hop carries: the caller's credential and body headers, the marker, and
        the seal (for ``request.method`` on ``target``) when the peer key is known."""
        headers = {h: v for h in _REQUEST_HEADERS if (v := request.headers.get(h)) is not None}
        headers[FORWARDED_HEADER] = self.instance
        if self._seal is not None:
            sealed = self._seal.seal(
                self.instance, request.method, target, request.headers.get("Authorization", "")
            )
            if sealed is not None:
                headers[HOP_HEADER] = sealed
        return headers

    async def relay(self, request: web.Request, instance: str, address: str) -> tuple[int, object]:
        """Send ``request`` (its path, without the query, and its body) to engine
        ``instance`` at ``address`` as a hop, whoever owns what: for a request meant for
        every engine (``POST /v1/admin/reload?engines=all``). Returns the peer's status and
        JSON answer; raises :class:`EngineUnreachable` when it gave none."""
        body = await request.read() if request.body_exists else None
        target = request.rel_url.raw_path
        url = address.rstrip("/") + target
        try:
            async with self._session().request(
                request.method,
                URL(url, encoded=True),  # as received: the seal covers these exact bytes
                data=body,
                headers=self._hop_headers(request, target),
                allow_redirects=False,
            ) as reply:
                status = reply.status
                try:
                    data: object = await reply.json(content_type=None)
                except ValueError:
                    data = {"text": (await reply.text())[:500]}
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            self.engines.forget(instance)
            sent = not isinstance(
                err, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
            )
            log.warning("relay failed", engine=instance, url=url, error=repr(err)[:200])
            raise EngineUnreachable(
                f"engine {instance!r} did not answer: "
                + ("the outcome is unknown" if sent else "the request did not reach it"),
                details={"engine": instance, "sent": sent},
            ) from err
        return status, data

    async def forward(self, request: web.Request, owner: str, lease: str) -> web.Response:
        address = await self.engines.address_of(owner)
        if address is None:
            self.owners.forget(lease)
            raise OwnerUnreachable(
                f"engine {owner!r} owns {lease} but publishes no API address "
                "(stopped or crashed); retry shortly",
                details={"lease": lease, "owner": owner, "sent": False},
            )
        # Read here, under this engine's own body limit (413 past it), before any hop.
        body = await request.read() if request.body_exists else None
        target = request.rel_url.raw_path_qs
        headers = self._hop_headers(request, target)
        url = address.rstrip("/") + target
        request[FORWARDED_TO] = owner
        try:
            async with self._session().request(
                # As received (yarl would re-encode %7E and the like): the seal covers it.
                request.method,
                URL(url, encoded=True),
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as reply:
                data = await reply.read()
                out = web.Response(status=reply.status, body=data)
                for name in _RESPONSE_HEADERS:
                    if (value := reply.headers.get(name)) is not None:
                        out.headers[name] = value
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            # Refused, unresolvable, or no connection within CONNECT_TIMEOUT_S: never sent.
            connect_failed = isinstance(
                err, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError
            )
            self.owners.forget(lease)
            self.engines.forget(owner)
            log.warning("forward failed", owner=owner, lease=lease, url=url, error=repr(err)[:200])
            outcome = (
                "the request did not reach it"
                if connect_failed
                else "the outcome is unknown (retry with the same Idempotency-Key)"
            )
            raise OwnerUnreachable(
                f"engine {owner!r}, which owns {lease}, did not answer: {outcome}",
                # Past the connect, the owner may have acted on it.
                details={"lease": lease, "owner": owner, "sent": not connect_failed},
            ) from err
        self.forwarded += 1
        self._count("forwarded")
        out.headers[SERVED_BY_HEADER] = owner
        if reply.status == 503:
            # The owner is busy, draining or no longer the owner: ask again next time.
            self.owners.forget(lease)
        return out
