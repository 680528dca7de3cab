"""The spine end to end on the real Asterisk 22 sandbox.

Each carrier outcome is checked in the three places a user sees it: the API,
the WebSocket event stream and the CDR row in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from engine.store.pg.pool import PgStore
from tests.harness import (
    Client,
    engine_config,
    event_log,
    running_engine,
    stored_cdrs,
    wait_for,
    wait_trunk_usable,
)
from tests.integration import sandbox

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
async def live(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> AsyncIterator[tuple[Engine, Client]]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"e2e:{uuid.uuid4().hex[:8]}:",
        data_dir=store_data_dir / "engine-e2e",
    )
    async with running_engine(cfg) as pair:
        yield pair


def call_events(log: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [m["event"] for m in log if m.get("event", {}).get("call_id") == call_id]


def states(log: list[dict[str, Any]], call_id: str) -> list[str]:
    return [e["state"] for e in call_events(log, call_id) if e["type"] == "CallStateChanged"]


# number, final cause, SIP code, cause text, answered?
OUTCOMES = [
    pytest.param("1001", 16, None, "Normal Clearing", True, id="answered"),
    pytest.param("2001", 17, 486, "User busy", False, id="busy"),
    pytest.param("3001", 34, 503, "Circuit/channel congestion", False, id="congestion"),
    pytest.param("4001", 19, 480, "User alerting, no answer", False, id="no-answer"),
    pytest.param("5001", 16, None, "Normal Clearing", True, id="dtmf"),
]


@pytest.mark.parametrize(("number", "cause", "sip", "text", "answered"), OUTCOMES)
async def test_carrier_outcome(
    live: tuple[Engine, Client],
    pg_store: PgStore,
    number: str,
    cause: int,
    sip: int | None,
    text: str,
    answered: bool,
) -> None:
    _, client = live
    async with event_log(client) as log:
        call = await client.originate(number, timeout_s=5)
        call_id = call["call_id"]
        final = await client.wait_state(call_id, "ended", timeout_s=40)
        await wait_for(lambda: "ended" in states(log, call_id), what="ended event on the WebSocket")

    # API
    assert (final["cause"], final["sip_code"], final["cause_text"]) == (cause, sip, text)
    assert (final["answered_at"] is not None) is answered
    assert final["interrupted"] is False
    if number == "5001":
        assert final["dtmf"] == "1234#"

    # WebSocket: the state sequence and the same cause, in seq order
    seqs = [m["seq"] for m in log]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    seen = states(log, call_id)
    assert seen[0] == "created" and seen[-1] == "ended"
    assert ("answered" in seen) is answered
    ended = [e for e in call_events(log, call_id) if e["type"] == "CallStateChanged"][-1]
    assert (ended["cause"], ended["sip_code"]) == (cause, sip)

    # CDR
    rows = await stored_cdrs(pg_store.pool, call_id)
    assert len(rows) == 1
    row = rows[0]
    assert (row.cause, row.sip_code, row.cause_text, row.final_state) == (cause, sip, text, "ended")
    assert (row.trunk, row.destination, row.direction, row.attempt) == (
        "self-trunk",
        number,
        "outbound",
        1,
    )
    assert (row.answered_at is not None) is answered
    assert row.duration_s > 0
    assert (row.billsec_s > 0) is answered


async def test_answering_machine_is_detected(
    live: tuple[Engine, Client], pg_store: PgStore
) -> None:
    _, client = live
    async with event_log(client) as log:
        call = await client.originate(
            "6001", then={"kind": "dialplan", "context": "engine-amd", "exten": "s"}
        )
        call_id = call["call_id"]
        await wait_for(
            lambda: any(e["type"] == "AmdResult" for e in call_events(log, call_id)),
            timeout_s=30,
            what="AmdResult",
        )
        status, body, _ = await client.request("DELETE", f"/calls/{call_id}")
        assert status == 202, body
        final = await client.wait_state(call_id, "ended")
    amd = next(e for e in call_events(log, call_id) if e["type"] == "AmdResult")
    assert amd["status"] == "MACHINE"
    assert final["amd_status"] == "MACHINE"
    assert (final["cause"], final["cause_text"]) == (16, "Normal Clearing")
    rows = await stored_cdrs(pg_store.pool, call_id)
    assert rows[0].cause == 16 and rows[0].billsec_s > 0


async def test_dead_trunk_fails_without_a_channel(
    live: tuple[Engine, Client], pg_store: PgStore
) -> None:
    _, client = live
    await wait_for(
        lambda: "Unavail" in sandbox.rx("pjsip show contacts"), timeout_s=30, what="qualify"
    )
    # A raw endpoint: the trunk "dead-trunk" would be refused up front (503)
    # once the poll reported it unreachable; this test wants the failed originate.
    call = await client.originate("1001", endpoint="dead-trunk", trunk=None)
    final = await client.wait_state(call["call_id"], "ended")
    assert final["channel"] == "" and final["answered_at"] is None
    assert final["cause"] is not None and final["cause_text"]
    rows = await stored_cdrs(pg_store.pool, call["call_id"])
    assert [r.cause for r in rows] == [final["cause"]]


async def test_fastagi_session_collects_far_end_dtmf(live: tuple[Engine, Client]) -> None:
    _, client = live
    async with event_log(client) as log:
        call = await client.originate("5001", then={"kind": "ivr", "flow": "collect"})
        call_id = call["call_id"]

        def ivr_input() -> list[dict[str, Any]]:
            return [e for e in call_events(log, call_id) if e["type"] == "IvrInput"]

        await wait_for(lambda: bool(ivr_input()), timeout_s=20, what="IvrInput event")
        await client.wait_state(call_id, "ended")
    assert ivr_input()[0]["digits"] == "1234"
    assert ivr_input()[0]["variable"] == "code"
    assert (
        next(e["type"] for e in call_events(log, call_id) if e["type"].startswith("Ivr"))
        == "IvrStarted"
    )


async def test_hangup_redirect_and_dtmf_on_a_live_call(live: tuple[Engine, Client]) -> None:
    _, client = live
    call = await client.originate("7001")  # answers, then ~12 s of audio
    call_id = call["call_id"]
    await client.wait_state(call_id, "answered")
    status, body, _ = await client.request("POST", f"/calls/{call_id}/dtmf", json={"digits": "12#"})
    assert status == 202, body
    status, body, _ = await client.request(
        "POST", f"/calls/{call_id}/redirect", json={"then": {"kind": "park"}}
    )
    assert status == 202, body
    status, body, _ = await client.request("DELETE", f"/calls/{call_id}")
    assert status == 202, body
    final = await client.wait_state(call_id, "ended")
    assert final["cause"] == 16
    status, body, _ = await client.request("DELETE", f"/calls/{call_id}")
    assert (status, body["error_id"]) == (409, "call-ended")


@pytest.mark.parametrize("how", ["graceful", "crash"])
async def test_asterisk_restart_mid_call(
    live: tuple[Engine, Client], pg_store: PgStore, how: str
) -> None:
    engine, client = live
    async with event_log(client) as log:
        call = await client.originate("7001")
        call_id = call["call_id"]
        await client.wait_state(call_id, "answered")
        restarted_at = time.time()
        await asyncio.to_thread(sandbox.restart if how == "graceful" else sandbox.crash_restart)
        final = await client.wait_state(call_id, "ended", timeout_s=30)
        await engine.wait_until_up(60)
        await wait_for(
            lambda: any(m["event"]["type"] == "Resynced" for m in log), what="Resynced event"
        )
        # Give a wrongly re-sent originate time to show up before looking for it.
        await asyncio.sleep(3)
    link_states = [m["event"]["state"] for m in log if m["event"]["type"] == "LinkChanged"]
    assert link_states[0] == "down" and link_states[-1] == "up"
    created = [e for e in call_events(log, call_id) if e["type"] == "ChannelCreated"]
    assert len(created) <= 1, "the originate must never be re-sent after a reconnect"
    assert final["ended_at"] is not None and final["answered_at"] is not None
    rows = await stored_cdrs(pg_store.pool, call_id)
    assert len(rows) == 1
    assert rows[0].answered_at is not None and rows[0].billsec_s > 0
    if how == "crash":
        # No Hangup ever came: the resync found the channel gone.
        assert rows[0].interrupted and rows[0].cause is None
        assert "link lost" in rows[0].cause_text
    else:
        # Asterisk hung the channel up itself and said so before closing AMI.
        assert not rows[0].interrupted and rows[0].cause is not None
    # The engine takes new work again after the resync (once qualify has
    # found the trunk reachable again: every trunk call goes through its health).
    await wait_trunk_usable(client, "self-trunk", since=restarted_at)
    after = await client.originate("2001")
    assert (await client.wait_state(after["call_id"], "ended"))["cause"] == 17
