"""HTTP handlers of the campaigns API: thin, they validate and call the campaigns service.

``POST /v1/campaigns``, ``GET /v1/campaigns``, ``GET|PATCH /v1/campaigns/{id}``,
``POST /v1/campaigns/{id}/start|pause|stop``, ``GET /v1/campaigns/{id}/stats``,
``GET /v1/campaigns/{id}/attempts``, ``POST /v1/calls/{call_id}/disposition``
(docs/campaigns.md, docs/api.md).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.auth import audit
from engine.campaigns.service import CampaignService
from engine.campaigns.stats import attempts_page, campaign_stats
from engine.core.errors import InvalidRequest
from engine.web.validation import MAX_BODY, read_json

CAMPAIGNS = web.AppKey("campaigns", CampaignService)


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise InvalidRequest(
            f"request body is larger than {MAX_BODY} bytes", error_id="body-too-large", status=413
        )
    if request.content_type not in ("application/json", "application/merge-patch+json"):
        raise InvalidRequest(
            "request body must be sent as 'Content-Type: application/json'",
            error_id="unsupported-media-type",
            status=415,
        )
    data = read_json(await request.read())
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object", error_id="invalid-json")
    return data


async def create(request: web.Request) -> web.Response:
    body = await _json(request)
    row = await request.app[CAMPAIGNS].create(body)
    return web.json_response(row, status=201, headers={"Location": f"/v1/campaigns/{row['id']}"})


async def list_all(request: web.Request) -> web.Response:
    return web.json_response({"campaigns": await request.app[CAMPAIGNS].all()})


async def get_one(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CAMPAIGNS].get(request.match_info["id"]))


async def patch(request: web.Request) -> web.Response:
    service = request.app[CAMPAIGNS]
    campaign_id = request.match_info["id"]
    await service.get(campaign_id)  # unknown campaign: 404 before the body is judged
    return web.json_response(await service.patch(campaign_id, await _json(request)))


def _state_changed(request: web.Request, verb: str, before: str, body: dict[str, Any]) -> None:
    # Besides the middleware's row of every request: what the campaign went from and to, so a
    # supervisor's pause or resume reads as one (docs/supervisor.md).
    audit.record(
        request,
        action=f"campaign.{verb}",
        target=f"id={request.match_info['id']}",
        details={"from": before, "to": str(body.get("state", ""))},
    )


async def _move(request: web.Request, verb: str) -> web.Response:
    service = request.app[CAMPAIGNS]
    campaign_id = request.match_info["id"]
    before = str((await service.get(campaign_id)).get("state", ""))
    body = await getattr(service, verb)(campaign_id)
    _state_changed(request, verb, before, body)
    return web.json_response(body)


async def start(request: web.Request) -> web.Response:
    return await _move(request, "start")


async def pause(request: web.Request) -> web.Response:
    return await _move(request, "pause")


async def stop(request: web.Request) -> web.Response:
    return await _move(request, "stop")


async def stats(request: web.Request) -> web.Response:
    service = request.app[CAMPAIGNS]
    return web.json_response(await campaign_stats(service, request.match_info["id"]))


async def attempts(request: web.Request) -> web.Response:
    service = request.app[CAMPAIGNS]
    campaign_id = request.match_info["id"]
    await service.get(campaign_id)
    return web.json_response(await attempts_page(service, campaign_id, request.query))


async def previews(request: web.Request) -> web.Response:
    service = request.app[CAMPAIGNS]
    agent = request.query.get("agent")
    if agent is not None and not 0 < len(agent) <= 64:
        raise InvalidRequest("agent: expected an agent id (1 to 64 characters)")
    return web.json_response(await service.previews(request.match_info["id"], agent))


async def accept_preview(request: web.Request) -> web.Response:
    service = request.app[CAMPAIGNS]
    info = request.match_info
    return web.json_response(await service.decide_preview(info["id"], info["attempt_id"], True))


async def skip_preview(request: web.Request) -> web.Response:
    service = request.app[CAMPAIGNS]
    info = request.match_info
    return web.json_response(await service.decide_preview(info["id"], info["attempt_id"], False))


async def disposition(request: web.Request) -> web.Response:
    service = request.app[CAMPAIGNS]
    body = await _json(request)
    return web.json_response(await service.disposition(request.match_info["call_id"], body))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/campaigns", create)
    app.router.add_get("/v1/campaigns", list_all)
    app.router.add_get("/v1/campaigns/{id}", get_one)
    app.router.add_patch("/v1/campaigns/{id}", patch)
    app.router.add_post("/v1/campaigns/{id}/start", start)
    app.router.add_post("/v1/campaigns/{id}/pause", pause)
    app.router.add_post("/v1/campaigns/{id}/stop", stop)
    app.router.add_get("/v1/campaigns/{id}/stats", stats)
    app.router.add_get("/v1/campaigns/{id}/attempts", attempts)
    app.router.add_get("/v1/campaigns/{id}/previews", previews)
    app.router.add_post("/v1/campaigns/{id}/previews/{attempt_id}/accept", accept_preview)
    app.router.add_post("/v1/campaigns/{id}/previews/{attempt_id}/skip", skip_preview)
    app.router.add_post("/v1/calls/{call_id}/disposition", disposition)
