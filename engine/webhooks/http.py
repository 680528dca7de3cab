"""The webhooks API (docs/security.md "Webhooks"): subscriptions, deliveries, replay."""

from __future__ import annotations

import re
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.auth.audit import IDENTITY
from engine.calls.schemas import JsonInt
from engine.core.errors import Conflict, InvalidRequest, NotFound
from engine.web.validation import parse_body
from engine.webhooks import signing
from engine.webhooks.policy import EVENT_TYPES
from engine.webhooks.service import Dispatcher
from engine.webhooks.store import WebhookStore

WEBHOOKS = web.AppKey("webhooks", WebhookStore)
DISPATCHER = web.AppKey("webhook_dispatcher", Dispatcher)

SUBSCRIPTION_ID = re.compile(r"^whs_[0-9a-f]{16}$")
# A URL the delivery client can use, and nothing else: an ASCII host name (labels of letters,
# digits and inner hyphens, the last one starting with a letter: a host that ends in a number
# is read as an IPv4 address by aiohttp/yarl, and "0" or "1.2.3" are refused there as not
# canonical) or a dotted-quad IPv4 address, an optional port 1-65535, an optional path/query.
# No credentials (no '@' before the path). The document states this same pattern; the one
# rule it cannot state, a host name of at most 253 characters, is checked below.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LAST_LABEL = r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL_PATTERN = (
    rf"^https?://(({_OCTET}\.){{3}}{_OCTET}|({_LABEL}\.)*{_LAST_LABEL})"
    rf"(:{_PORT})?(/[\x21-\x7e]{{0,1900}})?$"
)
MAX_HOST = 253
DESCRIPTION = r"^[^\x00-\x1f\x7f]{0,200}$"
STATES = ("pending", "delivered", "dead")


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: Annotated[str, Field(pattern=URL_PATTERN, max_length=2000)]
    event_types: list[str] = Field(min_length=1, max_length=len(EVENT_TYPES))
    description: Annotated[str, Field(pattern=DESCRIPTION)] = ""
    max_attempts: JsonInt = Field(default=12, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _host_length(cls, value: str) -> str:
        host = value.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
        if len(host) > MAX_HOST:
            raise ValueError(f"host name of {len(host)} characters; expected at most {MAX_HOST}")
        return value

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; expected some of {EVENT_TYPES}")
        if len(set(value)) != len(value):
            raise ValueError("each event type once")
        return value


def _subscription_id(request: web.Request) -> str:
    value = request.match_info["subscription_id"]
    if not SUBSCRIPTION_ID.fullmatch(value):
        raise NotFound(f"no webhook subscription {value[:40]!r}", error_id="webhook-not-found")
    return value


async def create(request: web.Request) -> web.Response:
    body = await parse_body(request, SubscriptionCreate)
    secret = signing.new_secret()
    sub = await request.app[WEBHOOKS].create(
        url=body.url,
        event_types=body.event_types,
        secret=secret,
        description=body.description,
        max_attempts=body.max_attempts,
        created_by=request[IDENTITY].actor,
    )
    return web.json_response(
        # The signing secret is shown here only.
        {**sub.to_json(), "secret": secret},
        status=201,
        headers={
            "Location": f"/v1/webhooks/{sub.subscription_id}",
            "Cache-Control": "no-store",
        },
    )


async def list_all(request: web.Request) -> web.Response:
    subs = await request.app[WEBHOOKS].subscriptions()
    return web.json_response({"subscriptions": [s.to_json() for s in subs]})


async def get_one(request: web.Request) -> web.Response:
    sub_id = _subscription_id(request)
    sub = await request.app[WEBHOOKS].get(sub_id)
    if sub is None:
        raise NotFound(f"no webhook subscription {sub_id!r}", error_id="webhook-not-found")
    return web.json_response(sub.to_json())


async def delete(request: web.Request) -> web.Response:
    sub_id = _subscription_id(request)
    if not await request.app[WEBHOOKS].delete(sub_id):
        raise NotFound(f"no webhook subscription {sub_id!r}", error_id="webhook-not-found")
    return web.json_response({"subscription_id": sub_id, "deleted": True})


def _query_int(request: web.Request, name: str, low: int, high: int) -> int | None:
    values = request.query.getall(name, [])
    if not values:
        return None
    text = values[0]
    if len(values) > 1 or not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise InvalidRequest(
            f"{name}: expected an integer {low}..{high}, once", error_id="invalid-parameter"
        )
    value = int(text)
    if not low <= value <= high:
        raise InvalidRequest(
            f"{name}: expected an integer {low}..{high}", error_id="invalid-parameter"
        )
    return value


async def deliveries(request: web.Request) -> web.Response:
    sub_id = _subscription_id(request)
    store = request.app[WEBHOOKS]
    states = request.query.getall("state", [])
    if len(states) > 1 or (states and states[0] not in STATES):
        raise InvalidRequest(f"state: expected one of {STATES}, once", error_id="invalid-parameter")
    limit = _query_int(request, "limit", 1, 1000) or 100
    after = _query_int(request, "after_id", 0, 2**63 - 1)
    if await store.get(sub_id) is None:
        raise NotFound(f"no webhook subscription {sub_id!r}", error_id="webhook-not-found")
    rows = await store.deliveries(sub_id, states[0] if states else None, limit, after)
    body: dict[str, Any] = {"deliveries": [r.to_json() for r in rows]}
    body["next_after_id"] = rows[-1].delivery_id if len(rows) == limit else None
    return web.json_response(body)


async def replay_dead(request: web.Request) -> web.Response:
    sub_id = _subscription_id(request)
    store = request.app[WEBHOOKS]
    if await store.get(sub_id) is None:
        raise NotFound(f"no webhook subscription {sub_id!r}", error_id="webhook-not-found")
    count = await store.replay(sub_id)
    _wake(request)
    return web.json_response({"subscription_id": sub_id, "replayed": count})


async def replay_one(request: web.Request) -> web.Response:
    text = request.match_info["delivery_id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise NotFound(f"no webhook delivery {text[:40]!r}", error_id="delivery-not-found")
    delivery_id = int(text)
    store = request.app[WEBHOOKS]
    sub_id = await store.subscription_of(delivery_id)
    if sub_id is None:
        raise NotFound(f"no webhook delivery {delivery_id}", error_id="delivery-not-found")
    count = await store.replay(sub_id, delivery_id)
    if count == 0:
        raise Conflict(
            f"delivery {delivery_id} is not dead-lettered; only dead deliveries are replayed",
            error_id="delivery-not-dead",
        )
    _wake(request)
    return web.json_response({"subscription_id": sub_id, "replayed": count})


def _wake(request: web.Request) -> None:
    dispatcher = request.app.get(DISPATCHER)
    if dispatcher is not None:
        dispatcher.wake()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/webhooks", create)
    app.router.add_get("/v1/webhooks", list_all)
    app.router.add_get("/v1/webhooks/{subscription_id}", get_one)
    app.router.add_delete("/v1/webhooks/{subscription_id}", delete)
    app.router.add_get("/v1/webhooks/{subscription_id}/deliveries", deliveries)
    app.router.add_post("/v1/webhooks/{subscription_id}/replay", replay_dead)
    app.router.add_post("/v1/webhooks/deliveries/{delivery_id}/replay", replay_one)
