"""Issue 4's trunk-group scenarios on FreeSWITCH: the whole engine against the fake
FreeSWITCH replaying the recorded carrier (tests/fakes/fake_esl.py).

The same scenarios as tests/integration/test_trunks.py (Asterisk), with sofia gateways as
trunks (``target`` = gateway name):

- fs-dead -> ``rig_down_reg``: nothing listens; originate answers ``-ERR GATEWAY_DOWN`` and
  ``sofia status gateway`` (recorded) shows it FAIL_WAIT, which the driver reports as
  unreachable at every (re)connect.
- fs-congested -> ``congested``: every INVITE gets the recorded 503 until ``fs.repair``.
- fs-good -> ``carrier``: the recorded number plan (61XXX answers, 62XXX busy 486).
- fs-limited -> ``limited``: the same plan, with its own limits in the engine.
- fs-ping-dead -> ``rig_down``: dead too, but a ping-only gateway (no registration); the
  recorded table shows it NOREG, which says nothing about reachability, so the engine only
  learns it is dead from the GATEWAY_DOWN outcome of a call.

Each scenario is checked where a user sees it: the API, the WebSocket and the CDR rows (one
per attempt).

On a real FreeSWITCH: set ``ENGINE_TEST_FREESWITCH=host:port:password`` (as for the contract
suite) on a switch with telephony-config/freeswitch loaded (gateways ``carrier``,
``rig_down``, ``rig_down_reg``; see tests/fixtures/freeswitch-1.10/README.md). The rig has
one answering gateway and none that answers 503 to every number, and the engine allows one
trunk per gateway: there ``fs-congested`` and ``fs-limited`` do not exist, ``fs-good``
carries the limits, and the two congestion scenarios are skipped with the reason. The
engine's link to the switch always runs through a LinkProxy, so what the switch received is
read from the proxy, on the fake and on the real switch alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from engine.store.pg.pool import PgStore
from tests.contract.drivers import FS_ENV, _parse_fs_env
from tests.contract.link_proxy import LinkProxy
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import (
    Client,
    engine_config,
    event_log,
    freeswitch_switch_toml,
    running_engine,
    stored_cdrs,
    wait_for,
)
from tests.trunk_helpers import (
    assert_limits,
    finish,
    group_call,
    place_all_at_once,
    trunk,
    trunk_events,
)

SWITCH = "freeswitch-1"
# Recorded timings x 0.05: an answered 61XXX call rings 50 ms and lasts 250 ms.
FAST = 0.05

#: host:port:password of a real FreeSWITCH, or None: the fake.
REAL = _parse_fs_env(os.environ[FS_ENV].strip()) if os.environ.get(FS_ENV, "").strip() else None
#: The trunk whose limits bind (5 channels, 2 calls/s), and a trunk that must NOT be tried
#: after a busy callee. On the fake both are "limited", a gateway of its own. The real rig
#: has one answering gateway ("carrier"), and the engine allows one trunk per gateway
#: (limits are per carrier connection): there fs-good carries the limits itself and the
#: ping-only dead trunk, second in a round-robin group, is the one that must not be tried.
LIMITED = "fs-limited" if REAL is None else "fs-good"
NOT_RETRIED = "fs-limited" if REAL is None else "fs-ping-dead"
GATEWAYS = {
    "fs-dead": "rig_down_reg",
    "fs-congested": "congested",
    "fs-good": "carrier",
    "fs-limited": "limited",
    "fs-ping-dead": "rig_down",
}
needs_fake = pytest.mark.skipif(
    REAL is not None,
    reason="needs a carrier that answers 503 to every number until repaired: the real rig "
    "has none (its 503 carrier decides by number, 63XXX)",
)

_BREAKER = """  [trunks.breaker]
  failure_threshold = 2
  cooldown_s = 1.0
  max_cooldown_s = 2.0
  close_after = 1
"""


def _trunk(name: str, max_channels: int, max_cps: int, priority: int, extra: str = "") -> str:
    return f"""
[[trunks]]
name = "{name}"
switch = "{SWITCH}"
target = "{GATEWAYS[name]}"
max_channels = {max_channels}
max_cps = {max_cps}
priority = {priority}
{extra}"""


def _trunks_toml() -> str:
    head = "\n[trunk_health]\npoll_interval_s = 1.0\n"
    if REAL is None:
        trunks = [
            _trunk("fs-dead", 10, 20, 1),
            _trunk("fs-congested", 10, 20, 2, _BREAKER),
            _trunk("fs-good", 50, 50, 3),
            _trunk("fs-limited", 5, 2, 10),
            _trunk("fs-ping-dead", 10, 20, 1),
        ]
        main = '["fs-dead", "fs-congested", "fs-good"]'
    else:
        trunks = [
            _trunk("fs-dead", 10, 20, 1),
            _trunk("fs-good", 5, 2, 3),
            _trunk("fs-ping-dead", 10, 20, 1),
        ]
        main = '["fs-dead", "fs-good"]'
    groups = f"""
