"""HTTP handlers of the recordings API (docs/recordings.md): thin, they validate and call the
service."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from engine.calls.schemas import CALL_ID
from engine.core.errors import InvalidRequest
from engine.recordings.model import Recording
from engine.recordings.service import Active, RecordingService
from engine.recordings.store import Filters
from engine.web.validation import parse_body

RECORDINGS = web.AppKey("recordings", RecordingService)

_CALL_ID = re.compile(CALL_ID)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# What the document's date-time pattern allows and Python's fromisoformat reads.
_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_NAME = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_STATES = ("recording", "paused", "finishing", "ready", "deleted", "failed")
_KINDS = ("call", "voicemail")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    action: Literal["start", "stop", "pause", "resume"]


class PatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    legal_hold: bool


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


def recording_view(rec: Recording) -> dict[str, Any]:
    return {
        "recording_id": rec.recording_id,
        "kind": rec.kind,
        "call_id": rec.call_id,
        "switch": rec.switch,
        "agent_id": rec.agent_id,
        "queue": rec.queue,
        "campaign": rec.campaign,
        "started_at": _iso(rec.started_at),
        "ended_at": _iso(rec.ended_at),
        "duration_s": rec.duration_s,
        "channels": rec.channels,
        "pause_mode": rec.pause_mode,
        "sample_rate": rec.sample_rate,
        "state": rec.state,
        "key_id": rec.key_id,
        "size": rec.size,
        "sha256": rec.sha256,
        "legal_hold": rec.legal_hold,
        "retention_days": rec.retention_days,
        "error": rec.error,
        "flow": rec.flow,
        "ended_by": rec.ended_by,
    }


def active_view(active: Active) -> dict[str, Any]:
    return {
        "recording_id": str(active.recording_id),
        "call_id": active.call_id,
        "state": "finishing" if active.stopping else active.state,
        "channels": active.rules.channels,
        "pause_mode": active.rules.pause,
        "started_at": _iso(active.started_at),
    }


def _uuid(text: str, where: str, error_id: str) -> uuid.UUID:
    if not _UUID.fullmatch(text):
        raise InvalidRequest(
            f"{where} must be a UUID (8-4-4-4-12 hex digits)",
            error_id=error_id,
            details={"where": where},
        )
    return uuid.UUID(text)


def _recording_id(request: web.Request) -> uuid.UUID:
    return _uuid(
        request.match_info["recording_id"], "path parameter 'recording_id'", "invalid-recording-id"
    )


async def control(request: web.Request) -> web.Response:
    call_id = request.match_info["call_id"]
    if not _CALL_ID.fullmatch(call_id):
        raise InvalidRequest(
            "path parameter 'call_id' must be a call id (letters, digits, '.', '_', ':' or '-', "
            "1-128 characters, e.g. a UUID)",
            error_id="invalid-call-id",
            details={"where": "path parameter 'call_id'"},
        )
    body = await parse_body(request, ControlBody)
    active = await request.app[RECORDINGS].control(call_id, body.action)
    return web.json_response(active_view(active))


def _query_text(request: web.Request, name: str, pattern: re.Pattern[str]) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not pattern.fullmatch(value):
        raise InvalidRequest(
            f"query parameter {name!r} must be 1-128 letters, digits or . _ : @ -",
            error_id="invalid-query",
            details={"where": f"query parameter {name!r}"},
        )
    return value


def _query_time(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        if not _TIME.fullmatch(value):
            raise ValueError(value)
        # RFC 3339 allows a leap second (:60), Python does not: it counts as :59.
        if value[17:19] == "60":
            value = value[:17] + "59" + value[19:]
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise InvalidRequest(
            f"query parameter {name!r} must be an RFC 3339 date-time with a time zone, "
            "e.g. 2026-01-01T00:00:00Z",
            error_id="invalid-query",
            details={"where": f"query parameter {name!r}"},
        ) from err
    return when


def _one_of(request: web.Request, name: str, allowed: Sequence[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise InvalidRequest(
            f"query parameter {name!r} must be one of {', '.join(allowed)}",
            error_id="invalid-query",
            details={"where": f"query parameter {name!r}"},
        )
    return value


async def list_recordings(request: web.Request) -> web.Response:
    state = _one_of(request, "state", _STATES)
    kind = _one_of(request, "kind", _KINDS)
    limit_text = request.query.get("limit", "100")
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= 1000:
        raise InvalidRequest(
            "query parameter 'limit' must be an integer 1-1000", error_id="invalid-limit"
        )
    after_text = request.query.get("after")
    after = None
    if after_text is not None:
        after = _uuid(after_text, "query parameter 'after'", "invalid-query")
    filters = Filters(
        call_id=_query_text(request, "call_id", _CALL_ID),
        agent_id=_query_text(request, "agent_id", _NAME),
        queue=_query_text(request, "queue", _NAME),
        campaign=_query_text(request, "campaign", _NAME),
        state=state,
        kind=kind,
        since=_query_time(request, "since"),
        until=_query_time(request, "until"),
    )
    limit = int(limit_text)
    rows = await request.app[RECORDINGS].search(filters, limit=limit, after=after)
    return web.json_response(
        {
            "recordings": [recording_view(r) for r in rows],
            "next_after": rows[-1].recording_id if len(rows) == limit else None,
        }
    )


async def get_recording(request: web.Request) -> web.Response:
    rec = await request.app[RECORDINGS].get(_recording_id(request))
    return web.json_response(recording_view(rec))


async def patch_recording(request: web.Request) -> web.Response:
    rid = _recording_id(request)
    body = await parse_body(request, PatchBody)
    rec = await request.app[RECORDINGS].set_legal_hold(rid, body.legal_hold)
    return web.json_response(recording_view(rec))


async def delete_recording(request: web.Request) -> web.Response:
    await request.app[RECORDINGS].delete(_recording_id(request))
    return web.Response(status=204)


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``bytes=`` range; None: the whole file. A range
    this server cannot satisfy raises 416."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m[1] and not m[2]):
        # Several ranges, other units: RFC 9110 lets a server ignore Range it does not do.
        return None
    if not m[1]:  # suffix: the last N bytes
        n = int(m[2])
        if n == 0:
            raise _unsatisfiable(size)
        return max(0, size - n), size
    start = int(m[1])
    end = int(m[2]) + 1 if m[2] else size
    if start >= size or end <= start:
        raise _unsatisfiable(size)
    return start, min(end, size)


def _unsatisfiable(size: int) -> InvalidRequest:
    err = InvalidRequest(
        f"Range not satisfiable: the recording's audio is {size} bytes",
        error_id="range-not-satisfiable",
        status=416,
        details={"size": size},
    )
    return err


async def audio(request: web.Request) -> web.StreamResponse:
    rid = _recording_id(request)
    service = request.app[RECORDINGS]
    sound = await service.audio(rid)
    try:
        wanted = _range(request.headers.get("Range"), sound.size)
    except InvalidRequest:
        sound.close()
        raise
    start, end = wanted if wanted is not None else (0, sound.size)
    response = web.StreamResponse(status=206 if wanted is not None else 200)
    response.content_type = "audio/wav"
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "no-store"
    response.content_length = end - start
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{sound.size}"
    chunks = sound.chunks(start, end)
    try:
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/calls/{call_id}/recording", control)
    app.router.add_get("/v1/recordings", list_recordings)
    app.router.add_get("/v1/recordings/{recording_id}", get_recording)
    app.router.add_patch("/v1/recordings/{recording_id}", patch_recording)
    app.router.add_delete("/v1/recordings/{recording_id}", delete_recording)
    app.router.add_get("/v1/recordings/{recording_id}/audio", audio)
