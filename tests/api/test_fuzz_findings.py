"""Findings of the 10-minute schemathesis runs (``scripts/fuzz-api --seconds 600``), each
replayed against the fuzz rig's engine (same trunks, group and queue) so it stays fixed.

Each test failed on the code before its fix; the run and seed that found it are named.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from scripts.fuzz_api import fuzz_engine
from tests.api.openapi_check import DOC, check
from tests.harness import TOKEN, Client


@pytest.fixture(scope="module")
async def client(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Client]:
    async with (
        fuzz_engine(
            store_data_dir / "engine-fuzz-findings", pg_dsn=pg_dsn, redis_url=redis_url
        ) as engine,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, f"http://127.0.0.1:{engine.api_port}/v1")


async def _campaign(client: Client) -> str:
    name = f"fz{uuid.uuid4().hex[:8]}"
    body = {"name": name, "spec": {"trunk_group": "sandbox-outbound", "queue": "fuzz-queue"}}
    status, data, _ = await client.request("POST", "/campaigns", json=body)
    assert status == 201, data
    return str(data["id"])


@pytest.mark.parametrize("key", ["", "powr_ratio"])
async def test_patch_campaign_null_for_an_unknown_field_is_refused(
    client: Client, key: str
) -> None:
    # Run 1 (seed 109048839779891329101026157804932459926): PATCH /v1/campaigns/{id} with
    # {"": null} answered 200. A merge patch's null removed the name from the settings, and a
    # name they never held went away silently, while CampaignPatch has additionalProperties
    # false: a typo such as {"powr_ratio": null} reset nothing and looked applied.
    campaign_id = await _campaign(client)
    path = f"/campaigns/{campaign_id}"
    status, body, _ = await client.request("PATCH", path, json={key: None})
    assert (status, body["error_id"]) == (400, "invalid-campaign"), body
    check("/v1/campaigns/{id}", "patch", 400, body)
    # A known field's null still puts it back to its default.
    status, body, _ = await client.request("PATCH", path, json={"power_ratio": 3.0})
    assert (status, body["spec"]["power_ratio"]) == (200, 3.0), body
    status, body, _ = await client.request("PATCH", path, json={"power_ratio": None})
    assert status == 200, body
    check("/v1/campaigns/{id}", "patch", 200, body)
    assert body["spec"]["power_ratio"] == 2.0  # the default


def _operations() -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, item in DOC["paths"].items()
        for method in item
        if method != "parameters"
    ]


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: str(v))
async def test_every_operation_documents_its_undeclared_query_400(
    client: Client, method: str, path: str
) -> None:
    # Commit 80e311f made every route refuse a query parameter its operation does not declare
    # (400 invalid-query), but 34 operations documented no 400 (GET /v1/health, /v1/calls,
    # /v1/trunks/{name}, the docs and wallboard pages...): schemathesis' status_code_conformance
    # would report GET /v1/calls?Z=null as an undocumented status.
    root = client.base.removesuffix("/v1")
    url = root + re.sub(r"\{[^}]*\}", "1", path) + "?zz-undeclared=1"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with client.http.request(method.upper(), url, headers=headers) as r:
        status, body = r.status, await r.json(content_type=None)
    assert (status, body["error_id"]) == (400, "invalid-query"), body
    assert body["details"]["parameter"] == "zz-undeclared"
    check(path, method, 400, body)
