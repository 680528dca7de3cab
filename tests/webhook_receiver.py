"""A webhook receiver for tests and the bench: an aiohttp server that checks each request's
signature (with the snippet published in docs/security.md) and records what arrived."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.harness import ROOT, Client


def docs_snippet() -> dict[str, Any]:
    """The receiver snippet of docs/security.md, executed: what receivers are told to run."""
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- receiver-snippet -->\s*```python\n(.*?)```", text, re.S)
    assert match is not None, "docs/security.md lost its receiver snippet"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), "docs/security.md", "exec"), namespace)
    return namespace


@dataclass
class Received:
    event_id: str
    type: str
    data: dict[str, Any]
    attempt: int
    at: float  # time.time() on arrival


@dataclass
class Receiver:
    secret: str = ""
    delay_s: float = 0.0  # hold each request this long before answering
    status: int = 204
    received: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    started: int = 0
    # Count a request held past its sender's death as not received: aiohttp runs the
    # handler to its end after the client went, so it would count a delivery the sender
    # never saw answered (and must send again).
    drop_abandoned: bool = False
    abandoned: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self._verify = docs_snippet()["verify_webhook"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> set[str]:
        return {r.event_id for r in self.received}

    async def subscribe_alone(self, client: Client, **fields: Any) -> dict[str, Any]:
        """Make this receiver the engine's only webhook subscription (``fields`` as for
        ``POST /webhooks``, ``url`` set here) and take its secret. Earlier subscriptions are
        deleted: the session's database is shared (the fuzzer subscribes random URLs), and
        only this test's deliveries should be counted."""
        _, subs, _ = await client.request("GET", "/webhooks")
        for other in subs["subscriptions"]:
            await client.request("DELETE", f"/webhooks/{other['subscription_id']}")
        status, sub, _ = await client.request("POST", "/webhooks", json={"url": self.url, **fields})
        assert status == 201, sub
        self.secret = sub["secret"]
        return dict(sub)

    async def handle(self, request: web.Request) -> web.Response:
        self.started += 1
        body = await request.read()
        if not self._verify(self.secret, request.headers, body):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_abandoned and (request.transport is None or request.transport.is_closing()):
            self.abandoned += 1
            return web.Response(status=self.status)
        event = json.loads(body)
        assert request.headers["Webhook-Id"] == event["id"]
        self.received.append(
            Received(
                event["id"],
                event["type"],
                event["data"],
                int(request.headers["Webhook-Attempt"]),
                time.time(),
            )
        )
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