[[trunk_groups]]
name = "main"
members = {main}
max_attempts = 3

[[trunk_groups]]
name = "callee-decides"
members = ["fs-good", "{NOT_RETRIED}"]
selection = "round_robin"

[[trunk_groups]]
name = "limited"
members = ["{LIMITED}"]
queue_timeout_s = 4.0

[[trunk_groups]]
name = "ping-only"
members = ["fs-ping-dead", "fs-good"]
"""
    return head + "".join(trunks) + groups


TRUNKS = _trunks_toml()


@dataclass
class Live:
    engine: Engine
    client: Client
    #: The fake FreeSWITCH, or None on a real switch.
    fs: FakeFreeSwitch | None
    #: Between the engine and the switch: what the switch received.
    proxy: LinkProxy

    def originates(self, gateway: str | None = None, number: str | None = None) -> list[str]:
        """The originate commands the switch received (through ``gateway``, to
        ``number``, when given), in order, read from the bytes on the wire."""
        gw = re.escape(gateway) if gateway is not None else "[^/]+"
        num = re.escape(number) if number is not None else r"[^\s/]+"
        pattern = re.compile(rf"sofia/gateway/{gw}/{num}(?:\s|$)")
        sent = [m.lstrip("\n") for m in self.proxy.sent_text().split("\n\n")]
        return [m for m in sent if m.startswith("bgapi originate ") and pattern.search(m)]

    @property
    def fake(self) -> FakeFreeSwitch:
        assert self.fs is not None, "this scenario needs the fake (see needs_fake)"
        return self.fs


@contextlib.asynccontextmanager
async def _peer() -> AsyncIterator[tuple[FakeFreeSwitch | None, str, int, str]]:
    if REAL is not None:
        host, port, password = REAL
        yield None, host, port, password
        return
    async with FakeFreeSwitch(time_scale=FAST) as fs:
        yield fs, fs.host, fs.port, fs.password


@pytest.fixture(scope="module")
async def live(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Live]:
    async with CarrierFakeAmi() as ami, _peer() as (fs, host, port, password):
        proxy = LinkProxy(host, port)
        await proxy.start()
        extra = f"""{freeswitch_switch_toml(SWITCH, proxy.host, proxy.port, password)}{TRUNKS}
