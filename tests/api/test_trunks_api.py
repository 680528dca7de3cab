"""The trunks API and group originate with the real app, PostgreSQL and Redis,
and the Asterisk driver talking to the fake AMI that replays the recorded
carrier (dead-trunk: the recorded OriginateResponse Failure, Reason 0; other
trunks by the number's first digit)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.store.pg.pool import PgStore
from tests.api.conftest import Api
from tests.api.openapi_check import check
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config, event_log, running_engine, stored_cdrs, wait_for

TRUNKS = """
[[trunks]]
name = "dead"
switch = "asterisk-1"
target = "dead-trunk"
max_channels = 4
max_cps = 100
priority = 1

[[trunks]]
name = "good"
switch = "asterisk-1"
target = "self-trunk"
max_channels = 4
max_cps = 100
priority = 2

[[trunks]]
name = "slow"
switch = "asterisk-1"
target = "slow-trunk"
max_channels = 4
max_cps = 0.05                 # one start per 20 s: the second call must wait for a token
priority = 2

[[trunk_groups]]
name = "out"
members = ["dead", "good"]

[[trunk_groups]]
name = "waits"
members = ["dead", "slow"]
queue_timeout_s = 60

[[trunk_groups]]
name = "good-only"
members = ["good"]
queue_timeout_s = 0
"""


@pytest.fixture(scope="module")
async def tapi(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Api]:
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"tapi:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-trunks-api",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=TRUNKS,
        )
        async with running_engine(cfg) as (engine, client):
            yield Api(engine, client, ami)


async def wait_ended(api: Api, call_id: str) -> dict[str, Any]:
    final = await api.client.wait_state(call_id, "ended")
    check("/v1/calls/{call_id}", "get", 200, final)
    return final


async def test_list_and_get_trunks(tapi: Api) -> None:
    status, body, _ = await tapi.client.request("GET", "/trunks")
    assert status == 200, body
    check("/v1/trunks", "get", 200, body)
    assert [t["name"] for t in body["trunks"]] == ["dead", "good", "slow"]
    assert {g["name"]: g["members"] for g in body["groups"]} == {
        "out": ["dead", "good"],
        "waits": ["dead", "slow"],
        "good-only": ["good"],
    }
    status, one, _ = await tapi.client.request("GET", "/trunks/good")
    assert status == 200
    check("/v1/trunks/{name}", "get", 200, one)
    assert (one["target"], one["channels"]["max"], one["admin"]) == ("self-trunk", 4, "enabled")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/trunks"), ("GET", "/trunks/good"), ("POST", "/trunks/good/drain")],
)
async def test_trunk_routes_need_a_token(tapi: Api, method: str, path: str) -> None:
    status, body, _ = await tapi.client.request(method, path, token=None)
    assert (status, body["error_id"]) == (401, "missing-token")


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("POST", "/drain"), ("POST", "/enable")]
)
async def test_unknown_trunk_is_404(tapi: Api, method: str, suffix: str) -> None:
    status, body, _ = await tapi.client.request(method, f"/trunks/nope{suffix}")
    assert (status, body["error_id"]) == (404, "trunk-not-found"), body
    check("/v1/trunks/{name}" + suffix, method.lower(), 404, body)
    assert body["details"]["known"] == ["dead", "good", "slow"]


async def test_group_call_fails_over_from_the_dead_trunk(tapi: Api, pg_store: PgStore) -> None:
    async with event_log(tapi.client) as log:
        status, call, _ = await tapi.client.request(
            "POST", "/calls", json={"to": "1001", "trunk_group": "out"}
        )
        assert status == 201, call
        check("/v1/calls", "post", 201, call)
        final = await wait_ended(tapi, call["call_id"])
        await wait_for(
            lambda: any(m["event"].get("type") == "CallAttempt" for m in log), what="CallAttempt"
        )
    assert [(a["trunk"], a["verdict"]) for a in final["attempts"]] == [
        ("dead", "failover"),
        ("good", "success"),
    ]
    assert final["attempts"][0]["cause"] == 38  # OriginateResponse Failure, Reason 0
    assert final["answered_at"] is not None and final["cause"] == 16
    # The fake saw two Originates: dead-trunk with ChannelId = call id, then
    # self-trunk with the second attempt's own ChannelId.
    mine = [
        a
        for a in tapi.ami.actions_named("Originate")
        if a.headers.get("ChannelId") in {x["leg_id"] for x in final["attempts"]}
    ]
    assert [a.headers.get("Channel") for a in mine] == [
        "PJSIP/1001@dead-trunk",
        "PJSIP/1001@self-trunk",
    ]
    assert mine[0].headers.get("ChannelId") == call["call_id"]
    rows = sorted(await stored_cdrs(pg_store.pool, call["call_id"], 2), key=lambda r: r.attempt)
    assert [(r.attempt, r.trunk, r.cause) for r in rows] == [(1, "dead", 38), (2, "good", 16)]
    status, text, _ = await tapi.client.request("GET", "/metrics")
    assert 'engine_trunk_failures_total{trunk="dead"}' in text
    assert 'engine_trunk_answered_total{trunk="good"}' in text


async def test_drain_and_enable(tapi: Api) -> None:
    async with event_log(tapi.client) as log:
        status, view, _ = await tapi.client.request("POST", "/trunks/dead/drain")
        assert status == 200, view
        check("/v1/trunks/{name}/drain", "post", 200, view)
        assert view["admin"] == "drained"
        # A drained trunk takes no new calls: attempt 1 goes to the other member.
        status, call, _ = await tapi.client.request(
            "POST", "/calls", json={"to": "2001", "trunk_group": "out"}
        )
        assert status == 201, call
        final = await wait_ended(tapi, call["call_id"])
        assert [a["trunk"] for a in final["attempts"]] == ["good"]
        assert final["cause"] == 17  # busy: final, and nothing else to try anyway
        status, view, _ = await tapi.client.request("POST", "/trunks/dead/enable")
        assert status == 200
        check("/v1/trunks/{name}/enable", "post", 200, view)
        assert view["admin"] == "enabled"
        await wait_for(
            lambda: (
                [
                    m["event"]["admin"]
                    for m in log
                    if m["event"].get("type") == "TrunkStateChanged"
                    and m["event"]["trunk"] == "dead"
                ]
                == ["drained", "enabled"]
            ),
            what="TrunkStateChanged drained then enabled",
        )


async def test_every_member_drained_is_503_with_retry_after(tapi: Api) -> None:
    before = len(tapi.ami.actions_named("Originate"))
    await tapi.client.request("POST", "/trunks/good/drain")
    try:
        status, body, resp = await tapi.client.request(
            "POST", "/calls", json={"to": "1001", "trunk_group": "good-only"}
        )
    finally:
        await tapi.client.request("POST", "/trunks/good/enable")
    assert (status, body["error_id"]) == (503, "trunks-unavailable"), body
    check("/v1/calls", "post", 503, body)
    assert body["details"]["reason"] == "no-trunk-available"
    assert "good: drained" in body["details"]["detail"]
    assert int(resp.headers["Retry-After"]) >= 1
    assert len(tapi.ami.actions_named("Originate")) == before


@pytest.mark.parametrize(
    ("payload", "error_id", "fragment"),
    [
        ({"to": "1001", "trunk_group": "nope"}, "unknown-trunk-group", "no trunk group named"),
        (
            {"to": "1001", "trunk_group": "out", "trunk": "self-trunk"},
            "invalid-request",
            "got trunk, trunk_group",
        ),
        (
            {"to": "1001", "trunk_group": "out", "switch": "asterisk-1"},
            "invalid-request",
            "'switch' cannot be combined with 'trunk_group'",
        ),
    ],
)
async def test_bad_group_requests_are_400(
    tapi: Api, payload: dict[str, Any], error_id: str, fragment: str
) -> None:
    status, body, _ = await tapi.client.request("POST", "/calls", json=payload)
    assert (status, body["error_id"]) == (400, error_id), body
    check("/v1/calls", "post", 400, body)
    assert fragment in body["message"], body["message"]


def slow_originates(tapi: Api) -> list[Any]:
    return [
        a
        for a in tapi.ami.actions_named("Originate")
        if "slow-trunk" in (a.headers.get("Channel") or "")
    ]


async def test_hangup_while_waiting_for_a_trunk_between_attempts(tapi: Api) -> None:
    async def place() -> dict[str, Any]:
        status, call, _ = await tapi.client.request(
            "POST", "/calls", json={"to": "1001", "trunk_group": "waits"}
        )
        assert status == 201, call
        assert isinstance(call, dict)
        return call

    first = await wait_ended(tapi, (await place())["call_id"])
    assert [a["trunk"] for a in first["attempts"]] == ["dead", "slow"]  # slow's token is spent
    call = await place()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:  # attempt 1 failed over; "slow" has no CPS token for ~20 s: the call waits
        status, now, _ = await tapi.client.request("GET", f"/calls/{call['call_id']}")
        if [a["verdict"] for a in now["attempts"]] == ["failover"]:
            break
        assert loop.time() < deadline, now
        await asyncio.sleep(0.05)
    assert now["state"] == "dialing" and now["attempt"] == 1
    slow_before = [
        a
        for a in tapi.ami.actions_named("Originate")
        if "slow-trunk" in (a.headers.get("Channel") or "")
    ]
    status, body, _ = await tapi.client.request("DELETE", f"/calls/{call['call_id']}")
    assert status == 202, body
    final = await wait_ended(tapi, call["call_id"])
    assert (final["cause"], final["cause_text"]) == (16, "hung up while waiting for a trunk")
    await asyncio.sleep(0.3)
    slow_after = [
        a
        for a in tapi.ami.actions_named("Originate")
        if "slow-trunk" in (a.headers.get("Channel") or "")
    ]
    assert slow_after == slow_before  # nothing was dialled after the hangup
