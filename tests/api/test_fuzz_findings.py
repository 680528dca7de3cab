"""Findings of the 10-minute schemathesis runs (``scripts/fuzz-api --seconds 600``), each
replayed against the fuzz rig's engine (same trunks, group and queue) so it stays fixed.

Each test failed on the code before its fix; the run and seed that found it are named.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from scripts.fuzz_api import fuzz_engine
from tests.api.openapi_check import check
from tests.harness import Client


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
