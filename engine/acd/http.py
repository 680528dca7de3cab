"""HTTP handlers of the agents and queues API: thin, they validate and call the ACD service.

``GET /v1/agents``, ``GET /v1/agents/{agent_id}``, ``POST /v1/agents/{agent_id}/login|logout|
ready|pause``, ``GET /v1/queues``, ``GET /v1/queues/{name}``, ``POST /v1/queues/{name}/calls``
(docs/api.md, docs/acd.md); supervisor controls ``POST|DELETE /v1/agents/{agent_id}/spy``,
``POST /v1/agents/{agent_id}/force-pause|force-logout|move`` (docs/supervisor.md).
"""

from __future__ import annotations

from aiohttp import web

from engine.acd.schemas import (
    ForceLogoutBody,
    ForcePauseBody,
    MoveBody,
    PauseBody,
    QueueCallBody,
    SpyBody,
)
from engine.acd.service import AcdService
from engine.auth import audit
from engine.pbx.base import SpyMode
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


def _actor(request: web.Request) -> str:
    identity = request.get(audit.IDENTITY)
    return identity.actor if identity is not None else "anonymous"


async def spy(request: web.Request) -> web.Response:
    """Ring the supervisor's endpoint into listen / whisper / barge on the agent's call; the
    same endpoint already on that call switches mode (200) instead of ringing again (201)."""
    acd = request.app[ACD]
    agent_id = request.match_info["agent_id"]
    acd.agent_view(agent_id)  # unknown agent: 404 before the body is judged
    body = await parse_body(request, SpyBody)
    session, created = await acd.spy(agent_id, SpyMode(body.mode), body.endpoint, _actor(request))
    view = session.view()
    audit.record(
        request,
        action="agent.spy" if created else "agent.spy-mode",
        target=f"agent_id={agent_id}",
        details={"mode": body.mode, "endpoint": body.endpoint, "spy_id": session.spy_id},
    )
    return web.json_response(view, status=201 if created else 200)


async def stop_spy(request: web.Request) -> web.Response:
    sessions = await request.app[ACD].stop_spy(request.match_info["agent_id"])
    return web.json_response({"spies": [s.view() for s in sessions]})


async def force_pause(request: web.Request) -> web.Response:
    acd = request.app[ACD]
    agent_id = request.match_info["agent_id"]
    acd.agent_view(agent_id)
    body = await parse_body(request, ForcePauseBody)
    view = acd.force(agent_id, "pause", body.reason, _actor(request), body.note or "")
    audit.record(
        request,
        action="agent.force-pause",
        target=f"agent_id={agent_id}",
        details={"reason": body.reason, "note": body.note or "", **view["supervisor_action"]},
    )
    return web.json_response(view)


async def force_logout(request: web.Request) -> web.Response:
    acd = request.app[ACD]
    agent_id = request.match_info["agent_id"]
    acd.agent_view(agent_id)
    body = await parse_body(request, ForceLogoutBody)
    view = acd.force(agent_id, "logout", body.reason, _actor(request))
    audit.record(
        request,
        action="agent.force-logout",
        target=f"agent_id={agent_id}",
        details={"reason": body.reason, **view["supervisor_action"]},
    )
    return web.json_response(view)


async def move(request: web.Request) -> web.Response:
    acd = request.app[ACD]
    agent_id = request.match_info["agent_id"]
    acd.agent_view(agent_id)
    body = await parse_body(request, MoveBody)
    view = acd.move(agent_id, body.source, body.target, _actor(request))
    audit.record(
        request,
        action="agent.move",
        target=f"agent_id={agent_id}",
        details={"from": body.source, "to": body.target, "queues": view["queues"]},
    )
    return web.json_response(view)


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
    app.router.add_post("/v1/agents/{agent_id}/spy", spy)
    app.router.add_delete("/v1/agents/{agent_id}/spy", stop_spy)
    app.router.add_post("/v1/agents/{agent_id}/force-pause", force_pause)
    app.router.add_post("/v1/agents/{agent_id}/force-logout", force_logout)
    app.router.add_post("/v1/agents/{agent_id}/move", move)
    app.router.add_get("/v1/queues", list_queues)
    app.router.add_get("/v1/queues/{name}", get_queue)
    app.router.add_post("/v1/queues/{name}/calls", enter_queue)
