"""Contacts and DNC endpoints on the running engine (real PostgreSQL), answers checked against
the OpenAPI document."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.openapi_check import check

CSV = "text/csv"
NDJSON = "application/x-ndjson"


@pytest.fixture
async def campaign(api: Api) -> str:
    assert api.engine.pg is not None
    name = f"c{uuid.uuid4().hex[:10]}"
    await api.engine.pg.pool.execute(
        "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2)",
        name,
        {"trunk_group": "outbound", "queue": "sales", "default_region": "GB"},
    )
    return name


async def test_import_csv_streamed_and_list(api: Api, campaign: str) -> None:
    rows = ["phone,name"] + [f"020 7946 {i:04d},N{i}" for i in range(3000)] + ["12,bad"]
    body = ("\n".join(rows) + "\n").encode()

    async def stream() -> AsyncIterator[bytes]:  # chunked: no Content-Length
        for i in range(0, len(body), 10_000):
            yield body[i : i + 10_000]

    path = f"/campaigns/{campaign}/contacts"
    status, report, _ = await api.client.request(
        "POST", path + "?list=spring", data=stream(), headers={"Content-Type": CSV}
    )
    assert status == 200, report
    check("/v1/campaigns/{id}/contacts", "post", 200, report)
    assert (report["rows"], report["loaded"], report["rejected"]) == (3001, 3000, 1)
    assert report["rejects"][0]["line"] == 3002 and report["rejects_total"] == 1
    status, page, _ = await api.client.request("GET", path + "?limit=2")
    assert status == 200
    check("/v1/campaigns/{id}/contacts", "get", 200, page)
    assert [c["phone"] for c in page["contacts"]] == ["+442079460000", "+442079460001"]
    assert page["contacts"][0]["fields"] == {"name": "N0"}
    assert page["contacts"][0]["list_name"] == "spring"
    seen, after = 2, page["next_after"]
    while after is not None:
        status, more, _ = await api.client.request("GET", path + f"?limit=1000&after={after}")
        assert status == 200
        seen, after = seen + len(more["contacts"]), more["next_after"]
    assert seen == 3000


async def test_import_jsonl_with_region_override(api: Api, campaign: str) -> None:
    body = b'{"phone": "(415) 555-0100", "account": 7}\n'
    status, report, _ = await api.client.request(
        "POST",
        f"/campaigns/{campaign}/contacts?region=US",
        data=body,
        headers={"Content-Type": NDJSON},
    )
    assert status == 200 and report["loaded"] == 1, report


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error_id"),
    [
        (
            "POST",
            "/campaigns/nope/contacts",
            {"data": b"phone\n", "headers": {"Content-Type": CSV}},
            404,
            "unknown-campaign",
        ),
        ("POST", "/campaigns/{c}/contacts", {"data": b"phone\n"}, 415, "unsupported-media-type"),
        # A declared charset other than UTF-8 used to be ignored: a Windows-1252 export loaded
        # up to its first accented letter, then the import stopped there.
        (
            "POST",
            "/campaigns/{c}/contacts",
            {
                "data": b"phone,name\n4155550100,Jos\xe9\n",
                "headers": {"Content-Type": "text/csv; charset=windows-1252"},
            },
            415,
            "unsupported-media-type",
        ),
        (
            "POST",
            "/campaigns/{c}/dnc",
            {
                "data": b"phone\n4155550100\n",
                "headers": {"Content-Type": "text/csv; charset=latin1"},
            },
            415,
            "unsupported-media-type",
        ),
        (
            "POST",
            "/campaigns/{c}/contacts",
            {"data": b"name\nx\n", "headers": {"Content-Type": CSV}},
            400,
            "import-failed",
        ),
        (
            "POST",
            "/campaigns/{c}/contacts?region=usa",
            {"data": b"phone\n", "headers": {"Content-Type": CSV}},
            400,
            "invalid-region",
        ),
        ("GET", "/campaigns/{c}/contacts?limit=0", {}, 400, "invalid-limit"),
        ("GET", "/campaigns/{c}/contacts?state=lost", {}, 400, "invalid-request"),
        # Found by the fuzz run: an empty state was read as "any state".
        ("GET", "/campaigns/{c}/contacts?state=", {}, 400, "invalid-request"),
        ("GET", "/campaigns/nope/dnc", {}, 404, "unknown-campaign"),
    ],
)
async def test_errors(
    api: Api,
    campaign: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    error_id: str,
) -> None:
    got, body, _ = await api.client.request(method, path.format(c=campaign), **kwargs)
    assert (got, body["error_id"]) == (status, error_id), body
    assert body["message"]


async def test_a_utf8_charset_is_taken_and_a_nul_is_a_reject_not_a_storage_error(
    api: Api, campaign: str
) -> None:
    # A NUL in a field used to reach PostgreSQL, fail the batch, and answer 503
    # storage-unavailable: a client retrying it would retry forever.
    body = b"phone,name\n020 7946 0001,A\x00n\n020 7946 0002,Bo\n"
    status, report, _ = await api.client.request(
        "POST",
        f"/campaigns/{campaign}/contacts",
        data=body,
        headers={"Content-Type": "text/csv; charset=UTF-8"},
    )
    assert status == 200, report
    check("/v1/campaigns/{id}/contacts", "post", 200, report)
    assert (report["rows"], report["loaded"], report["rejected"]) == (2, 1, 1)
    assert report["rejects"] == [
        {
            "line": 2,
            "reason": "field 'name': expected text without NUL (\\u0000) characters",
            "raw": "020 7946 0001,A\x00n",
        }
    ]


async def test_jsonl_nan_and_deep_nesting_are_rejects_not_503_or_500(
    api: Api, campaign: str
) -> None:
    # NaN reached jsonb (503 storage-unavailable); 5000 brackets crashed the parse (500).
    body = b'{"phone": "020 7946 0001", "s": NaN}\n{"phone": "020 7946 0002", "s": '
    body += b"[" * 5000 + b"]" * 5000 + b'}\n{"phone": "020 7946 0003"}\n'
    status, report, _ = await api.client.request(
        "POST", f"/campaigns/{campaign}/contacts", data=body, headers={"Content-Type": NDJSON}
    )
    assert status == 200, report
    assert (report["rows"], report["loaded"], report["rejected"]) == (3, 1, 2)
    assert [r["line"] for r in report["rejects"]] == [1, 2]


async def test_dnc_global_and_campaign(api: Api, campaign: str) -> None:
    number = f"+1212555{uuid.uuid4().int % 10000:04d}"
    status, added, _ = await api.client.request("POST", "/dnc", json={"phones": [number]})
    assert status == 200, added
    check("/v1/dnc", "post", 200, added)
    assert added["phones"] == [number]
    # The campaign's default region is GB: a national UK number without +44.
    status, added, _ = await api.client.request(
        "POST", f"/campaigns/{campaign}/dnc", json={"phones": ["020 7946 0999"]}
    )
    assert (status, added["added"], added["phones"]) == (200, 1, ["+442079460999"])
    status, listed, _ = await api.client.request("GET", f"/campaigns/{campaign}/dnc")
    check("/v1/campaigns/{id}/dnc", "get", 200, listed)
    assert [e["phone"] for e in listed["numbers"]] == ["+442079460999"]
    status, imported, _ = await api.client.request(
        "POST",
        f"/campaigns/{campaign}/dnc",
        data=b"phone\n02079460998\nbad\n",
        headers={"Content-Type": CSV},
    )
    assert (status, imported["loaded"], imported["rejected"]) == (200, 1, 1), imported
    check("/v1/campaigns/{id}/dnc", "post", 200, imported)
    status, removed, _ = await api.client.request(
        "DELETE", f"/campaigns/{campaign}/dnc", json={"phones": ["+442079460999"]}
    )
    assert (status, removed["removed"]) == (200, 1)
    check("/v1/campaigns/{id}/dnc", "delete", 200, removed)
    status, removed, _ = await api.client.request("DELETE", "/dnc", json={"phones": [number]})
    assert (status, removed["removed"]) == (200, 1)


async def test_contacts_routes_need_a_token(api: Api, campaign: str) -> None:
    status, _, _ = await api.client.request("GET", f"/campaigns/{campaign}/contacts", token=None)
    assert status == 401
