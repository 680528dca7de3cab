"""HTTP handlers of the trunks API: thin, they call the trunks service.

``GET /v1/trunks`` and ``GET /v1/trunks/{name}`` return ``Fleet.view`` objects
(fields explained in docs/trunks.md "Reading GET /v1/trunks");
``POST /v1/trunks/{name}/drain`` stops new calls on a trunk (calls in progress
continue) and ``/enable`` undoes it, for every engine of the deployment (the state is
shared; see ``TrunkService.set_admin``).
"""

from __future__ import annotations

from aiohttp import web

from engine.trunks.service import TrunkService

# The trunks service, set by the API's composition (engine.api.app).
TRUNKS = web.AppKey("trunks", TrunkService)


async def list_trunks(request: web.Request) -> web.Response:
    service = request.app[TRUNKS]
    groups = [
        {
            "name": g.name,
            "members": list(g.members),
            "selection": g.selection.value,
            "max_attempts": g.max_attempts,
            "queue_timeout_s": g.queue_timeout_s,
        }
        for g in service.fleet.configured_groups
    ]
    return web.json_response({"trunks": service.views(), "groups": groups})


async def get_trunk(request: web.Request) -> web.Response:
    return web.json_response(request.app[TRUNKS].view(request.match_info["name"]))


async def drain(request: web.Request) -> web.Response:
    service = request.app[TRUNKS]
    view = await service.set_admin(request.match_info["name"], drained=True)
    await service.flush()  # TrunkStateChanged is on the stream before we answer
    return web.json_response(view)


async def enable(request: web.Request) -> web.Response:
    service = request.app[TRUNKS]
    view = await service.set_admin(request.match_info["name"], drained=False)
    await service.flush()
    return web.json_response(view)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/trunks", list_trunks)
    app.router.add_get("/v1/trunks/{name}", get_trunk)
    app.router.add_post("/v1/trunks/{name}/drain", drain)
    app.router.add_post("/v1/trunks/{name}/enable", enable)
