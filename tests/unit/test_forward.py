"""The forwarding decision without storage: who serves a request, what it costs, and the 503s
(engine/api/forward.py, engine/store/redis/owners.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from engine.acd.service import AcdService
from engine.api.errors import errors_middleware
from engine.api.forward import Claim, Forwarder
from engine.api.ownership import forwarded_routes, home_queues
from engine.calls.service import CallService
from engine.campaigns.service import CampaignService
from engine.store.errors import StoreUnavailable
from engine.store.redis.locks import LeaseHolder
from engine.store.redis.owners import LeaseOwners


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
        campaigns=cast(CampaignService, object()),
        acd=cast(AcdService, acd),
    )
    assert len(routes) == 26
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