"""
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"fstrunks:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-fs-trunks",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=extra,
        )
        try:
            async with running_engine(cfg) as (engine, client):
                yield Live(engine, client, fs, proxy)
        finally:
            await proxy.stop()


async def trunk_when(
    client: Client,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout_s: float = 20.0,
) -> dict[str, Any]:
    """The trunk's view once ``check`` holds: gateway reports are queued events, so the
    view may lag the switch by a moment (a condition, not a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        view = await trunk(client, name)
        if check(view):
            return view
        if loop.time() > deadline:
            raise AssertionError(f"{name}: timed out waiting for {what}; last view {view}")
        await asyncio.sleep(0.05)


async def test_switch_report_marks_the_dead_gateway_down(live: Live) -> None:
    client = live.client
    # The driver reads `sofia status gateway` at connect, before the link is UP; the
    # TrunkStatus events it emits are consumed by the trunk service in its own time.
    view = await trunk_when(client, "fs-dead", lambda v: v["state"] == "down", "state down")
    assert view["reachability"]["status"] == "unreachable"
    assert view["breaker"]["phase"] == "open" and view["breaker"]["reason"] == "unreachable"
    assert view["switch"] == SWITCH and view["target"] == "rig_down_reg"
    status, text, _ = await client.request("GET", "/metrics")
    assert status == 200
    assert 'engine_trunk_state{state="down",trunk="fs-dead"} 1.0' in text
    # The recorded table lists only the rig_down* gateways: the others are not reported
    # (on the real rig "carrier" is listed NOREG, which says nothing either).
    for name in ("fs-good", "fs-congested") if REAL is None else ("fs-good",):
        view = await trunk(client, name)
        assert view["reachability"]["status"] == "unknown" and view["state"] == "up", view
    # rig_down (ping only) is listed as NOREG: no verdict on reachability.
    assert (await trunk(client, "fs-ping-dead"))["reachability"]["status"] == "unknown"


@needs_fake
async def test_failover_completes_on_the_good_trunk(live: Live, pg_store: PgStore) -> None:
    client = live.client
    assert (await trunk(client, "fs-dead"))["state"] == "down"
    before = (await trunk(client, "fs-congested"))["counters"]["attempts"]
    async with event_log(client) as log:
        call = await group_call(client, "61001", "main")
        call_id = call["call_id"]
        final = await finish(client, call_id)
        await wait_for(
            lambda: any(
                m["event"].get("call_id") == call_id and m["event"].get("state") == "ended"
                for m in log
            ),
            what="ended on the WebSocket",
        )
    assert final["switch"] == SWITCH
    # API: attempt 1 on the congested gateway (503 -> failover), attempt 2 answered.
    attempts = final["attempts"]
    assert [a["trunk"] for a in attempts] == ["fs-congested", "fs-good"], attempts
    assert [a["verdict"] for a in attempts] == ["failover", "success"]
    assert (attempts[0]["cause"], attempts[0]["sip_code"]) == (34, 503)
    assert attempts[0]["leg_id"] == call_id and attempts[1]["leg_id"] != call_id
    assert final["attempt"] == 2 and final["trunk"] == "fs-good"
    assert final["answered_at"] is not None and final["trunk_failure"] == ""
    assert (await trunk(client, "fs-congested"))["counters"]["attempts"] == before + 1
    assert (await trunk(client, "fs-dead"))["counters"]["attempts"] == 0
    # The switch saw one originate per attempt, each through its own gateway.
    mine = live.originates(number="61001")
    assert [c.split("sofia/gateway/")[1].split("/")[0] for c in mine] == ["congested", "carrier"]
    assert attempts[1]["leg_id"] in mine[1]
    assert live.originates("rig_down_reg") == []

    # WebSocket: one call id throughout; the failed attempt did not end the call.
    events = [m["event"] for m in log if m["event"].get("call_id") == call_id]
    states = [e["state"] for e in events if e["type"] == "CallStateChanged"]
    assert states.count("ended") == 1 and states[-1] == "ended"
    assert "answered" in states
    failover = [e for e in events if e["type"] == "CallAttempt"]
    assert len(failover) == 1 and failover[0]["trunk"] == "fs-congested"
    assert failover[0]["next"]["trunk"] == "fs-good"
    assert {e.get("attempt") for e in events if e["type"] == "HungUp"} == {1, 2}

    # CDR: one row per attempt.
    rows = await stored_cdrs(pg_store.pool, call_id, 2)
    rows = sorted(rows, key=lambda r: r.attempt)
    assert [(r.attempt, r.trunk, r.switch) for r in rows] == [
        (1, "fs-congested", SWITCH),
        (2, "fs-good", SWITCH),
    ]
    assert (rows[0].cause, rows[0].sip_code, rows[0].answered_at) == (34, 503, None)
    assert rows[1].answered_at is not None and rows[1].billsec_s > 0
    assert rows[0].started_at <= rows[1].started_at


async def test_ping_only_dead_gateway_fails_over_on_gateway_down(live: Live) -> None:
    """rig_down is not reported down (NOREG in the table), so it is tried; FreeSWITCH
    refuses at once with GATEWAY_DOWN, a failover cause, and the call completes."""
    client = live.client
    final = await finish(client, (await group_call(client, "61002", "ping-only"))["call_id"])
    attempts = final["attempts"]
    assert [(a["trunk"], a["verdict"]) for a in attempts] == [
        ("fs-ping-dead", "failover"),
        ("fs-good", "success"),
    ], attempts
    assert attempts[0]["cause"] == 27 and attempts[0]["sip_code"] is None
    view = await trunk(client, "fs-ping-dead")
    assert view["last_failure"]["cause"] == 27
    assert view["counters"]["failovers"] >= 1


@needs_fake
async def test_breaker_opens_on_congestion_and_closes_once_repaired(live: Live) -> None:
    client, fs = live.client, live.fake
    async with event_log(client) as log:
        # failure_threshold = 2: failover calls until the congested gateway's breaker opens.
        for _ in range(3):
            if (await trunk(client, "fs-congested"))["state"] == "down":
                break
            final = await finish(client, (await group_call(client, "61003", "main"))["call_id"])
            assert final["attempts"][-1]["trunk"] == "fs-good"
        view = await trunk(client, "fs-congested")
        assert view["state"] == "down", view
        assert view["breaker"]["reason"] == "consecutive-failures"
        assert (view["last_failure"]["cause"], view["last_failure"]["sip_code"]) == (34, 503)

        # While open it is not tried: the call goes straight to the good gateway.
        opened = view["breaker"]["times_opened"]
        tried = len(live.originates("congested"))
        final = await finish(client, (await group_call(client, "61004", "main"))["call_id"])
        if (await trunk(client, "fs-congested"))["breaker"]["times_opened"] == opened:
            trunks = [a["trunk"] for a in final["attempts"]]
            assert trunks in (["fs-good"], ["fs-congested", "fs-good"])  # cooldown may be over
            assert len(live.originates("congested")) == tried + trunks.count("fs-congested")

        # Repair the carrier; after the cooldown a live call probes it and closes the breaker.
        fs.repair("congested")
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while (await trunk(client, "fs-congested"))["state"] != "up":
                assert loop.time() < deadline, await trunk(client, "fs-congested")
                if (await trunk(client, "fs-congested"))["state"] == "probing":
                    probe = await finish(
                        client, (await group_call(client, "61005", "main"))["call_id"]
                    )
                    first = probe["attempts"][0]
                    assert first["trunk"] == "fs-congested"
                    if first["verdict"] == "success":
                        assert first["probe"] is True
                await asyncio.sleep(0.1)
        finally:
            fs.set_gateway("congested", "congested")
        await wait_for(
            lambda: [e["state"] for e in trunk_events(log, "fs-congested")][-1:] == ["up"],
            what="TrunkStateChanged up",
        )
    seen = [e["state"] for e in trunk_events(log, "fs-congested")]
    # down (opened by calls) -> probing (cooldown over) -> ... -> up (probe answered)
    assert "down" in seen and "probing" in seen and seen[-1] == "up", seen
    assert seen.index("down") < seen.index("probing")
    assert all(e["switch"] == SWITCH for e in trunk_events(log, "fs-congested"))


async def test_busy_callee_is_never_retried_on_another_trunk(live: Live, pg_store: PgStore) -> None:
    client = live.client
    other = (await trunk(client, NOT_RETRIED))["counters"]["attempts"]
    sent_before = len(live.originates(GATEWAYS[NOT_RETRIED]))
    final = await finish(client, (await group_call(client, "62001", "callee-decides"))["call_id"])
    assert (final["cause"], final["sip_code"]) == (17, 486), final
    assert [(a["trunk"], a["verdict"]) for a in final["attempts"]] == [("fs-good", "final")]
    assert final["attempt"] == 1
    rows = await stored_cdrs(pg_store.pool, final["call_id"])
    assert [(r.attempt, r.trunk, r.cause, r.sip_code) for r in rows] == [(1, "fs-good", 17, 486)]
    # Give a wrong failover time to show up before checking it did not happen.
    await asyncio.sleep(0.5)
    assert (await trunk(client, NOT_RETRIED))["counters"]["attempts"] == other
    assert len(live.originates(GATEWAYS[NOT_RETRIED])) == sent_before


async def test_channel_and_cps_limits_hold_under_20_calls_at_once(
    live: Live, pg_store: PgStore
) -> None:
    client, fs = live.client, live.fs
    # Recorded timings x 0.6: each answered call lasts 3 s, longer than the 2.5 s that
    # 5 channels take to fill at 2 calls/s, so both limits bind. On the real rig a 61XXX
    # call lasts its full 4 s, which binds them too.
    if fs is not None:
        fs.time_scale = 0.6
    sent_before = len(live.originates(GATEWAYS[LIMITED]))
    try:
        placed, refused = await place_all_at_once(
            client, [f"610{i:02d}" for i in range(20)], "limited"
        )
        # 5 channels, calls last 3 s, queue timeout 4 s: some must be refused.
        assert len(placed) >= 5 and refused
        finals = [await finish(client, b["call_id"]) for b in placed]
    finally:
        if fs is not None:
            fs.time_scale = FAST
    assert_limits(finals, max_per_s=2, channels=5)

    for f in finals:
        assert f["answered_at"] is not None, f
        rows = await stored_cdrs(pg_store.pool, f["call_id"])
        assert [(r.attempt, r.trunk) for r in rows] == [(1, LIMITED)]
    # One originate through the gateway per placed call; refused calls never reached it.
    assert len(live.originates(GATEWAYS[LIMITED])) - sent_before == len(placed)
    view = await trunk(client, LIMITED)
    assert view["channels"] == {"in_use": 0, "max": 5}
