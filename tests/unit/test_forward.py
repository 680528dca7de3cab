"""The forwarding decision without storage: who serves a request, what it costs, and the 503s
(engine/api/forward.py, engine/store/redis/owners.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from engine.acd.http import ACD
from engine.acd.service import AcdService
from engine.api.auth import Auth, own_call_middleware
from engine.api.errors import errors_middleware
from engine.api.forward import AddressBook, Claim, Forwarder
from engine.api.ownership import forwarded_routes, home_queues
from engine.auth.hop import HopSeal
from engine.auth.roles import Identity, Role
from engine.auth.tokens import TokenAuthority
from engine.calls.service import CallService
from engine.campaigns.service import CampaignService
from engine.store.errors import StoreUnavailable
from engine.store.redis.engines import EngineDirectory
from engine.store.redis.locks import LeaseHolder
from engine.store.redis.owners import LeaseOwners
from engine.telemetry.metrics import Metrics
from engine.trunks.model import TrunkSpec
from engine.trunks.service import TrunkService


class Holders:
    """``Leases.holder`` over a dict, counting reads."""

    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def holder(self, name: str) -> LeaseHolder | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        owner = self.owners.get(name)
        return LeaseHolder(owner, 7) if owner is not None else None


class StalledHolders(Holders):
    """The loop stalls 0.5 s as each read starts, before its request is on the wire; Redis
    then answers within 5 ms."""

    async def holder(self, name: str) -> LeaseHolder | None:
        asyncio.get_running_loop().call_soon(time.sleep, 0.5)
        await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        return await super().holder(name)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_owners_are_read_once_per_cache_period() -> None:
    holders, clock = Holders({"switch:sw-a": "eng-a"}), Clock()
    owners = LeaseOwners(holders, "eng-b", cache_s=1.0, clock=clock)
    assert [await owners.owner_of("switch:sw-a") for _ in range(50)] == ["eng-a"] * 50
    assert await owners.owner_of("switch:nobody") is None
    assert holders.reads == 2
    clock.now += 1.5
    holders.owners["switch:sw-a"] = "eng-c"
    assert await owners.owner_of("switch:sw-a") == "eng-c"
    owners.forget("switch:sw-a")
    assert await owners.owner_of("switch:sw-a") == "eng-c"
    assert holders.reads == 4


async def test_an_owner_read_held_back_by_a_stalled_loop_is_not_a_timeout() -> None:
    # 0.2 s of running time; the stall (0.5 s) is not Redis being slow.
    owners = LeaseOwners(StalledHolders({"switch:sw-a": "eng-a"}), "eng-b", timeout_s=0.2)
    assert await owners.owner_of("switch:sw-a") == "eng-a"


class StalledRedis:
    """What EngineDirectory.address_of uses of a Redis client; each GET stalls the loop as
    it starts, as StalledHolders does."""

    def register_script(self, script: str) -> object:
        return object()

    async def get(self, key: str) -> str:
        asyncio.get_running_loop().call_soon(time.sleep, 0.5)
        await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        return "http://10.0.0.5:8080"


async def test_an_address_read_held_back_by_a_stalled_loop_is_not_a_timeout() -> None:
    engines = EngineDirectory(StalledRedis(), "p:", "eng-b", timeout_s=0.2)  # type: ignore[arg-type]
    assert await engines.address_of("eng-a") == "http://10.0.0.5:8080"


async def test_a_lease_held_here_costs_no_read_and_a_burst_shares_one() -> None:
    holders = Holders({"queue:q1": "eng-b"})
    owners = LeaseOwners(holders, "eng-b", held=lambda name: name == "queue:mine")
    assert await owners.owner_of("queue:mine") == "eng-b"
    assert holders.reads == 0
    holders.gate = asyncio.Event()
    burst = [asyncio.create_task(owners.owner_of("queue:q1")) for _ in range(20)]
    await asyncio.sleep(0)
    holders.gate.set()
    assert await asyncio.gather(*burst) == ["eng-b"] * 20
    assert holders.reads == 1


class Book:
    async def address_of(self, instance: str) -> str | None:
        raise AssertionError(f"no hop expected (asked for {instance})")

    def forget(self, instance: str) -> None:
        pass


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Holders]]:
    holders = Holders({"switch:sw-b": "eng-b"})
    claims = {
        "local": None,
        "mine": Claim("switch:sw-b"),
        "free": Claim("switch:free"),
        "stranded": Claim("switch:free", local_ok=False),
    }

    async def resolve(request: web.Request) -> Claim | None:
        return claims[request.match_info["what"]]

    forwarder = Forwarder(
        {("POST", "/v1/things/{what}"): resolve}, LeaseOwners(holders, "eng-b"), Book()
    )

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"served_by": "here"})

    app = web.Application(middlewares=[errors_middleware, forwarder.middleware])
    app.router.add_post("/v1/things/{what}", handler)
    app.router.add_get("/v1/things/{what}", handler)
    async with TestClient(TestServer(app)) as client:
        yield client, holders


async def test_what_this_engine_serves_itself(
    served: tuple[TestClient[web.Request, web.Application], Holders],
) -> None:
    client, holders = served
    for what, reads in (("local", 0), ("mine", 1), ("free", 2)):
        reply = await client.post(f"/v1/things/{what}")
        assert (reply.status, await reply.json()) == (200, {"served_by": "here"})
        assert holders.reads == reads
    reply = await client.get("/v1/things/stranded")  # a route not in the table: no question
    assert reply.status == 200 and holders.reads == 2


async def test_nobody_owns_what_this_engine_cannot_serve(
    served: tuple[TestClient[web.Request, web.Application], Holders],
) -> None:
    client, _ = served
    reply = await client.post("/v1/things/stranded")
    body = await reply.json()
    assert (reply.status, body["error_id"]) == (503, "owner-unknown")
    assert reply.headers["Retry-After"] == "1"
    assert body["details"] == {"lease": "switch:free"}


async def test_redis_away_serves_here_what_this_engine_can_serve(
    served: tuple[TestClient[web.Request, web.Application], Holders],
) -> None:
    """A black-holed Redis must not turn an originate this engine can place into a 503
    (tests/integration/test_drill_redis_blackhole.py caught it): routing falls back to here."""
    client, holders = served

    async def away(name: str) -> LeaseHolder | None:
        holders.reads += 1
        raise StoreUnavailable("redis unavailable while reading a lease")

    holders.holder = away  # type: ignore[method-assign]
    reply = await client.post("/v1/things/free")
    assert (reply.status, await reply.json()) == (200, {"served_by": "here"})
    assert holders.reads == 1
    # What only another engine could serve still reports the storage failure.
    reply = await client.post("/v1/things/stranded")
    assert (reply.status, (await reply.json())["error_id"]) == (503, "storage-unavailable")


def test_every_forwarded_route_is_an_api_route() -> None:
    """A typo in the table would silently serve that route locally."""
    spec = json.loads((Path(__file__).parents[2] / "engine/api/openapi.json").read_text())
    acd = SimpleNamespace(agent_configs=list, queues={})
    routes = forwarded_routes(
        cast(CallService, object()),
        trunks=cast(TrunkService, object()),
        campaigns=cast(CampaignService, object()),
        acd=cast(AcdService, acd),
    )
    assert len(routes) == 29
    for method, path in routes:
        assert method.lower() in spec["paths"].get(path, {}), (method, path)


def test_an_agent_belongs_to_the_first_queue_it_can_serve() -> None:
    queues = {
        "sales": SimpleNamespace(skills={"sales": 3}),
        "billing": SimpleNamespace(skills={"billing": 1}),
        "any": SimpleNamespace(skills={}),
    }
    agents = [("a1", {"sales": 5}), ("a2", {"billing": 2, "sales": 1}), ("a3", {"sales": 2})]
    assert home_queues(agents, queues) == {"a1": "any", "a2": "any", "a3": "any"}
    del queues["any"]
    assert home_queues(agents, queues) == {"a1": "sales", "a2": "billing"}


class FixedBook:
    def __init__(self, address: str) -> None:
        self.address = address
        self.forgotten: list[str] = []

    async def address_of(self, instance: str) -> str | None:
        return self.address

    def forget(self, instance: str) -> None:
        self.forgotten.append(instance)


async def test_an_owner_that_does_not_answer_in_time_gives_503_outcome_unknown() -> None:
    answered = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await answered.wait()  # never set: the owner hangs
        return web.json_response({})

    peer = web.Application()
    peer.router.add_post("/v1/things/{what}", slow)
    async with TestServer(peer) as owner:
        book = FixedBook(str(owner.make_url("")))

        async def resolve(request: web.Request) -> Claim | None:
            return Claim("switch:x")

        forwarder = Forwarder(
            {("POST", "/v1/things/{what}"): resolve},
            LeaseOwners(Holders({"switch:x": "eng-slow"}), "eng-b"),
            book,
            timeout_s=0.3,
        )

        async def never(request: web.Request) -> web.Response:
            raise AssertionError("served locally")

        app = web.Application(middlewares=[errors_middleware, forwarder.middleware])
        app.router.add_post("/v1/things/{what}", never)
        async with TestClient(TestServer(app)) as client:
            reply = await client.post("/v1/things/a", json={"x": 1})
            body = await reply.json()
        await forwarder.close()
    assert (reply.status, body["error_id"]) == (503, "owner-unreachable")
    assert reply.headers["Retry-After"] == "1"
    assert body["details"] == {"lease": "switch:x", "owner": "eng-slow", "sent": True}
    assert book.forgotten == ["eng-slow"]


# ---------------------------------------------------------------- two engines with auth


class Tokens:
    """``TokenAuthority.identify`` over a dict (what PostgreSQL's tokens table would say)."""

    def __init__(self, identities: dict[str, Identity]) -> None:
        self.identities = identities

    async def identify(self, token: str) -> Identity | None:
        return self.identities.get(token)


class CallsOf:
    """``AcdService.agent_of_call`` over a dict: the calls this engine's ACD offered."""

    def __init__(self, agents: dict[str, str]) -> None:
        self.agents = agents

    def agent_of_call(self, call_id: str) -> str | None:
        return self.agents.get(call_id)


ALICE = Identity("t-alice", "alice's phone", Role.AGENT, agent_id="alice")


def engine_app(
    instance: str,
    book: AddressBook,
    acd: CallsOf,
    tokens: Tokens,
    hops: HopSeal | None = None,
    seen: list[dict[str, str]] | None = None,
) -> tuple[web.Application, Forwarder]:
    """One engine's API as build_app stacks it (auth, forwarding, the own-call check), with
    every call on switch ``sw-b``, which engine ``eng-b`` owns. ``seen``: the headers of
    every request served here."""

    async def resolve(request: web.Request) -> Claim | None:
        return Claim("switch:sw-b")

    forwarder = Forwarder(
        {("DELETE", "/v1/calls/{call_id}"): resolve},
        LeaseOwners(Holders({"switch:sw-b": "eng-b"}), instance),
        book,
        seal=hops,
    )

    async def hangup(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(dict(request.headers))
        return web.json_response({"hung_up_by": instance})

    auth = Auth(cast(TokenAuthority, tokens), hops=hops)
    app = web.Application(
        middlewares=[errors_middleware, auth.middleware, forwarder.middleware, own_call_middleware]
    )
    app[ACD] = cast(AcdService, acd)
    app.router.add_delete("/v1/calls/{call_id}", hangup)
    return app, forwarder


async def test_an_agents_own_call_is_judged_by_the_engine_that_owns_the_call() -> None:
    """Engine A never saw the call its peer's ACD offered alice; before the fix A's check
    answered 403 where B, which owns the call, accepts it."""
    tokens = Tokens({"alice": ALICE})
    owner_app, owner_fwd = engine_app(
        "eng-b", Book(), CallsOf({"c1": "alice", "c2": "bob"}), tokens
    )
    async with TestServer(owner_app) as owner:
        entry_app, entry_fwd = engine_app(
            "eng-a", FixedBook(str(owner.make_url(""))), CallsOf({}), tokens
        )
        async with TestClient(TestServer(entry_app)) as client:
            auth = {"Authorization": "Bearer alice"}
            reply = await client.delete("/v1/calls/c1", headers=auth)
            assert (reply.status, await reply.json()) == (200, {"hung_up_by": "eng-b"})
            assert reply.headers["X-Engine-Served-By"] == "eng-b"
            # Bob's call is still refused, by the owner.
            reply = await client.delete("/v1/calls/c2", headers=auth)
            body = await reply.json()
            assert (reply.status, body["error_id"]) == (403, "not-own-resource")
            assert reply.headers["X-Engine-Served-By"] == "eng-b"
        await entry_fwd.close()
    await owner_fwd.close()


async def test_a_forwarded_request_counts_once_and_the_hop_marker_cannot_be_forged() -> None:
    """Before the fix the owner counted a forwarded request again: a token allowed one
    request was refused its first request sent to the owner itself. Now the owner skips the
    limit only for a hop sealed with the engines' shared key; a client's own
    ``X-Engine-Forwarded``, a made-up seal or a replayed one is counted as any request."""
    key = b"shared" * 11
    crm = Identity("t-crm", "crm", Role.INTEGRATION, rate_per_s=0.001, rate_burst=1)
    tokens = Tokens({"crm": crm})
    seen: list[dict[str, str]] = []
    owner_app, owner_fwd = engine_app(
        "eng-b", Book(), CallsOf({}), tokens, HopSeal(lambda: key), seen
    )
    auth = {"Authorization": "Bearer crm"}
    async with TestClient(TestServer(owner_app)) as owner:
        entry_app, entry_fwd = engine_app(
            "eng-a",
            FixedBook(str(owner.make_url(""))),
            CallsOf({}),
            tokens,
            HopSeal(lambda: key),
        )
        async with TestClient(TestServer(entry_app)) as entry:
            reply = await entry.delete("/v1/calls/c1", headers=auth)  # counted by eng-a
            assert (reply.status, await reply.json()) == (200, {"hung_up_by": "eng-b"})
            reply = await owner.delete("/v1/calls/c1", headers=auth)  # eng-b's first
            assert (reply.status, await reply.json()) == (200, {"hung_up_by": "eng-b"})
            reply = await owner.delete("/v1/calls/c1", headers=auth)
            assert (reply.status, (await reply.json())["error_id"]) == (429, "rate-limited")
            # The entry's limit holds too: its next request is refused there, no hop.
            reply = await entry.delete("/v1/calls/c1", headers=auth)
            assert reply.status == 429 and "X-Engine-Served-By" not in reply.headers
        await entry_fwd.close()
        genuine = seen[0]["X-Engine-Hop"]
        for forged in (None, "1800000000.abc.0123", genuine):  # the last: a replay
            headers = {**auth, "X-Engine-Forwarded": "eng-a"}
            if forged is not None:
                headers["X-Engine-Hop"] = forged
            reply = await owner.delete("/v1/calls/c1", headers=headers)
            assert (reply.status, (await reply.json())["error_id"]) == (429, "rate-limited")
    await owner_fwd.close()


async def test_a_trunks_drain_goes_to_the_owner_of_its_switch() -> None:
    """The engine that places calls on the trunk stops at once (the drain is also shared with
    every engine: tests/integration/test_trunk_admin.py)."""
    trunks = TrunkService(
        [TrunkSpec(name="carrier-1", switch="sw-b", target="c1", max_channels=1, max_cps=1.0)],
        [],
        metrics=Metrics(),
    )
    routes = forwarded_routes(cast(CallService, object()), trunks=trunks)
    resolve = routes[("POST", "/v1/trunks/{name}/drain")]
    assert routes[("POST", "/v1/trunks/{name}/enable")] == resolve

    def request(name: str) -> web.Request:
        return cast(web.Request, SimpleNamespace(match_info={"name": name}))

    assert await resolve(request("carrier-1")) == Claim("switch:sw-b")
    assert await resolve(request("nope")) is None  # answered here: 404 trunk-not-found
