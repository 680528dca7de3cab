"""HTTP handlers of the agents and queues API: thin, they validate and call the ACD service.

``GET /v1/agents``, ``GET /v1/agents/{agent_id}``, ``POST /v1/agents/{agent_id}/login|logout|
ready|pause``, ``GET /v1/queues``, ``GET /v1/queues/{name}``, ``POST /v1/queues/{name}/calls``
(docs/api.md, docs/acd.md).
"""

from __future__ import annotations

from aiohttp import web

from engine.acd.schemas import PauseBody, QueueCallBody
from engine.acd.service import AcdService
from engine.web.validation import parse_body

# The ACD service, set by the API's composition (engine.api.app).
ACD = web.AppKey("acd", AcdService)


async def list_agents(request: web.Request) -> web.Response:
    acd = request.app[ACD]
    return web.json_response({"agents": [acd.agent_view(a) for a in acd.agent_ids()]})


async def get_agent(request: web.Request) -> web.Response:
    return web.json_response(request.app[ACD].agent_view(request.match_info["agent_id"]))


async def login(request: web.Request) -> web.Response:
    return web.json_response(request.app[ACD].login(request.match_info["agent_id"]))


async def logout(request: web.Request) -> web.Response:
    return web.json_response(request.app[ACD].logout(request.match_info["agent_id"]))


async def ready(request: web.Request) -> web.Response:
    return web.json_response(request.app[ACD].ready(request.match_info["agent_id"]))


async def pause(request: web.Request) -> web.Response:
    acd = request.app[ACD]
    agent_id = request.match_info["agent_id"]
    acd.agent_view(agent_id)  # unknown agent: 404 before the body is judged
    body = await parse_body(request, PauseBody)
    return web.json_response(acd.pause(agent_id, body.reason))


async def list_queues(request: web.Request) -> web.Response:
    acd = request.app[ACD]
    return web.json_response({"queues": [acd.queue_view(q) for q in sorted(acd.queues)]})


async def get_queue(request: web.Request) -> web.Response:
    return web.json_response(request.app[ACD].queue_view(request.match_info["name"]))


async def enter_queue(request: web.Request) -> web.Response:
    acd = request.app[ACD]
    name = request.match_info["name"]
    acd.queue_view(name)  # unknown queue: 404 before the body is judged
    body = await parse_body(request, QueueCallBody)
    entry = await acd.enter(
        body.call_id,
        queue=name,
        tags=body.tags,
        intent=body.intent,
        features=body.features,
        customer=body.customer,
    )
    return web.json_response(
        {
            "call_id": entry.call_id,
            "entry_id": entry.entry_id,
            "queue": entry.queue,
            "priority": entry.priority,
            "state": entry.phase.value,
            "entered_at": entry.entered_at,
        },
        status=201,
        headers={"Location": f"/v1/queues/{entry.queue}"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/agents", list_agents)
    app.router.add_get("/v1/agents/{agent_id}", get_agent)
    app.router.add_post("/v1/agents/{agent_id}/login", login)
    app.router.add_post("/v1/agents/{agent_id}/logout", logout)
    app.router.add_post("/v1/agents/{agent_id}/ready", ready)
    app.router.add_post("/v1/agents/{agent_id}/pause", pause)
    app.router.add_get("/v1/queues", list_queues)
    app.router.add_get("/v1/queues/{name}", get_queue)
    app.router.add_post("/v1/queues/{name}/calls", enter_queue)
