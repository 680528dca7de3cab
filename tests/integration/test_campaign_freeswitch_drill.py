"""The SIGKILL drill of tests/integration/test_campaign_live.py, on FreeSWITCH.

The engine runs as its own process (tests/integration/engine_process.py) against the fake ESL
peer, which runs here and outlives it, as a real FreeSWITCH outlives the engine: its
channels stay up with no ESL client (show-channels-2-calls.esl lists legs parked by a client;
nothing in the recordings ties a channel to the connection that originated it). A
progressive campaign of 10 people (69XXX: answered, the unicast tap plays a short hello) and
10 no-answers (64XXX), every outcome final, is killed with SIGKILL while calls are up and
restarted. It must show: 0 contacts dialled twice, counted where it matters, in the
``originate`` commands the switch received; every attempt ends with exactly one row, done,
with an outcome.

The agents (``user/agent1|2``, the fake's phones answer) hang up TALK_S after their leg is
bridged, on the phone (``FakeFreeSwitch.kill`` of the agent leg, as the recorded ``uuid_kill``
of acd-moh-bridge-agent-hangs-up.esl), so a talk ends even while the engine is down.

No sandbox needed; the Asterisk switch in the config is the fake AMI (as the in-process
FreeSWITCH campaign test does).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.api.test_campaign_freeswitch import CONFIG, RETRY_S, SCALE, SWITCH
from tests.campaign_rig import (
    WINDOW_TZ,
    agents_hang_up,
    api,
    campaign_body,
    contacts_dialled,
    e164,
    import_contacts,
    person_answered,
)
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import (
    ROOT,
    Client,
    engine_config_text,
    event_log,
    freeswitch_switch_toml,
    wait_for,
)
from tests.integration.engine_process import EngineProcess, free_port
from tests.unit.test_freeswitch_amd import _wav, free_udp_ports

TALK_S = 0.5
#: A person: hello, then waits, and the phone keeps sending (silent) audio while the far
#: end is up (TAP_CALL_S), so a tap started after a restart still hears the wait. (The
#: unit tests' HUMAN stops after 3.8 s: a restart that takes longer would hear nothing.)
PERSON = _wav(("silence", 300), ("voice", 500), ("silence", 30000))
PEOPLE = [f"91{i:02d}" for i in range(10)]
NO_ANSWER = [f"40{i:02d}" for i in range(10)]
#: The dialled number in a recorded-style originate: ...sofia/gateway/carrier/<number> &park()
DIALLED = re.compile(r"sofia/gateway/[^/ ]+/(\d+)")


async def agents_ready(c: Client) -> None:
    for agent in ("fa1", "fa2"):
        view = await api(c, "GET", f"/agents/{agent}")
        if view["state"] == "logged_out":
            await api(c, "POST", f"/agents/{agent}/login")
            view = await api(c, "GET", f"/agents/{agent}")
        if view["state"] != "available":
            await api(c, "POST", f"/agents/{agent}/ready")


async def wait_finished(c: Client, campaign: str, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (await api(c, "GET", f"/campaigns/{campaign}"))["state"] != "finished":
        stats = await api(c, "GET", f"/campaigns/{campaign}/stats")
        assert loop.time() < deadline, f"campaign not finished: {json.dumps(stats)[:2000]}"
        await asyncio.sleep(0.25)


@pytest.fixture
async def fs_engine(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> AsyncIterator[tuple[FakeFreeSwitch, EngineProcess, asyncpg.Pool]]:
    work = store_data_dir / f"campaign-fs-drill-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    ports = free_udp_ports(16)
    port = free_port()
    prefix = f"campfsdrill:{uuid.uuid4().hex[:8]}:"
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    proc: EngineProcess | None = None
    try:
        async with CarrierFakeAmi() as ami, FakeFreeSwitch(time_scale=SCALE) as fs:
            taps = f'amd_tap_ports = "{ports.start}-{ports.stop - 1}"'
            extra = freeswitch_switch_toml(SWITCH, fs.host, fs.port, fs.password, taps) + CONFIG
            config = work / "engine.toml"
            config.write_text(
                engine_config_text(
                    pg_dsn=pg_dsn,
                    redis_url=redis_url,
                    prefix=prefix,
                    data_dir=work / "engine",
                    api_port=port,
                    ami_port=ami.port,
                    agi_bind_port=0,
                    extra=extra,
                )
            )
            proc = EngineProcess(config, port, work / "engine.log", redis_prefix=prefix)
            await proc.start()
            yield fs, proc, pool
    finally:
        if proc is not None:
            proc.stop()
        await pool.close()


async def test_sigkill_mid_campaign_on_freeswitch_dials_nobody_twice(
    fs_engine: tuple[FakeFreeSwitch, EngineProcess, asyncpg.Pool],
) -> None:
    fs, proc, pool = fs_engine
    name = f"fs-drill-{uuid.uuid4().hex[:6]}"
    final = {"final": True}
    kinds = ("busy", "no_answer", "machine", "abandoned", "carrier_failure", "interrupted")
    body = campaign_body(name, RETRY_S, mode="progressive", retries=dict.fromkeys(kinds, final))
    for number in PEOPLE:
        fs.tap_audio[f"6{number}"] = PERSON
    rows = [(e164(n), WINDOW_TZ, f"p{n}") for n in PEOPLE]
    rows += [(e164(n), WINDOW_TZ, f"r{n}") for n in NO_ANSWER]
    desk = asyncio.create_task(agents_hang_up(fs, TALK_S))
    try:
        async with aiohttp.ClientSession() as http:
            c = proc.client(http)
            await api(c, "POST", "/campaigns", 201, json=body)
            report = await import_contacts(c, name, rows)
            assert report["loaded"] == 20, report
            await agents_ready(c)
            async with event_log(c) as messages:
                await api(c, "POST", f"/campaigns/{name}/start")

                def dialled() -> int:
                    return contacts_dialled(messages)

                def person_up() -> bool:
                    return person_answered(fs)

                # Mid-campaign, with a person's call up (answered, in AMD, queued or talking).
                await wait_for(lambda: dialled() >= 6 and person_up(), 60, "calls up")
            up_at_kill = sorted(
                ch.uuid for ch in fs.channels.values() if ch.direction == "outbound"
            )
            proc.kill()
            killed_at = datetime.now(UTC)
            await proc.start()
            c = proc.client(http)
            await wait_finished(c, name, timeout_s=120)
    finally:
        desk.cancel()

    rows_ = await pool.fetch(
        "SELECT * FROM campaign_attempts WHERE campaign_id = $1 ORDER BY created_at",
        name,
        timeout=10,
    )
    attempts = [dict(r) for r in rows_]
    # 0 contacts dialled twice: in the attempt rows, and in what the switch was asked to do.
    per_contact = Counter(a["contact_id"] for a in attempts)
    assert [k for k, n in per_contact.items() if n > 1] == []
    assert len(per_contact) == 20
    ours = {f"6{n}" for n in PEOPLE + NO_ANSWER}
    originates = Counter(
        m.group(1)
        for cmd in fs.received
        if "originate" in cmd and (m := DIALLED.search(cmd)) and m.group(1) in ours
    )
    # (A contact claimed but not yet dialled at the kill ends interrupted, final here:
    # it was never originated, and is not now either.)
    assert set(originates) <= ours
    assert [n for n, k in originates.items() if k > 1] == []
    # Every attempt that came to an outcome on the switch was originated (once).
    for a in attempts:
        if a["outcome"] != "interrupted":
            assert originates[f"6{a['phone'][-4:]}"] == 1, a
    # Every attempt ended with exactly one row, done, with an outcome.
    assert Counter(a["state"] for a in attempts) == Counter({"done": 20})
    assert all(a["outcome"] for a in attempts), attempts
    open_at_kill = [
        a for a in attempts if a["created_at"] < killed_at < (a["ended_at"] or killed_at)
    ]
    assert {a["call_id"] for a in open_at_kill} & set(up_at_kill), (up_at_kill, open_at_kill)
    # Every answered call got its AMD verdict, those whose analysis died with the engine
    # too (resumed: docs/amd.md), and every person reached an agent or was released with
    # the safe-harbour message: none was "human" without an agent.
    wrong = [
        {
            k: a[k]
            for k in ("call_id", "amd_status", "amd_cause", "outcome", "agent_id", "answered_at")
        }
        for a in attempts
        if a["answered_at"] is not None
        and (
            a["amd_status"] != "HUMAN"
            or a["outcome"] not in ("human", "abandoned")
            or (a["outcome"] == "human") != (a["agent_id"] is not None)
        )
    ]
    assert wrong == [], f"{wrong} killed at {killed_at}; {proc.tail(60)}"
    result = {
        "switch": "freeswitch (fake ESL peer)",
        "contacts": 20,
        "attempts": len(attempts),
        "dialled_twice": sum(1 for n in per_contact.values() if n > 1),
        "originates_per_number_max": max(originates.values()),
        "open_at_kill": len(open_at_kill),
        "outcomes_of_those": dict(Counter(a["outcome"] for a in open_at_kill)),
        "outcomes": dict(Counter(a["outcome"] for a in attempts)),
        "killed_at": killed_at.isoformat(),
    }
    out = ROOT / "reports" / "campaign-sigkill-freeswitch.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
