"""HTTP handlers of contact lists and DNC lists (docs/contacts.md, docs/api.md).

- ``POST /v1/campaigns/{id}/contacts``: a CSV (``text/csv``) or JSONL (``application/x-ndjson``)
  body, streamed (not held in memory; at most MAX_UPLOAD bytes); ``?region=`` overrides the
  campaign's default region, ``?list=`` names the list. Answers the import report with the
  first 1000 rejects inline and their total.
- ``GET /v1/campaigns/{id}/contacts?state=&limit=&after=``: contacts by id (keyset: pass the last
  ``contact_id`` as ``after``).
- ``POST/DELETE/GET /v1/dnc`` (the global list) and ``/v1/campaigns/{id}/dnc``: POST adds the
  JSON ``phones`` (or imports a CSV/JSONL body), DELETE removes the JSON ``phones``, GET lists.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from engine.campaigns.contacts.importer import ImportReport, InlineRejects
from engine.campaigns.contacts.parse import Format
from engine.campaigns.contacts.service import MAX_PAGE, ContactsService
from engine.campaigns.dnc import GLOBAL, normalize
from engine.campaigns.regions import Region, region_problem
from engine.core.errors import InvalidRequest
from engine.web.validation import JSON, parse_body

CONTACTS = web.AppKey("contacts", ContactsService)
INLINE_REJECTS = 1000
STREAM_CHUNK = 256 * 1024
# A list is streamed, never held: this bounds one upload's time, not memory (~20 M rows).
MAX_UPLOAD = 1024**3
_E164 = re.compile(r"^\+[0-9]{1,15}$")
_LIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_FORMATS = {
    "text/csv": Format.CSV,
    "application/x-ndjson": Format.JSONL,
    "application/jsonl": Format.JSONL,
}

# What a list's Content-Type may declare as its charset: the importer reads UTF-8 (ASCII is a
# subset of it).
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})


class PhonesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phones: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        min_length=1, max_length=1000
    )
    # Region of numbers written without +CC; default: the campaign's (US for the global list).
    region: Region | None = None


def _format(request: web.Request) -> Format:
    fmt = _FORMATS.get(request.content_type)
    if fmt is None:
        given = request.headers.get("Content-Type")
        raise InvalidRequest(
            "contact lists are sent as 'Content-Type: text/csv' or 'application/x-ndjson'"
            + (f" (got {given!r})" if given else " (no Content-Type given)"),
            error_id="unsupported-media-type",
            status=415,
            details={"expected": sorted(_FORMATS)},
        )
    charset = request.charset
    if charset is not None and charset.lower() not in _CHARSETS:
        # Read as UTF-8 anyway, a Windows-1252 export would load up to its first accented
        # letter and then stop the import there.
        raise InvalidRequest(
            f"contact lists are read as UTF-8 (got charset={charset!r}); convert the file"
            " (e.g. iconv -f WINDOWS-1252 -t UTF-8) or send it without a charset",
            error_id="unsupported-media-type",
            status=415,
            details={"charset": charset, "expected": ["utf-8"]},
        )
    return fmt


def _query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise InvalidRequest(
            f"{name}: expected an integer {lo}..{hi}, got {raw!r}", error_id=f"invalid-{name}"
        )
    return value


def _region(request: web.Request) -> str | None:
    region = request.query.get("region")
    if region is None:
        return None
    problem = region_problem(region)
    if problem is not None:
        raise InvalidRequest(f"region: {problem}", error_id="invalid-region")
    return region


def _too_large() -> InvalidRequest:
    return InvalidRequest(
        f"a list upload is at most {MAX_UPLOAD} bytes; split the list (re-sending rows is safe:"
        " numbers already loaded count as duplicates)",
        error_id="body-too-large",
        status=413,
    )


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    if request.content_length is not None and request.content_length > MAX_UPLOAD:
        raise _too_large()
    seen = 0
    async for block in request.content.iter_chunked(STREAM_CHUNK):
        seen += len(block)
        if seen > MAX_UPLOAD:
            raise _too_large()
        yield block


def _import_json(report: ImportReport, rejects: InlineRejects) -> dict[str, object]:
    data = report.as_dict()
    # The global DNC list has no campaign: null, not "" (which reads as a campaign id).
    data["campaign_id"] = data.get("campaign_id") or None
    return {
        **data,
        "rejects": [{"line": r.line, "reason": r.reason, "raw": r.raw} for r in rejects.items],
        "rejects_total": rejects.count,
    }


async def import_contacts(request: web.Request) -> web.Response:
    service = request.app[CONTACTS]
    campaign_id = request.match_info["id"]
    fmt = _format(request)
    region = _region(request)
    list_name = request.query.get("list")
    if list_name is not None and not _LIST_NAME.fullmatch(list_name):
        raise InvalidRequest(
            f"list: expected letters, digits, '_', '.', '-' (1-63), got {list_name!r}",
            error_id="invalid-list",
        )
    await service.region_of(campaign_id)  # 404 before the body is read
    rejects = InlineRejects(INLINE_REJECTS)
    report = await service.import_contacts(
        campaign_id,
        _body(request),
        fmt=fmt,
        rejects=rejects,
        region=region,
        list_name=list_name or "",
    )
    return web.json_response(_import_json(report, rejects))


async def list_contacts(request: web.Request) -> web.Response:
    service = request.app[CONTACTS]
    limit = _query_int(request, "limit", 100, 1, MAX_PAGE)
    after = _query_int(request, "after", 0, 0, 2**63 - 1)
    # Present but empty (`?state=`) is not "any state": the service refuses it with the
    # states it takes, as it does any other value outside the enum.
    state = request.query.get("state")
    rows = await service.list_contacts(
        request.match_info["id"], state=state, limit=limit, after=after
    )
    next_after = rows[-1]["contact_id"] if len(rows) == limit else None
    return web.json_response({"contacts": rows, "next_after": next_after})


async def _dnc_list_id(request: web.Request) -> tuple[str, str]:
    """(campaign_id of the list, default region); 404 for an unknown campaign."""
    campaign_id = request.match_info.get("id", GLOBAL)
    if campaign_id == GLOBAL:
        return GLOBAL, "US"
    return campaign_id, await request.app[CONTACTS].region_of(campaign_id)


async def dnc_add(request: web.Request) -> web.Response:
    service = request.app[CONTACTS]
    campaign_id, default = await _dnc_list_id(request)
    # ?region= is checked whatever the body: a JSON body's own "region" comes first.
    region = _region(request) or default
    if request.content_type != JSON:
        fmt = _format(request)
        rejects = InlineRejects(INLINE_REJECTS)
        report = await service.dnc.import_numbers(
            campaign_id, _body(request), fmt=fmt, region=region, rejects=rejects
        )
        return web.json_response(_import_json(report, rejects))
    body = await parse_body(request, PhonesBody)
    phones, invalid = normalize(body.phones, body.region or region)
    added = await service.dnc.add(campaign_id, phones, source="api")
    return web.json_response(
        {
            "campaign_id": campaign_id or None,
            "added": added,
            "phones": phones,
            "invalid": invalid[:100],
        }
    )


async def dnc_remove(request: web.Request) -> web.Response:
    service = request.app[CONTACTS]
    campaign_id, default = await _dnc_list_id(request)
    body = await parse_body(request, PhonesBody)
    phones, invalid = normalize(body.phones, body.region or default)
    removed = await service.dnc.remove(campaign_id, phones)
    return web.json_response(
        {
            "campaign_id": campaign_id or None,
            "removed": removed,
            "phones": phones,
            "invalid": invalid[:100],
        }
    )


async def dnc_list(request: web.Request) -> web.Response:
    service = request.app[CONTACTS]
    campaign_id, _ = await _dnc_list_id(request)
    limit = _query_int(request, "limit", 100, 1, MAX_PAGE)
    after = request.query.get("after")
    if after is not None and not _E164.fullmatch(after):
        raise InvalidRequest(
            f"after: expected the last phone of the previous page (E.164, e.g. +14155550100),"
            f" got {after!r}",
            error_id="invalid-after",
        )
    entries = await service.dnc.list(campaign_id, after=after or "", limit=limit)
    return web.json_response(
        {
            "numbers": [e.as_dict() for e in entries],
            "next_after": entries[-1].phone if len(entries) == limit else None,
        }
    )


def add_routes(app: web.Application, contacts: ContactsService) -> None:
    app[CONTACTS] = contacts
    app.router.add_post("/v1/campaigns/{id}/contacts", import_contacts)
    app.router.add_get("/v1/campaigns/{id}/contacts", list_contacts)
    for path in ("/v1/dnc", "/v1/campaigns/{id}/dnc"):
        app.router.add_post(path, dnc_add)
        app.router.add_delete(path, dnc_remove)
        app.router.add_get(path, dnc_list)
