"""A campaign's outcomes while PostgreSQL is away, then a SIGKILL: nothing is lost.

docs/campaigns.md "Crash safety": "outcomes and contact updates go through the ``campaigns``
lane of the durable outbox: a call's end never waits on PostgreSQL, and what was journalled
is delivered after a restart". The SIGKILL drills of the campaign (test_campaign_live.py,
test_campaign_freeswitch_drill.py) run with PostgreSQL up; here the engine (its own process,
tests/integration/engine_process.py, on the fake FreeSWITCH, which outlives it) reaches the
session's PostgreSQL through tests/storage_proxy.py. A progressive campaign of no-answer
contacts (64XXX ring until the campaign's 5 s ring timeout) is started; while its first calls
ring, PostgreSQL starts refusing connections; the calls end with it away; the engine is
SIGKILLed with their outcomes only in its outbox; PostgreSQL comes back and the engine is
started again. Every number is originated once at the switch, every attempt ends ``done``
with an outcome, and the calls that ended during the outage keep their real outcome
(``no_answer``), not ``interrupted``.

(A runner restarted before its switch link or trunks were usable used to dial at once and
be refused by the calls service: an attempt ``carrier_failure`` never placed. It now waits for
the switch (docs/campaigns.md "Waiting for the switch"); ``carrier_failure`` is still retried
after RETRY_S here, and "dialled once" is counted at the switch.)"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.api.test_campaign_freeswitch import CONFIG, RETRY_S, SWITCH
from tests.campaign_rig import WINDOW_TZ, api, campaign_body, e164, import_contacts
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import Client, engine_config_text, event_log, freeswitch_switch_toml, wait_for
from tests.integration.engine_process import EngineProcess, free_port
from tests.integration.test_campaign_freeswitch_drill import agents_ready, wait_finished
from tests.storage_proxy import StorageProxy, pg_dsn_via, pg_upstream
from tests.unit.test_freeswitch_amd import free_udp_ports

NO_ANSWER = [f"40{i:02d}" for i in range(4)]
#: The dialled number in an originate: ...sofia/gateway/carrier/<number> &park()
DIALLED = re.compile(r"sofia/gateway/[^/ ]+/(\d+)")


async def _lane_depth(c: Client, lane: str) -> float:
    status, text, _ = await c.request("GET", "/metrics")
    assert status == 200, text
    for line in str(text).splitlines():
        if line.startswith(f'engine_outbox_depth{{lane="{lane}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no engine_outbox_depth for the {lane} lane")


@pytest.fixture
async def rig(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> AsyncIterator[tuple[FakeFreeSwitch, EngineProcess, StorageProxy, asyncpg.Pool]]:
    work = store_data_dir / f"campaign-pg-drill-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    ports = free_udp_ports(16)
    port = free_port()
    prefix = f"camppgdrill:{uuid.uuid4().hex[:8]}:"
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    proc: EngineProcess | None = None
    try:
        # time_scale 1: the no-answers ring for real, so calls are up when PostgreSQL goes.
        async with (
            CarrierFakeAmi() as ami,
            FakeFreeSwitch(time_scale=1.0) as fs,
            StorageProxy(pg_upstream(pg_dsn)) as proxy,
        ):
            taps = f'amd_tap_ports = "{ports.start}-{ports.stop - 1}"'
            extra = freeswitch_switch_toml(SWITCH, fs.host, fs.port, fs.password, taps) + CONFIG
            config = work / "engine.toml"
            config.write_text(
                engine_config_text(
                    pg_dsn=pg_dsn_via(pg_dsn, proxy.port),
                    redis_url=redis_url,
                    prefix=prefix,
                    data_dir=work / "engine",
                    api_port=port,
                    ami_port=ami.port,
                    agi_bind_port=0,
                    extra=extra + "\n[calls]\nstorage_timeout_s = 1\n",
                )
            )
            proc = EngineProcess(config, port, work / "engine.log", redis_prefix=prefix)
            await proc.start()
            yield fs, proc, proxy, pool
    finally:
        if proc is not None:
            proc.stop()
        await pool.close()


async def test_campaign_outcomes_journalled_while_postgres_is_away_survive_a_sigkill(
    rig: tuple[FakeFreeSwitch, EngineProcess, StorageProxy, asyncpg.Pool],
) -> None:
    fs, proc, proxy, pool = rig
    name = f"pg-drill-{uuid.uuid4().hex[:6]}"
    final = {"final": True}
    kinds = ("busy", "no_answer", "machine", "abandoned", "interrupted")
    retries: dict[str, object] = dict.fromkeys(kinds, final)
    retries["carrier_failure"] = {"after_s": RETRY_S}
    body = campaign_body(name, RETRY_S, mode="progressive", retries=retries)
    rows = [(e164(n), WINDOW_TZ, f"r{n}") for n in NO_ANSWER]
    async with aiohttp.ClientSession() as http:
        c = proc.client(http)
        await api(c, "POST", "/campaigns", 201, json=body)
        report = await import_contacts(c, name, rows)
        assert report["loaded"] == len(NO_ANSWER), report
        await agents_ready(c)
        async with event_log(c) as messages:
            await api(c, "POST", f"/campaigns/{name}/start")

            def dialled() -> set[str]:
                return {
                    m["event"]["call_id"]
                    for m in messages
                    if m.get("event", {}).get("type") == "ContactDialed"
                    and m["event"].get("campaign_id") == name
                }

            await wait_for(lambda: len(dialled()) >= 1, 30, "the first dial")
            await proxy.set_mode("refuse")
            ringing = dialled()

            def ended() -> set[str]:
                return {
                    m["event"]["call_id"]
                    for m in messages
                    if m.get("event", {}).get("type") == "CallStateChanged"
                    and m["event"].get("state") == "ended"
                }

            # Those calls end (the ring timeout) while PostgreSQL is away ...
            await wait_for(lambda: ringing <= ended(), 30, "the ringing calls to end")
        # ... and their outcomes wait in the campaigns lane.
        depth = await _lane_depth(c, "campaigns")
        assert depth >= 1, depth
        proc.kill()
        await proxy.set_mode("pass")
        restarted = time.monotonic()
        await proc.start()
        c = proc.client(http)
        await wait_finished(c, name, timeout_s=60)
        finished_s = time.monotonic() - restarted

    attempts = [
        dict(r)
        for r in await pool.fetch(
            "SELECT * FROM campaign_attempts WHERE campaign_id = $1", name, timeout=10
        )
    ]
    # Nobody dialled twice: each number originated once at the switch.
    ours = {f"6{n}" for n in NO_ANSWER}
    originates = Counter(
        m.group(1)
        for cmd in fs.received
        if "originate" in cmd and (m := DIALLED.search(cmd)) and m.group(1) in ours
    )
    assert originates == Counter(dict.fromkeys(ours, 1)), originates
    # Every attempt ended with one row, done, with an outcome; every contact reached the
    # switch once and rang out.
    assert {a["state"] for a in attempts} == {"done"} and all(a["outcome"] for a in attempts)
    placed = [a for a in attempts if a["trunk"] is not None]
    assert sorted(a["dialed_number"] for a in placed) == sorted(ours), attempts
    assert {a["outcome"] for a in placed} == {"no_answer"}, placed
    by_call = {a["call_id"]: a for a in attempts}
    # The calls that ended during the outage keep the outcome the engine journalled.
    assert {by_call[cid]["outcome"] for cid in ringing} == {"no_answer"}, [
        by_call[cid] for cid in ringing
    ]
    print(
        f"campaign PG-outage drill: {len(NO_ANSWER)} contacts, {len(ringing)} calls ended "
        f"with PostgreSQL away, campaigns lane depth {depth:.0f} at the SIGKILL, 0 lost, "
        f"0 dialled twice; restart to finished {finished_s:.1f} s; outcomes "
        f"{dict(Counter(a['outcome'] for a in attempts))}"
    )
