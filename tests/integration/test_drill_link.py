"""Fault drill 4: the AMI link is cut, and Asterisk is restarted, with 20 calls up.

Both on the real Asterisk sandbox, the engine's AMI link going through a TCP
proxy the test controls. What is counted: CDRs lost (a call without exactly
one row), duplicate dials (Originate actions written more than once per
call, seen on the wire), and the time from the link coming back to the
engine's resync.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.app import Engine
from engine.pbx.base import LinkState
from engine.store.pg.pool import PgStore
from tests.contract.link_proxy import LinkProxy
from tests.drill_report import report_drill
from tests.harness import (
    Client,
    cdr_rows_by_call,
    engine_config,
    running_engine,
    wait_trunk_usable,
)
from tests.integration import sandbox

pytestmark = pytest.mark.asterisk

CALLS = 20
CUT_ENDED = 5  # of them hung up on the switch while the AMI link is cut


@pytest.fixture
async def proxied(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Engine, Client, LinkProxy]]:
    assert sandbox.status(), "the Asterisk sandbox must be running"
    proxy = LinkProxy("127.0.0.1", 5038)
    await proxy.start()
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"drill4:{uuid.uuid4().hex[:8]}:",
        data_dir=tmp_path / "engine",
        ami_port=proxy.port,
        agi_bind_port=0,
        ping_interval_s=1.0,
    )
    try:
        async with running_engine(cfg) as (engine, client):
            yield engine, client, proxy
    finally:
        await proxy.stop()


async def _place(client: Client) -> list[str]:
    # 7XXX answers and stays up ~12 s.
    placed = await asyncio.gather(
        *(client.originate(f"71{n:02d}", timeout_s=10) for n in range(CALLS))
    )
    ids = [c["call_id"] for c in placed]
    await asyncio.gather(*(client.wait_state(cid, "answered", timeout_s=20) for cid in ids))
    return ids


async def _wait_link(engine: Engine, state: LinkState, timeout_s: float = 60.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while engine.drivers["asterisk-1"].state is not state:
        if loop.time() - start > timeout_s:
            raise AssertionError(f"link not {state.value} after {timeout_s}s")
        await asyncio.sleep(0.02)
    return loop.time() - start


async def _count(pg_store: PgStore, ids: list[str]) -> tuple[int, int]:
    _, lost, dup = await cdr_rows_by_call(pg_store.pool, ids)
    return lost, dup


def _report(
    slug: str, title: str, lost: int, dup: int, dials: dict[str, int], recover_s: float
) -> None:
    report_drill(
        f"4-{slug}",
        title,
        {
            "calls_placed": CALLS,
            "cdrs_written": CALLS - lost,
            "cdrs_lost": lost,
            "cdrs_duplicated": dup,
            "duplicate_dials": sum(n - 1 for n in dials.values()),
            "seconds_to_recover": round(recover_s, 2),
        },
    )


def _hang_up_on_the_switch(channels: list[str]) -> None:
    for channel in channels:
        sandbox.rx(f"channel request hangup {channel}")

    def all_gone() -> bool:
        listed = sandbox.rx("core show channels concise")
        return not any(f"{channel}!" in listed for channel in channels)

    assert sandbox.wait_until(all_gone, 15), channels


def _originates(proxy: LinkProxy, ids: list[str]) -> dict[str, int]:
    wire = proxy.sent_text()
    return {cid: wire.count(f"ChannelId: {cid}") for cid in ids}


async def test_ami_link_cut_with_20_calls_up(
    proxied: tuple[Engine, Client, LinkProxy], pg_store: PgStore
) -> None:
    engine, client, proxy = proxied
    ids = await _place(client)
    # Hung up on the switch while the link is down: only the resync can tell the engine
    # (without these, a resync that decided nothing still passed the drill).
    gone = ids[:CUT_ENDED]
    channels = [(await client.wait_state(cid, "answered"))["channel"] for cid in gone]
    proxy.hold()  # the link drops; the switch keeps every call
    await _wait_link(engine, LinkState.DOWN, 20)
    await asyncio.to_thread(_hang_up_on_the_switch, channels)
    proxy.release()
    recover_s = await _wait_link(engine, LinkState.UP)
    # Still answered after the resync: the calls were adopted back, not ended.
    for cid in ids[CUT_ENDED:]:
        call = await client.wait_state(cid, "answered", timeout_s=5)
        assert not call["interrupted"]
    finals = await asyncio.gather(*(client.wait_state(cid, "ended", timeout_s=40) for cid in ids))
    # Those that ended during the cut are ended by the resync, marked interrupted.
    assert all(f["interrupted"] for f in finals[:CUT_ENDED]), finals[:CUT_ENDED]
    rest = finals[CUT_ENDED:]
    assert all(f["cause"] == 16 and not f["interrupted"] for f in rest), rest
    lost, dup = await _count(pg_store, ids)
    dials = _originates(proxy, ids)
    _report("link-cut", "4: AMI link cut with 20 calls up", lost, dup, dials, recover_s)
    assert (lost, dup) == (0, 0)
    assert all(n == 1 for n in dials.values()), dials


@pytest.mark.parametrize("how", ["graceful", "crash"])
async def test_asterisk_restarted_with_20_calls_up(
    proxied: tuple[Engine, Client, LinkProxy], pg_store: PgStore, how: str
) -> None:
    engine, client, proxy = proxied
    ids = await _place(client)
    started = time.monotonic()
    restarted_at = time.time()
    await asyncio.to_thread(sandbox.restart if how == "graceful" else sandbox.crash_restart)
    finals = await asyncio.gather(*(client.wait_state(cid, "ended", timeout_s=60) for cid in ids))
    await _wait_link(engine, LinkState.UP)
    recover_s = time.monotonic() - started
    for f in finals:
        assert f["answered_at"] is not None
        # graceful: Asterisk hung up and said so; crash: the resync found them gone.
        assert f["interrupted"] is (how == "crash"), f
    lost, dup = await _count(pg_store, ids)
    dials = _originates(proxy, ids)
    _report(
        f"asterisk-{how}-restart",
        f"4: Asterisk {how} restart with 20 calls up",
        lost,
        dup,
        dials,
        recover_s,
    )
    assert (lost, dup) == (0, 0)
    assert all(n == 1 for n in dials.values()), dials
    # New work goes through after the restart, once the restarted switch has
    # qualified the trunk again (every call goes through the trunk's health).
    await wait_trunk_usable(client, "self-trunk", since=restarted_at)
    after = await client.originate("2001")
    assert (await client.wait_state(after["call_id"], "ended"))["cause"] == 17
