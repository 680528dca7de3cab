"""HTTP handlers of the calls API: thin, they validate and call the service."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from aiohttp import web

from engine.calls.cdr import CdrReader
from engine.calls.model import Call
from engine.calls.schemas import (
    CALL_ID,
    IDEMPOTENCY_KEY,
    DtmfBody,
    OriginateBody,
    RedirectBody,
    ThenIvr,
    then_from_body,
)
from engine.calls.service import CallService
from engine.core import jsontext
from engine.core.errors import InvalidRequest
from engine.store.pg.cdr import CdrRow
from engine.web.validation import parse_body

# The services these routes use, set by the API's composition (engine.api.app).
CALLS = web.AppKey("calls", CallService)
CDRS = web.AppKey("cdrs", CdrReader)
# The IVR flow names this engine has loaded (None: no IVR here, nothing to check against).
IVR_FLOWS: web.AppKey[Callable[[], Collection[str] | None]] = web.AppKey("ivr_flows")

IDEMPOTENCY_HEADER = "Idempotency-Key"
_CALL_ID = re.compile(CALL_ID)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY)


def _json_response(data: Any, **kwargs: Any) -> web.Response:
    # orjson (engine.core.jsontext): the originate's response is encoded once per call;
    # the stdlib's encoder was a visible share of the request's CPU.
    return web.json_response(data, dumps=jsontext.dumps, **kwargs)


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
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            f"{IDEMPOTENCY_HEADER} must be 1-200 printable ASCII characters",
            error_id="invalid-idempotency-key",
        )
    return key


def _call_id(value: str, where: str) -> str:
    """A call id as the engine makes them; anything else (NUL bytes, control
    characters, 10 kB of text) is refused before it reaches Redis or SQL."""
    if not _CALL_ID.fullmatch(value):
        raise InvalidRequest(
            f"{where} must be a call id (letters, digits, '.', '_', ':' or '-', 1-128 "
            "characters, e.g. a UUID)",
            error_id="invalid-call-id",
            details={"where": where},
        )
    return value


def _path_call_id(request: web.Request) -> str:
    return _call_id(request.match_info["call_id"], "path parameter 'call_id'")


def _known_flow(request: web.Request, then: object) -> None:
    """A ``then`` naming no loaded IVR flow is a 400 before anything is dialled: the call would
    be answered, find no flow and be hung up on (what the callee heard: nothing)."""
    if not isinstance(then, ThenIvr) or IVR_FLOWS not in request.app:
        return
    flows = request.app[IVR_FLOWS]()
    if flows is None or then.flow in flows:
        return
    known = sorted(flows)
    raise InvalidRequest(
        f"then.flow: no IVR flow named {then.flow!r} (known: {known}: the 'name:' of each "
        "flow file in this engine's ivr/ directory)",
        error_id="unknown-flow",
        details={"flow": then.flow, "known": known},
    )


async def originate(request: web.Request) -> web.Response:
    body = await parse_body(request, OriginateBody)
    _known_flow(request, body.then)
    key = _idempotency_key(request)
    # TrunksUnavailable carries retry_after_s; the error middleware turns it
    # into Retry-After.
    call, created = await request.app[CALLS].originate(body.to_command(), key)
    status = 201 if created else 200
    return _json_response(
        call_view(call), status=status, headers={"Location": f"/v1/calls/{call.call_id}"}
    )


async def list_calls(request: web.Request) -> web.Response:
    calls = await request.app[CALLS].list_live()
    return _json_response({"calls": [call_view(c) for c in calls]})


async def get_call(request: web.Request) -> web.Response:
    call = await request.app[CALLS].get(_path_call_id(request))
    return _json_response(call_view(call))


async def hangup(request: web.Request) -> web.Response:
    call = await request.app[CALLS].hangup(_path_call_id(request))
    return _json_response(call_view(call), status=202)


async def redirect(request: web.Request) -> web.Response:
    body = await parse_body(request, RedirectBody)
    _known_flow(request, body.then)
    call = await request.app[CALLS].redirect(_path_call_id(request), then_from_body(body.then))
    return _json_response(call_view(call), status=202)


async def dtmf(request: web.Request) -> web.Response:
    body = await parse_body(request, DtmfBody)
    call = await request.app[CALLS].send_dtmf(_path_call_id(request), body.digits)
    return _json_response(call_view(call), status=202)


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
    call_id_text = request.query.get("call_id")
    call_id = None if call_id_text is None else _call_id(call_id_text, "query parameter 'call_id'")
    limit_text = request.query.get("limit", "100")
    # isdigit() alone accepts non-ASCII digits such as '²'.
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= 1000:
        raise InvalidRequest(
            "query parameter 'limit' must be an integer 1-1000", error_id="invalid-limit"
        )
    if call_id is not None:
        rows = await repo.for_call(call_id)
    else:
        rows = await repo.recent(limit=int(limit_text))
    return _json_response({"cdrs": [cdr_view(r) for r in rows]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/calls", originate)
    app.router.add_get("/v1/calls", list_calls)
    app.router.add_get("/v1/calls/{call_id}", get_call)
    app.router.add_delete("/v1/calls/{call_id}", hangup)
    app.router.add_post("/v1/calls/{call_id}/redirect", redirect)
    app.router.add_post("/v1/calls/{call_id}/dtmf", dtmf)
    app.router.add_get("/v1/cdrs", list_cdrs)
