"""HTTP handlers of the calls API: thin, they validate and call the service."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.keys import CALLS
from engine.api.validation import parse_body
from engine.calls.model import Call
from engine.calls.schemas import DtmfBody, OriginateBody, RedirectBody, then_from_body
from engine.core.errors import InvalidRequest

IDEMPOTENCY_HEADER = "Idempotency-Key"


def call_view(call: Call) -> dict[str, Any]:
    data = call.to_dict()
    data.pop("illegal_transitions", None)
    data["duration_s"] = (
        round(call.ended_at - call.created_at, 3) if call.ended_at is not None else None
    )
    data["billsec_s"] = (
        round(call.ended_at - call.answered_at, 3)
        if call.ended_at is not None and call.answered_at is not None
        else 0.0
        if call.ended_at is not None
        else None
    )
    return data


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise InvalidRequest(
            f"{IDEMPOTENCY_HEADER} must be 1-200 printable characters",
            error_id="invalid-idempotency-key",
        )
    return key


async def originate(request: web.Request) -> web.Response:
    body = await parse_body(request, OriginateBody)
    key = _idempotency_key(request)
    call, created = await request.app[CALLS].originate(body.to_command(), key)
    status = 201 if created else 200
    return web.json_response(
        call_view(call), status=status, headers={"Location": f"/v1/calls/{call.call_id}"}
    )


async def list_calls(request: web.Request) -> web.Response:
    calls = await request.app[CALLS].list_live()
    return web.json_response({"calls": [call_view(c) for c in calls]})


async def get_call(request: web.Request) -> web.Response:
    call = await request.app[CALLS].get(request.match_info["call_id"])
    return web.json_response(call_view(call))


async def hangup(request: web.Request) -> web.Response:
    call = await request.app[CALLS].hangup(request.match_info["call_id"])
    return web.json_response(call_view(call), status=202)


async def redirect(request: web.Request) -> web.Response:
    body = await parse_body(request, RedirectBody)
    call = await request.app[CALLS].redirect(
        request.match_info["call_id"], then_from_body(body.then)
    )
    return web.json_response(call_view(call), status=202)


async def dtmf(request: web.Request) -> web.Response:
    body = await parse_body(request, DtmfBody)
    call = await request.app[CALLS].send_dtmf(request.match_info["call_id"], body.digits)
    return web.json_response(call_view(call), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/calls", originate)
    app.router.add_get("/v1/calls", list_calls)
    app.router.add_get("/v1/calls/{call_id}", get_call)
    app.router.add_delete("/v1/calls/{call_id}", hangup)
    app.router.add_post("/v1/calls/{call_id}/redirect", redirect)
    app.router.add_post("/v1/calls/{call_id}/dtmf", dtmf)
