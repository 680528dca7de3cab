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

import aiohttp
import pytest

from engine.core.errors import PbxUnavailable
from engine.store.pg.pool import PgStore
from tests.api.conftest import Api
from tests.api.openapi_check import check
from tests.drill_report import report_drill
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import (
    TOKEN,
    engine_config,
    event_log,
    running_engine,
    stored_cdrs,
    wait_for,
)
from tests.trunk_helpers import finish, group_call, trunk

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
    # Give a wrong dial after the hangup time to show up before checking it did not happen.
    await asyncio.sleep(0.3)
    slow_after = [
        a
        for a in tapi.ami.actions_named("Originate")
        if "slow-trunk" in (a.headers.get("Channel") or "")
    ]
    assert slow_after == slow_before  # nothing was dialled after the hangup


async def test_a_plain_trunk_must_be_configured(tapi: Api) -> None:
    before = len(tapi.ami.actions_named("Originate"))
    status, body, _ = await tapi.client.request(
        "POST", "/calls", json={"to": "1001", "trunk": "self-trunk-typo"}
    )
    assert (status, body["error_id"]) == (404, "trunk-not-found"), body
    check("/v1/calls", "post", 404, body)
    assert body["details"]["known"] == ["dead", "good", "slow"]
    assert len(tapi.ami.actions_named("Originate")) == before


async def test_a_plain_trunk_call_goes_through_the_trunk_limits(tapi: Api) -> None:
    # Issue 8 defect 5: a plain "trunk" skipped TrunkService (no drain, no
    # limits, no counters). Now a drained trunk refuses it...
    before = len(tapi.ami.actions_named("Originate"))
    await tapi.client.request("POST", "/trunks/good/drain")
    try:
        status, body, resp = await tapi.client.request(
            "POST", "/calls", json={"to": "1001", "trunk": "good"}
        )
    finally:
        await tapi.client.request("POST", "/trunks/good/enable")
    assert (status, body["error_id"]) == (503, "trunks-unavailable"), body
    check("/v1/calls", "post", 503, body)
    assert body["details"]["trunk"] == "good" and "drained" in body["details"]["detail"]
    assert int(resp.headers["Retry-After"]) >= 1
    assert len(tapi.ami.actions_named("Originate")) == before
    # ...and an accepted one is counted on the trunk and dialled through its target.
    attempts = (await trunk(tapi.client, "good"))["counters"]["attempts"]
    status, call, _ = await tapi.client.request(
        "POST", "/calls", json={"to": "1001", "trunk": "good"}
    )
    assert status == 201, call
    check("/v1/calls", "post", 201, call)
    assert (call["trunk"], call["trunk_group"]) == ("good", None)
    assert (await trunk(tapi.client, "good"))["counters"]["attempts"] == attempts + 1
    sent = tapi.ami.actions_named("Originate")[-1]
    assert sent.headers.get("Channel") == "PJSIP/1001@self-trunk"
    await finish(tapi.client, call["call_id"])
    await wait_for(
        lambda: (
            tapi.engine.trunks is not None
            and tapi.engine.trunks.view("good")["channels"]["in_use"] == 0
        ),
        what="the channel is released",
    )


LINK_TRUNKS = """
[[switches]]
kind = "freeswitch"
name = "freeswitch-1"
host = "{host}"
port = {port}
password = "{password}"
outbound_bind = "127.0.0.1:0"

[[trunks]]
name = "ast-a"
switch = "asterisk-1"
target = "self-trunk"
max_channels = 10
max_cps = 100
cps_burst = 10
priority = 1
  [trunks.breaker]
  failure_threshold = 1

[[trunks]]
name = "ast-b"
switch = "asterisk-1"
target = "congested-trunk"
max_channels = 10
max_cps = 100
cps_burst = 10
priority = 2
  [trunks.breaker]
  failure_threshold = 1

[[trunks]]
name = "fs"
switch = "freeswitch-1"
target = "carrier"
max_channels = 10
max_cps = 100
cps_burst = 10
priority = 3

[[trunk_groups]]
name = "both"
members = ["ast-a", "ast-b", "fs"]

[[trunk_groups]]
name = "ast-only"
members = ["ast-a", "ast-b"]
"""


