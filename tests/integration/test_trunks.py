"""Trunk groups end to end on the real Asterisk 22 sandbox.

Trunks (telephony-config/asterisk/pjsip.conf): dead-trunk (nothing listens,
qualify says Unavailable), congested-trunk (the carrier answers every INVITE
with 503 until `set_congested_mode("answer")`), self-trunk (the good loopback)
and limit-trunk (the same loopback, with its own limits in the engine).
Every scenario is checked where a user sees it: the API (call attempts,
GET /v1/trunks), the WebSocket and the CDR rows (one per attempt).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from engine.app import Engine
from engine.store.pg.pool import PgStore
from tests.harness import Client, engine_config, event_log, running_engine, stored_cdrs, wait_for
from tests.integration import sandbox
from tests.trunk_helpers import (
    assert_limits,
    finish,
    group_call,
    place_all_at_once,
    trunk,
    trunk_events,
)

pytestmark = pytest.mark.asterisk

# Short breaker timings so the scenarios run in seconds.
TRUNKS = """
[trunk_health]
poll_interval_s = 1.0

[[trunks]]
name = "dead-trunk"
switch = "asterisk-1"
target = "dead-trunk"
max_channels = 10
max_cps = 20
priority = 1

[[trunks]]
name = "congested-trunk"
switch = "asterisk-1"
target = "congested-trunk"
max_channels = 10
max_cps = 20
priority = 2
  [trunks.breaker]
  failure_threshold = 2
  cooldown_s = 2.0
  max_cooldown_s = 4.0
  close_after = 1

[[trunks]]
name = "self-trunk"
switch = "asterisk-1"
target = "self-trunk"
max_channels = 50
max_cps = 50
priority = 3

[[trunks]]
name = "limit-trunk"
switch = "asterisk-1"
target = "limit-trunk"
max_channels = 5
max_cps = 2
priority = 10

[[trunk_groups]]
name = "main"
members = ["dead-trunk", "congested-trunk", "self-trunk"]
max_attempts = 3

[[trunk_groups]]
name = "callee-decides"
members = ["self-trunk", "limit-trunk"]

