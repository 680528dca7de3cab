"""``GET /v1/openapi.json``: the OpenAPI document, fitted to this deployment.

The document in ``engine/api/openapi.json`` is the contract. At serve time the
names the server checks against its configuration are filled in as ``enum``s
(the ``switch`` and ``trunk_group`` of an originate, the ``{name}`` of the
trunk routes, the IVR flows loaded now), so the document accepts exactly what this server
accepts and the interactive reference (``/v1/docs``) offers them as choices.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from engine.acd.http import ACD
from engine.api.keys import CALLS, TRUNKS
from engine.calls.http import IVR_FLOWS


@cache
def _text() -> str:
    return resources.files("engine.api").joinpath("openapi.json").read_text(encoding="utf-8")


def openapi_document() -> dict[str, Any]:
    """The contract as written, without deployment-specific names (a fresh copy)."""
    doc: dict[str, Any] = json.loads(_text())
    return doc


def live_document(
    *,
    switches: list[str],
    trunks: list[str],
    groups: list[str],
    queues: list[str] | None = None,
    agents: list[str] | None = None,
    flows: list[str] | None = None,
) -> dict[str, Any]:
    doc = openapi_document()
    _token_agents(doc, agents or [])
    if flows is not None:
        _flow_names(doc, flows)
    _campaign_names(doc, groups, queues or [], flows)
    originate = doc["components"]["schemas"]["OriginateRequest"]
    originate["properties"]["switch"]["enum"] = sorted(switches)
    if groups:
        originate["properties"]["trunk_group"]["enum"] = sorted(groups)
    else:
        # No groups configured: any trunk_group is refused, so the document
        # must not offer the property at all.
        del originate["properties"]["trunk_group"]
        originate["oneOf"] = [
            alt for alt in originate["oneOf"] if alt.get("required") != ["trunk_group"]
        ]
    name = doc["components"]["parameters"]["TrunkName"]["schema"]
    if trunks:
        name["enum"] = sorted(trunks)
    return doc


def _campaign_names(
    doc: dict[str, Any], groups: list[str], queues: list[str], flows: list[str] | None = None
) -> None:
    """A campaign this server creates or changes names a configured trunk group and queue: the
    request schemas offer exactly those; with none of either configured, no campaign can be
    created, and the document says so. Responses keep the stored names as they are: a shared
    database may hold campaigns that other engines, configured otherwise, created. ``flows``
    (the IVR flows loaded now, when known): the ``amd.machine_flow`` a request may name."""
    schemas = doc["components"]["schemas"]
    if groups and queues:
        names: dict[str, Any] = {
            "trunk_group": {"enum": sorted(groups)},
            "queue": {"enum": sorted(queues)},
        }
        machine_flow = {"properties": {"machine_flow": {"enum": [*sorted(flows or []), None]}}}
        if flows is not None:
            names["amd"] = machine_flow
        create = schemas["CampaignCreate"]["properties"]
        create["spec"] = {"allOf": [create["spec"], {"properties": names}]}
        # The patch's trunk_group and queue are the spec's (required there, so never null:
        # scripts/openapi_campaigns.py).
        patch = schemas["CampaignPatch"]["properties"]
        patch["trunk_group"]["enum"] = sorted(groups)
        patch["queue"]["enum"] = sorted(queues)
        if flows is not None:
            # "properties" binds objects only: a null amd still passes.
            patch["amd"] = {"allOf": [patch["amd"], machine_flow]}
    else:
        schemas["CampaignCreate"]["not"] = {}


def _flow_names(doc: dict[str, Any], flows: list[str]) -> None:
    """A call sent to an IVR flow names one this engine has loaded (else 400 ``unknown-flow``):
    the document offers exactly those, and none at all when no flow is loaded."""
    ivr = doc["components"]["schemas"]["ThenIvr"]
    if flows:
        ivr["properties"]["flow"]["enum"] = sorted(flows)
    else:
        ivr["not"] = {}


def _token_agents(doc: dict[str, Any], agents: list[str]) -> None:
    """An agent token names a configured agent: the document offers exactly those, and
    without any agent it offers no agent role at all."""
    create = doc["components"]["schemas"].get("TokenCreate")
    if create is None:
        return
    if agents:
        create["properties"]["agent_id"]["enum"] = [*sorted(agents), None]
    else:
        create["properties"]["role"]["enum"] = [
            r for r in create["properties"]["role"]["enum"] if r != "agent"
        ]


def app_document(app: web.Application) -> dict[str, Any]:
    service = app[TRUNKS]
    acd = app.get(ACD)
    loaded = app[IVR_FLOWS]() if IVR_FLOWS in app else None
    return live_document(
        switches=list(app[CALLS].drivers),
        trunks=list(service.fleet.trunks),
        groups=list(service.fleet.groups),
        queues=sorted(acd.queues) if acd is not None else [],
        agents=acd.agent_ids() if acd is not None else [],
        flows=sorted(loaded) if loaded is not None else None,
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(app_document(request.app))