async def test_a_link_drop_fails_over_to_another_switch_without_opening_breakers(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    # Issue 8 defect 5: an originate that could not be written (link down)
    # was fed to the planner as a carrier failure (cause 38): with
    # failure_threshold = 1 it opened the breaker of every trunk of the switch.
    async with CarrierFakeAmi() as ami, FakeFreeSwitch() as fs:
        extra = LINK_TRUNKS.format(host=fs.host, port=fs.port, password=fs.password)
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"link:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-link-drop",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=extra,
        )
        async with running_engine(cfg) as (engine, client):
            # 1. The link drops between the trunk choice and the write: the
            #    driver says "unavailable" while its state still read "up".
            driver = engine.drivers["asterisk-1"]
            real = driver.originate

            async def dropped(request: Any) -> None:
                raise PbxUnavailable("asterisk-1: link lost")

            driver.originate = dropped  # type: ignore[method-assign]
            try:
                call = await group_call(client, "61001", "both")
                final = await finish(client, call["call_id"])
            finally:
                driver.originate = real  # type: ignore[method-assign]
            assert [(a["trunk"], a["verdict"]) for a in final["attempts"]] == [
                ("ast-a", "not-placed"),
                ("fs", "success"),
            ], final["attempts"]
            for name in ("ast-a", "ast-b"):
                view = await trunk(client, name)
                assert view["state"] == "up", view
                assert view["breaker"]["times_opened"] == 0
                assert view["window"]["failures"] == 0
                assert view["channels"]["in_use"] == 0
            # 2. The link is down for good: nothing to fail over to -> 503,
            #    and still no carrier's breaker learns anything.
            await ami.stop()
            await wait_for(lambda: driver.state.value != "up", what="link down")
            for _ in range(3):
                status, body, resp = await client.request(
                    "POST", "/calls", json={"to": "1001", "trunk_group": "ast-only"}
                )
                assert (status, body["error_id"]) == (503, "switch-unavailable"), body
                check("/v1/calls", "post", 503, body)
                assert int(resp.headers["Retry-After"]) >= 1
            status, body, _ = await client.request(
                "POST", "/calls", json={"to": "61001", "trunk_group": "both"}
            )
            assert status == 201, body  # the FreeSWITCH trunk still takes calls
            await finish(client, body["call_id"])
            for name in ("ast-a", "ast-b"):
                view = await trunk(client, name)
                assert view["state"] == "up" and view["breaker"]["times_opened"] == 0, view


BURST_TRUNK = """
[[trunks]]
name = "burst"
switch = "asterisk-1"
target = "self-trunk"
max_channels = 20
max_cps = 10
"""
BURST = 1000


async def test_drill7_a_burst_of_1000_calls_on_one_trunk(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    # Issue 8 fault drill 7 (first half): 1,000 concurrent POST /v1/calls on
    # one trunk. No 5xx but 503 with Retry-After, the daemon stays up, and
    # the trunk's limits hold exactly. Each call stays up 3 s at the switch,
    # so the channel limit (20) binds as well as the CPS limit (10/s).
    async with CarrierFakeAmi(hold_s=3.0) as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"burst:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-burst",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=BURST_TRUNK,
        )
        async with running_engine(cfg) as (engine, client):
            headers = {"Authorization": f"Bearer {TOKEN}"}
            body = {"to": "1001", "trunk": "burst", "timeout_s": 30}
            # One connection per request: all 1,000 are in the server at once.
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def one() -> tuple[int, dict[str, Any], str | None]:
                    async with http.post(client.base + "/calls", json=body, headers=headers) as r:
                        return r.status, await r.json(), r.headers.get("Retry-After")

                started = asyncio.get_running_loop().time()
                results = await asyncio.gather(*(one() for _ in range(BURST)))
                burst_s = asyncio.get_running_loop().time() - started

            statuses = sorted({status for status, _, _ in results})
            assert statuses in ([201, 503], [201]), statuses
            placed = [data for status, data, _ in results if status == 201]
            refused = [(data, retry) for status, data, retry in results if status == 503]
            for data, retry in refused:
                assert data["error_id"] == "trunks-unavailable", data
                assert data["details"]["reason"] == "all-trunks-full", data
                assert retry is not None and int(retry) >= 1
            assert len(placed) + len(refused) == BURST
            # The daemon is still up and serving.
            status, health, _ = await client.request("GET", "/health", token=None)
            assert status == 200, health
            # Channels, counted by the switch: never more calls up than max_channels.
            assert len(ami.actions_named("Originate")) == len(placed)
            assert ami.max_in_flight() <= 20, ami.max_in_flight()
            # CPS, on the engine's own start stamps (the instant the limiter
            # let each attempt through): any 11 consecutive starts span >= 1 s.
            # (The switch's receive times carry event-loop jitter, which can
            # bunch two writes together; they are not a fair clock for this.)
            starts = sorted(c["attempts"][0]["started_at"] for c in placed)
            spans = [b - a for a, b in zip(starts, starts[10:], strict=False)]
            report_drill(
                "7-call-burst",
                "7: 1,000 concurrent POST /v1/calls on one trunk (20 channels, 10 cps)",
                {
                    "requests": BURST,
                    "placed": len(placed),
                    "refused_503": len(refused),
                    "other_statuses": len(results) - len(placed) - len(refused),
                    "peak_channels_in_use": ami.max_in_flight(),
                    "min_span_of_11_starts_s": round(min(spans), 3) if spans else None,
                    "burst_s": round(burst_s, 1),
                },
            )
            assert not spans or min(spans) >= 1.0 - 1e-3, min(spans)
            # Every call ends; every channel comes back.
            await wait_for(
                lambda: (
                    engine.trunks is not None
                    and engine.trunks.view("burst")["channels"]["in_use"] == 0
                ),
                timeout_s=30,
                what="all channels released",
            )