[[trunk_groups]]
name = "limited"
members = ["limit-trunk"]
queue_timeout_s = 6.0
"""


@pytest.fixture(scope="module")
async def live(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> AsyncIterator[tuple[Engine, Client]]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    await asyncio.to_thread(sandbox.set_congested_mode, "503")
    # An earlier test may have restarted Asterisk: start from qualified trunks.
    await asyncio.to_thread(sandbox.wait_qualified)
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"trunks:{uuid.uuid4().hex[:8]}:",
        data_dir=store_data_dir / "engine-trunks",
        extra=TRUNKS,
    )
    try:
        async with running_engine(cfg) as pair:
            yield pair
    finally:
        await asyncio.to_thread(sandbox.set_congested_mode, "503")


async def test_qualify_marks_the_dead_trunk_down(live: tuple[Engine, Client]) -> None:
    _, client = live

    async def dead_state() -> str:
        return str((await trunk(client, "dead-trunk"))["state"])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while await dead_state() != "down":
        assert loop.time() < deadline, await trunk(client, "dead-trunk")
        await asyncio.sleep(0.2)
    view = await trunk(client, "dead-trunk")
    assert view["reachability"]["status"] == "unreachable"
    assert view["breaker"]["phase"] == "open" and view["breaker"]["reason"] == "unreachable"
    status, text, _ = await client.request("GET", "/metrics")
    assert status == 200
    assert 'engine_trunk_state{state="down",trunk="dead-trunk"} 1.0' in text
    # The loopback trunks answer OPTIONS: reachable.
    assert (await trunk(client, "self-trunk"))["reachability"]["status"] == "reachable"
    assert (await trunk(client, "congested-trunk"))["reachability"]["status"] == "reachable"


async def test_failover_completes_on_the_good_trunk(
    live: tuple[Engine, Client], pg_store: PgStore
) -> None:
    _, client = live
    assert (await trunk(client, "dead-trunk"))["state"] == "down"
    before = (await trunk(client, "congested-trunk"))["counters"]["attempts"]
    async with event_log(client) as log:
        call = await group_call(client, "1001", "main")
        call_id = call["call_id"]
        final = await finish(client, call_id)
        await wait_for(
            lambda: any(
                m["event"].get("call_id") == call_id and m["event"].get("state") == "ended"
                for m in log
            ),
            what="ended on the WebSocket",
        )
    # API: attempt 1 on the congested trunk (503 -> failover), attempt 2 answered on self-trunk.
    attempts = final["attempts"]
    assert [a["trunk"] for a in attempts] == ["congested-trunk", "self-trunk"], attempts
    assert [a["verdict"] for a in attempts] == ["failover", "success"]
    assert (attempts[0]["cause"], attempts[0]["sip_code"]) == (34, 503)
    assert attempts[0]["leg_id"] == call_id and attempts[1]["leg_id"] != call_id
    assert final["attempt"] == 2 and final["trunk"] == "self-trunk"
    assert final["answered_at"] is not None and final["trunk_failure"] == ""
    assert (await trunk(client, "congested-trunk"))["counters"]["attempts"] == before + 1
    assert (await trunk(client, "dead-trunk"))["counters"]["attempts"] == 0

    # WebSocket: one call id throughout; the failed attempt did not end the call.
    mine = [m["event"] for m in log if m["event"].get("call_id") == call_id]
    states = [e["state"] for e in mine if e["type"] == "CallStateChanged"]
    assert states.count("ended") == 1 and states[-1] == "ended"
    assert "answered" in states
    failover = [e for e in mine if e["type"] == "CallAttempt"]
    assert len(failover) == 1 and failover[0]["trunk"] == "congested-trunk"
    assert failover[0]["next"]["trunk"] == "self-trunk"
    assert {e.get("attempt") for e in mine if e["type"] == "HungUp"} == {1, 2}

    # CDR: one row per attempt.
    rows = await stored_cdrs(pg_store.pool, call_id, 2)
    rows = sorted(rows, key=lambda r: r.attempt)
    assert [(r.attempt, r.trunk) for r in rows] == [(1, "congested-trunk"), (2, "self-trunk")]
    assert (rows[0].cause, rows[0].sip_code, rows[0].answered_at) == (34, 503, None)
    assert rows[1].answered_at is not None and rows[1].billsec_s > 0
    assert rows[0].started_at <= rows[1].started_at


async def test_breaker_opens_on_congestion_and_closes_once_repaired(
    live: tuple[Engine, Client],
) -> None:
    _, client = live
    async with event_log(client) as log:
        # failure_threshold = 2: failover calls until the congested trunk's breaker opens.
        for _ in range(3):
            if (await trunk(client, "congested-trunk"))["state"] == "down":
                break
            final = await finish(client, (await group_call(client, "1001", "main"))["call_id"])
            assert final["attempts"][-1]["trunk"] == "self-trunk"
        view = await trunk(client, "congested-trunk")
        assert view["state"] == "down", view
        assert view["breaker"]["reason"] == "consecutive-failures"
        assert (view["last_failure"]["cause"], view["last_failure"]["sip_code"]) == (34, 503)
        assert view["reachability"]["status"] == "reachable"  # OPTIONS fine, INVITEs 503

        # While open it is not tried: the call goes straight to the good trunk.
        opened = view["breaker"]["times_opened"]
        final = await finish(client, (await group_call(client, "1001", "main"))["call_id"])
        if (await trunk(client, "congested-trunk"))["breaker"]["times_opened"] == opened:
            assert [a["trunk"] for a in final["attempts"]] in (
                ["self-trunk"],
                ["congested-trunk", "self-trunk"],  # cooldown (2 s) may already be over
            )

        # Repair the carrier; after the cooldown a live call probes it and closes the breaker.
        await asyncio.to_thread(sandbox.set_congested_mode, "answer")
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 40
            while (await trunk(client, "congested-trunk"))["state"] != "up":
                assert loop.time() < deadline, await trunk(client, "congested-trunk")
                if (await trunk(client, "congested-trunk"))["state"] == "probing":
                    probe = await finish(
                        client, (await group_call(client, "1001", "main"))["call_id"]
                    )
                    first = probe["attempts"][0]
                    assert first["trunk"] == "congested-trunk"
                    if first["verdict"] == "success":
                        assert first["probe"] is True
                await asyncio.sleep(0.2)
        finally:
            await asyncio.to_thread(sandbox.set_congested_mode, "503")
        await wait_for(
            lambda: [e["state"] for e in trunk_events(log, "congested-trunk")][-1:] == ["up"],
            what="TrunkStateChanged up",
        )
    seen = [e["state"] for e in trunk_events(log, "congested-trunk")]
    # down (opened by calls) -> probing (cooldown over) -> ... -> up (probe answered)
    assert "down" in seen and "probing" in seen and seen[-1] == "up", seen
    assert seen.index("down") < seen.index("probing")
    assert all(e["switch"] == "asterisk-1" for e in trunk_events(log, "congested-trunk"))


@asynccontextmanager
async def far_legs(number: str) -> AsyncIterator[list[str]]:
    """Every time the loopback carrier's far end rang ``number`` while the block ran, from
    Asterisk's own AMI (an inbound ``Newchannel`` in ``from-trunk``): the callee's side of
    the story, independent of what the engine concluded."""
    ami = await sandbox.RawAmi.connect()
    assert (await ami.login()).response == "Success"
    rang: list[str] = []

    async def pump() -> None:
        while True:
            m = await ami.read(within=3600)
            if (m.event, m.get("Context"), m.get("Exten")) == ("Newchannel", "from-trunk", number):
                rang.append(m.get("Uniqueid") or "")

    task = asyncio.create_task(pump())
    try:
        yield rang
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await ami.close()


@pytest.mark.parametrize(
    ("number", "cause", "sip"),
    [pytest.param("2001", 17, 486, id="busy-486"), pytest.param("9001", 21, 603, id="decline-603")],
)
async def test_callee_verdict_is_never_retried_on_another_trunk(
    live: tuple[Engine, Client], pg_store: PgStore, number: str, cause: int, sip: int
) -> None:
    _, client = live
    other = (await trunk(client, "limit-trunk"))["counters"]["attempts"]
    async with far_legs(number) as rang:
        final = await finish(
            client, (await group_call(client, number, "callee-decides"))["call_id"]
        )
        # Give a wrong failover time to show up before checking it did not happen.
        await asyncio.sleep(1.0)
    attempts = final["attempts"]
    assert (final["cause"], final["sip_code"]) == (cause, sip), final
    # The callee rang once and its verdict ended the call: never re-rung elsewhere.
    assert len(rang) == 1, (rang, attempts)
    assert (attempts[-1]["verdict"], attempts[-1]["sip_code"]) == ("final", sip), attempts
    # An earlier attempt is allowed only as a trunk failure that never reached the callee
    # (the far leg count above): on a loaded box Asterisk may refuse the loopback leg (an
    # OPTIONS ping lost marks self-trunk Unavailable for a few seconds) or answer 503 while a
    # task processor is overloaded. Normally there is none.
    assert attempts[0]["trunk"] == "self-trunk", attempts
    for a in attempts[:-1]:
        assert a["verdict"] == "failover" and a["sip_code"] != sip, attempts
    assert final["attempt"] == len(attempts)
    rows = await stored_cdrs(pg_store.pool, final["call_id"])
    assert [(r.attempt, r.trunk) for r in rows] == [(a["attempt"], a["trunk"]) for a in attempts]
    assert rows[-1].cause == cause
    on_limit = sum(1 for a in attempts if a["trunk"] == "limit-trunk")
    assert (await trunk(client, "limit-trunk"))["counters"]["attempts"] == other + on_limit


async def test_channel_and_cps_limits_hold_under_20_calls_at_once(
    live: tuple[Engine, Client], pg_store: PgStore
) -> None:
    _, client = live
    placed, refused = await place_all_at_once(client, [f"10{i:02d}" for i in range(20)], "limited")
    # 5 channels, calls last >= 3 s, queue timeout 6 s: some must be refused.
    assert len(placed) >= 5 and refused
    finals = [await finish(client, b["call_id"]) for b in placed]
    assert_limits(finals, max_per_s=2, channels=5)

    for f in finals:
        rows = await stored_cdrs(pg_store.pool, f["call_id"])
        assert [(r.attempt, r.trunk) for r in rows] == [(1, "limit-trunk")]
    view = await trunk(client, "limit-trunk")
    assert view["channels"] == {"in_use": 0, "max": 5}
