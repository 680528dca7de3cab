"""``POST /v1/admin/reload``: re-read this engine's IVR flows and re-validate its engine.toml;
with ``?engines=all``, every engine's.

Each engine reads its own files (its own ``ivr/`` directory and ``engine.toml``), so a reload
acts on the engine asked. Several engines usually share one configuration, deployed to every
host; after changing it, ask for ``engines=all``: the engine asked reloads itself, then sends
the same request to every other engine that publishes an API address
(engine/store/redis/engines.py), as a sealed hop (engine/api/forward.py) carrying the caller's
own token, which each engine authorizes and audits again. The answer lists every engine's
report, or why it gave none. A hop is never sent further (it carries ``X-Engine-Forwarded``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from engine.api.forward import FORWARDED_HEADER, EngineUnreachable, Forwarder
from engine.api.keys import RELOAD
from engine.core.errors import InvalidRequest

# Every engine with a live API address: instance -> base address (EngineDirectory.instances).
EngineList = Callable[[], Awaitable[dict[str, str]]]
ENGINES: web.AppKey[EngineList] = web.AppKey("engines")
FORWARDER = web.AppKey("forwarder", Forwarder)


async def admin_reload(request: web.Request) -> web.Response:
    scope = request.query.getall("engines", [])
    if scope not in ([], ["all"]):
        raise InvalidRequest(
            "engines: expected 'all' (once), or nothing for this engine only",
            error_id="invalid-parameter",
            details={"engines": scope},
        )
    reload = request.app[RELOAD]
    if not scope or FORWARDED_HEADER in request.headers:
        return web.json_response(await reload())
    forwarder = request.app.get(FORWARDER)
    listing = request.app.get(ENGINES)
    here = forwarder.instance if forwarder is not None else ""
    # Listed first: a storage error answers 503 with nothing reloaded anywhere.
    peers = await listing() if listing is not None else {}
    peers.pop(here, None)
    local, *others = await asyncio.gather(
        reload(),
        *(_relay(request, forwarder, i, a) for i, a in sorted(peers.items()) if forwarder),
    )
    engines = [{"instance": here, "status": 200, "report": local}, *others]
    return web.json_response({"engines": sorted(engines, key=lambda e: str(e["instance"]))})


async def _relay(
    request: web.Request, forwarder: Forwarder, instance: str, address: str
) -> dict[str, Any]:
    try:
        status, body = await forwarder.relay(request, instance, address)
    except EngineUnreachable as err:
        error = {"error_id": err.error_id, "message": str(err), "details": err.details}
        return {"instance": instance, "status": err.status, "error": error}
    if status == 200:
        return {"instance": instance, "status": status, "report": body}
    if not (isinstance(body, dict) and "error_id" in body):  # not an engine's problem JSON
        body = {
            "error_id": "unexpected-reply",
            "message": f"engine {instance!r} answered {status} without an error body",
            "details": {"body": body},
        }
    return {"instance": instance, "status": status, "error": body}
