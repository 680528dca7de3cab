"""Helpers shared by the trunk-group scenarios on both switches
(tests/integration/test_trunks.py on the real Asterisk,
tests/api/test_trunks_freeswitch.py on the fake FreeSWITCH)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api.openapi_check import check
from tests.harness import Client


async def trunk(client: Client, name: str) -> dict[str, Any]:
    status, body, _ = await client.request("GET", f"/trunks/{name}")
    assert status == 200, body
    check("/v1/trunks/{name}", "get", 200, body)
    assert isinstance(body, dict)
    return body


async def group_call(client: Client, to: str, group: str, **extra: Any) -> dict[str, Any]:
    status, body, _ = await client.request(
        "POST", "/calls", json={"to": to, "trunk_group": group, "timeout_s": 8, **extra}
    )
    assert status == 201, body
    check("/v1/calls", "post", 201, body)
    assert isinstance(body, dict)
    return body


async def finish(client: Client, call_id: str) -> dict[str, Any]:
    """Wait until the call has ended; hang up an answered one (once)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    hung_up = False
    while True:
        status, data, _ = await client.request("GET", f"/calls/{call_id}")
        assert status == 200, data
        if data["state"] == "answered" and not hung_up:
            hung_up = True
            await client.request("DELETE", f"/calls/{call_id}")
        if data["state"] == "ended":
            check("/v1/calls/{call_id}", "get", 200, data)
            assert isinstance(data, dict)
            return data
        assert loop.time() < deadline, data
        await asyncio.sleep(0.05)


def trunk_events(log: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        m["event"]
        for m in log
        if m.get("event", {}).get("type") == "TrunkStateChanged" and m["event"]["trunk"] == name
    ]


async def place_all_at_once(
    client: Client, numbers: list[str], group: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """POST every call at the same time; return (placed, refused). Every
    refusal must be the documented 503 with a Retry-After."""

    async def one(number: str) -> tuple[int, Any, str | None]:
        status, body, resp = await client.request(
            "POST", "/calls", json={"to": number, "trunk_group": group, "timeout_s": 8}
        )
        return status, body, resp.headers.get("Retry-After")

    results = await asyncio.gather(*(one(n) for n in numbers))
    placed = [b for s, b, _ in results if s == 201]
    refused = [b for s, b, _ in results if s == 503]
    assert len(placed) + len(refused) == len(numbers), [s for s, _, _ in results]
    for status, body, retry_after in results:
        if status == 503:
            check("/v1/calls", "post", 503, body)
            assert body["error_id"] == "trunks-unavailable"
            assert body["details"]["reason"] == "all-trunks-full"
            assert retry_after is not None and int(retry_after) >= 1
    return placed, refused


def assert_limits(finals: list[dict[str, Any]], *, max_per_s: int, channels: int) -> None:
    """From the engine's own attempt timestamps: never more than ``max_per_s``
    starts in any 1-second window, and exactly ``channels`` legs up at the peak."""
    starts = sorted(f["attempts"][0]["started_at"] for f in finals)
    for i, t in enumerate(starts):
        in_window = [s for s in starts[i:] if s < t + 1.0]
        assert len(in_window) <= max_per_s, f"{len(in_window)} starts within 1 s: {starts}"
    edges = sorted(
        [(f["attempts"][0]["started_at"], 1) for f in finals]
        + [(f["ended_at"], -1) for f in finals],
        key=lambda e: (e[0], e[1]),  # an end at the same instant frees the channel first
    )
    concurrent = peak = 0
    for _, delta in edges:
        concurrent += delta
        peak = max(peak, concurrent)
    assert peak == channels, edges
