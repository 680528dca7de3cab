"""HTTP handlers of the calls API: thin, they validate and call the service."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from engine.api.keys import CALLS, CDRS
from engine.api.middleware import json_error
from engine.api.validation import parse_body
from engine.calls.errors import EngineDraining
from engine.calls.model import Call
from engine.calls.schemas import DtmfBody, OriginateBody, RedirectBody, then_from_body
from engine.core.errors import InvalidRequest
from engine.store.pg.cdr import CdrRow
from engine.trunks.errors import TrunksUnavailable

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
    try:
        call, created = await request.app[CALLS].originate(body.to_command(), key)
    except (TrunksUnavailable, EngineDraining) as err:
        # The error middleware cannot add headers; the retry hint belongs in
        # Retry-After (RFC 9110 10.2.3, whole seconds) as well as the body.
        response = json_error(err.status, err.error_id, err.message, err.details)
        response.headers["Retry-After"] = str(max(1, math.ceil(err.retry_after_s)))
        return response
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


def cdr_view(row: CdrRow) -> dict[str, Any]:
    return {
        "call_id": row.call_id,
        "attempt": row.attempt,
        "switch": row.switch,
        "direction": row.direction,
        "channel": row.channel,
        "caller_id_num": row.caller_id_num,
        "caller_id_name": row.caller_id_name,
        "destination": row.destination,
        "endpoint": row.endpoint,
        "trunk": row.trunk,
        "started_at": row.started_at.isoformat(),
        "answered_at": row.answered_at.isoformat() if row.answered_at else None,
        "ended_at": row.ended_at.isoformat(),
        "duration_s": row.duration_s,
        "billsec_s": row.billsec_s,
        "final_state": row.final_state,
        "cause": row.cause,
        "cause_text": row.cause_text,
        "sip_code": row.sip_code,
        "variables": dict(row.variables),
        "interrupted": row.interrupted,
    }


async def list_cdrs(request: web.Request) -> web.Response:
    repo = request.app[CDRS]
    call_id = request.query.get("call_id")
    limit_text = request.query.get("limit", "100")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
        raise InvalidRequest("'limit' must be an integer 1-1000", error_id="invalid-limit")
    rows = await repo.for_call(call_id) if call_id else await repo.recent(limit=int(limit_text))
    return web.json_response({"cdrs": [cdr_view(r) for r in rows]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/calls", originate)
    app.router.add_get("/v1/calls", list_calls)
    app.router.add_get("/v1/calls/{call_id}", get_call)
    app.router.add_delete("/v1/calls/{call_id}", hangup)
    app.router.add_post("/v1/calls/{call_id}/redirect", redirect)
    app.router.add_post("/v1/calls/{call_id}/dtmf", dtmf)
    app.router.add_get("/v1/cdrs", list_cdrs)
