"""``POST /v1/data-subjects/export`` and ``POST /v1/data-subjects/erase`` (docs/privacy.md)."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from engine.auth.audit import record
from engine.campaigns.regions import Region
from engine.privacy.service import DataSubjectService
from engine.privacy.zipstream import ZipStream
from engine.web.validation import parse_body

DATA_SUBJECTS = web.AppKey("data_subjects", DataSubjectService)

Phone = Annotated[str, Field(min_length=1, max_length=64)]


class EraseBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    phone: Phone
    # Region of a number written without +CC; default [privacy] default_region.
    region: Region | None = None


class ExportBody(EraseBody):
    include_audio: bool = False


async def export(request: web.Request) -> web.StreamResponse:
    service = request.app[DATA_SUBJECTS]
    body = await parse_body(request, ExportBody)
    who = service.subject(body.phone, body.region)
    # Everything but the audio is read before the answer starts: a database failure is
    # still a clean 503, not a cut-off archive.
    got = await service.collect(who)
    # The row says who exported whose data; the number itself is not in the audit trail
    # (it is append-only: an erase could never take it out), its keyed pseudonym is.
    record(
        request,
        action="data-subject.export",
        target=f"subject={who.pseudonym}",
        details={
            "include_audio": body.include_audio,
            "recordings": [r.recording_id for r in got.recordings],
        },
    )
    response = web.StreamResponse(status=200)
    response.content_type = "application/zip"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="data-subject-{who.pseudonym}.zip"'
    )
    response.headers["Cache-Control"] = "no-store"
    await response.prepare(request)
    out = ZipStream(response.write)
    await service.write_export(got, out, audio=body.include_audio)
    await out.close()
    await response.write_eof()
    return response


async def erase(request: web.Request) -> web.Response:
    service = request.app[DATA_SUBJECTS]
    body = await parse_body(request, EraseBody)
    who = service.subject(body.phone, body.region)
    erased = await service.erase(who)
    answer = erased.as_dict()
    record(
        request,
        action="data-subject.erase",
        target=f"subject={who.pseudonym}",
        result="ok" if erased.complete else "partial",
        details={k: v for k, v in answer.items() if k not in ("phone", "pseudonym")},
    )
    return web.json_response(answer)


def add_routes(app: web.Application, service: DataSubjectService) -> None:
    app[DATA_SUBJECTS] = service
    app.router.add_post("/v1/data-subjects/export", export)
    app.router.add_post("/v1/data-subjects/erase", erase)
