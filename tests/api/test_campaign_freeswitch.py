"""The live campaign of tests/integration/test_campaign_live.py, on FreeSWITCH: the whole
engine in-process against the fake ESL peer (tests/fakes/fake_esl.py), with AMD by the
engine's detector on the ``unicast`` tap and two agents (``user/agent1|2``) that answer.

40 contacts imported through the API; the trunk group translates +44207946XXXX to the
fake's 6XXXX number plan: people and machines are 69XXX calls whose tap plays a short
greeting (``fs.tap_audio``), then busy 62XXX, congestion 63XXX (503), no answer 64XXX,
declined 68XXX (603); two on the DNC list and two in a time zone whose window is shut.
It checks (issue 10): each contact's final state, the retry spacing, no machine to an
agent, each person to an agent within the safe-harbour time of the verdict or released
with the safe-harbour transfer and counted abandoned, nothing dialled on DNC or out of
its window. The agents' side of a talk is the test hanging the call up once connected.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from tests import campaign_rig as rig
from tests import grafana_check
from tests.campaign_rig import (
    FINAL,
    LENIENT_BREAKER,
    SAFE_HARBOUR_S,
    SHUT_TZ,
    WINDOW_TZ,
    api,
    e164,
    import_contacts,
    seconds_between,
    wait_done,
)
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import TAP_CALL_S, FakeFreeSwitch
from tests.harness import (
    Client,
    engine_config,
    event_log,
    freeswitch_switch_toml,
    running_engine,
    wait_for,
)
from tests.integration.engine_process import free_port
from tests.unit.test_freeswitch_amd import HUMAN, MACHINE, free_udp_ports

SWITCH = "freeswitch-1"
SCALE = 0.05  # the recorded call timelines (ringing, busy, no answer) x this
RETRY_S = 1.0
TALK_S = 0.5  # an agent's talk (the SIPp agents in the Asterisk test hold 3 s)
# Contact number 9XXX -> 69XXX (tap), 2XXX -> 62XXX busy... : (kind, first digits, count).
PLAN = [
    ("human", "91", 8),
    ("machine", "92", 8),
    ("busy", "20", 6),
    ("no_answer", "40", 5),
    ("congestion", "30", 5),
    ("declined", "80", 4),
]


def campaign_body(name: str, mode: str = "predictive", **retries: Any) -> dict[str, Any]:
    body = rig.campaign_body(name, RETRY_S, mode=mode)
    body["spec"]["retries"] |= retries
    return body


CONFIG = f"""
# The fake's carrier gateway; 63XXX answers 503 on purpose, which must not open the breaker.
[[trunks]]
name = "fs-carrier"
switch = "freeswitch-1"
target = "carrier"
max_channels = 100
max_cps = 100
cps_burst = 50
{LENIENT_BREAKER}
[[trunk_groups]]
name = "campaign-out"
members = ["fs-carrier"]
translations = [{{ match = '^\\+44207946(\\d{{4}})$', replace = '6\\1' }}]

[[agents]]
id = "fa1"
endpoints = {{ freeswitch-1 = "user/agent1" }}
skills = {{ camp = 5 }}
[[agents]]
id = "fa2"
endpoints = {{ freeswitch-1 = "user/agent2" }}
skills = {{ camp = 5 }}

[[queues]]
name = "campq"
skills = {{ camp = 5 }}
ring_timeout_s = 5.0
wrap_up_s = 0.2
"""


@dataclass
class Fs:
    engine: Engine
    client: Client
    fs: FakeFreeSwitch

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        assert self.engine.pg is not None
        rows = await self.engine.pg.pool.fetch(sql, *args, timeout=10)
        return [dict(r) for r in rows]


@pytest.fixture(scope="module")
async def fs_campaign(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Fs]:
    ports = free_udp_ports(16)
    async with CarrierFakeAmi() as ami, FakeFreeSwitch(time_scale=SCALE) as fs:
        taps = f'amd_tap_ports = "{ports.start}-{ports.stop - 1}"'
        # A fixed outbound-socket port: the AMD machine action transfers to an IVR flow.
        extra = (
            freeswitch_switch_toml(
                SWITCH, fs.host, fs.port, fs.password, taps, outbound_port=free_port()
            )
            + CONFIG
            # The machine flow's `say`: the engine's TTS prompts (docs/ivr.md).
            + f'\n[tts]\ndir = "{store_data_dir / f"campfs-tts-{uuid.uuid4().hex[:6]}"}"\n'
        )
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"campfs:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / f"engine-campaign-fs-{uuid.uuid4().hex[:6]}",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=extra,
        )
        async with running_engine(cfg) as (engine, client):
            yield Fs(engine, client, fs)


async def agents_talk(c: Client, messages: list[dict[str, Any]]) -> None:
    """The agents' side of each talk (the fake's phones answer and stay up): a call
    connected to an agent is hung up TALK_S later, as the Asterisk test's SIPp agents do."""
    loop = asyncio.get_running_loop()
    seen: set[str] = set()
    tasks: set[asyncio.Task[Any]] = set()

    async def hang_up(call_id: str) -> None:
        # Not checked here (nobody awaits this task): a call left up never ends, and the
        # campaign's wait for its contacts to be done fails instead.
        await c.request("DELETE", f"/calls/{call_id}")

    def talk_over(call_id: str) -> None:
        tasks.add(loop.create_task(hang_up(call_id)))

    while True:
        for m in list(messages):
            e = m.get("event") or {}
            if e.get("type") == "QueueCallConnected" and e["call_id"] not in seen:
                seen.add(e["call_id"])
                loop.call_later(TALK_S, talk_over, e["call_id"])
        await asyncio.sleep(0.05)


async def agents_available(f: Fs) -> None:
    """Both agents logged in and available (the module's first test leaves them so, or in
    a short wrap-up)."""
    acd = f.engine.acd
    assert acd is not None
    for agent in ("fa1", "fa2"):
        if acd.status(agent).state.value == "logged_out":
            await api(f.client, "POST", f"/agents/{agent}/login")
        if acd.status(agent).state.value in ("logged_out", "paused"):
            await api(f.client, "POST", f"/agents/{agent}/ready")
    await wait_for(
        lambda: all(acd.status(a).state.value == "available" for a in ("fa1", "fa2")),
        10,
        "both agents available",
    )


async def attempts_of(f: Fs, campaign: str) -> list[dict[str, Any]]:
    return await f.fetch(
        "SELECT * FROM campaign_attempts WHERE campaign_id = $1 ORDER BY created_at", campaign
    )


async def _abandons_on_the_socket(f: Fs, name: str, messages: list[dict[str, Any]]) -> None:
    """Wait, with the socket open, for a CallAbandoned event of every attempt stored as
    abandoned. The event goes on the events lane at the release and reaches the socket after
    the lane's next publish round and the stream's fan-out; the fake switch ends the call
    right after the safe-harbour transfer, so the attempt's row and the contact's state can
    be read first (seen beside stress-ng: the socket closed with one abandon's event still
    on its way, and the test failed on a set one short)."""
    attempts = await attempts_of(f, name)
    want = {a["call_id"] for a in attempts if a["outcome"] == "abandoned"}

    def seen() -> set[str]:
        return {
            m["event"]["call_id"]
            for m in messages
            if "event" in m and m["event"].get("type") == "CallAbandoned"
        }

    await wait_for(lambda: want <= seen(), what="a CallAbandoned event of every abandon")


async def test_campaign_on_freeswitch(fs_campaign: Fs) -> None:
    f, c = fs_campaign, fs_campaign.client
    name = f"fs-mix-{uuid.uuid4().hex[:6]}"
    await api(c, "POST", "/campaigns", 201, json=campaign_body(name))
    rows: list[tuple[str, str, str]] = []
    kinds: dict[str, str] = {}
    for kind, digits, count in PLAN:
        for i in range(1, count + 1):
            number = f"{digits}{i:02d}"
            rows.append((e164(number), WINDOW_TZ, f"{kind}-{i}"))
            kinds[e164(number)] = kind
            if kind in ("human", "machine"):
                f.fs.tap_audio[f"6{number}"] = HUMAN if kind == "human" else MACHINE
    dnc = [e164("9301"), e164("9302")]
    shut = [e164("9401"), e164("9402")]
    rows += [(p, WINDOW_TZ, "dnc") for p in dnc] + [(p, SHUT_TZ, "shut") for p in shut]
    assert len(rows) == 40
    report = await import_contacts(c, name, rows)
    assert report["loaded"] == 40, report
    await api(c, "POST", "/dnc", json={"phones": dnc})
    await agents_available(f)
    async with event_log(c) as messages:
        desk = asyncio.create_task(agents_talk(c, messages))
        try:
            await api(c, "POST", f"/campaigns/{name}/start")
            await wait_done(c, name, len(kinds), timeout_s=90)
            await _abandons_on_the_socket(f, name, messages)
        finally:
            desk.cancel()
    events = [m["event"] for m in messages if "event" in m]
    attempts = await attempts_of(f, name)
    by_phone: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        by_phone[a["phone"]].append(a)

    # Nothing on DNC or outside its window was dialled (nor sent to the switch).
    assert not set(by_phone) & set(dnc + shut)
    assert set(by_phone) == set(kinds)
    originates = [cmd for cmd in f.fs.received if "originate" in cmd]
    for phone in dnc + shut:
        assert not [cmd for cmd in originates if f"/6{phone[-4:]} " in cmd]
    states = await f.fetch(
        "SELECT phone, state, final_outcome FROM contacts WHERE campaign_id = $1", name
    )
    final = {r["phone"]: (r["state"], r["final_outcome"]) for r in states}
    for phone in dnc + shut:
        assert final[phone] == ("ready", None)

    # Every contact ends in the right final state; retries spaced as configured.
    for phone, kind in kinds.items():
        state, outcome = final[phone]
        tries = by_phone[phone]
        assert state == "done" and outcome in FINAL[kind], (
            phone,
            kind,
            [(t["outcome"], t["cause"], t["sip_code"], t["amd_status"]) for t in tries],
        )
        assert all(t["state"] == "done" for t in tries), tries
        for before, after in itertools.pairwise(tries):
            gap = (after["created_at"] - before["ended_at"]).total_seconds()
            assert gap >= RETRY_S - 0.05, (phone, gap)
        want = {"human": {"human", "abandoned"}, "machine": {"machine"}}.get(kind)
        if want is not None:  # the detector heard each greeting right
            assert {t["outcome"] for t in tries} <= want, (phone, tries)

    # No machine reaches an agent.
    entered = {e["call_id"] for e in events if e.get("type") == "QueueCallEntered"}
    machines = [a for a in attempts if a["outcome"] == "machine"]
    assert len(machines) == 8 * 3
    for a in machines:
        assert a["agent_id"] is None and a["call_id"] not in entered, a

    # Every person reached an agent within the safe-harbour time of the verdict, or was
    # released to engine_safe_harbour (prompt, hangup) and counted as abandoned.
    humans = [a for a in attempts if a["outcome"] in ("human", "abandoned")]
    assert any(a["outcome"] == "human" for a in humans)
    for a in humans:
        assert a["amd_status"] == "HUMAN", a
        if a["outcome"] == "human":
            took = seconds_between(a["amd_at"], a["agent_at"])
            assert took is not None and took <= SAFE_HARBOUR_S + 0.25, a
            assert a["agent_id"] in ("fa1", "fa2"), a
        else:
            assert a["abandoned"] and a["agent_id"] is None, a
            transfer = f"api uuid_transfer {a['call_id']} engine_safe_harbour XML default"
            assert transfer in f.fs.received, a
    abandoned_calls = {e["call_id"] for e in events if e.get("type") == "CallAbandoned"}
    assert abandoned_calls == {a["call_id"] for a in attempts if a["outcome"] == "abandoned"}

    stats = await api(c, "GET", f"/campaigns/{name}/stats")
    assert stats["contacts"]["by_state"].get("done") == 36
    outcomes = Counter(a["outcome"] for a in attempts)
    # Prometheus counts the same attempts by outcome (docs/metrics.md), whether the runner
    # still holds its tally or has handed it to the service.
    status, text, _ = await c.request("GET", "/metrics")
    assert status == 200
    _names, samples = grafana_check.exported(text)
    counted = {
        lab["outcome"]: int(v)
        for n, lab, v in samples
        if n == "engine_campaign_attempts_total" and lab.get("campaign") == name and v
    }
    assert counted == dict(outcomes), (counted, outcomes)
    print(json.dumps({"dials": len(attempts), "outcomes": outcomes}))


async def test_a_person_no_agent_takes_hears_the_safe_harbour_message(fs_campaign: Fs) -> None:
    """Both agents' phones ring and never answer: each person is released after
    safe_harbour_s with ``uuid_transfer ... engine_safe_harbour XML default`` (the prompt,
    then the hangup) and counts as abandoned, final here."""
    f, c = fs_campaign, fs_campaign.client
    name = f"fs-harbour-{uuid.uuid4().hex[:6]}"
    body = campaign_body(name, mode="progressive", abandoned={"final": True})
    await api(c, "POST", "/campaigns", 201, json=body)
    phones = [e164("9501"), e164("9502")]
    for phone in phones:
        f.fs.tap_audio[f"6{phone[-4:]}"] = HUMAN
    await import_contacts(c, name, [(p, WINDOW_TZ, "late") for p in phones])
    await agents_available(f)
    f.fs.agents.update({"agent1": "ring", "agent2": "ring"})
    try:
        async with event_log(c) as messages:
            await api(c, "POST", f"/campaigns/{name}/start")
            await wait_done(c, name, len(phones), timeout_s=30)
            await _abandons_on_the_socket(f, name, messages)
    finally:
        f.fs.agents.update({"agent1": "answer", "agent2": "answer"})
    attempts = await attempts_of(f, name)
    assert sorted(a["phone"] for a in attempts) == sorted(phones)
    for a in attempts:
        assert (a["outcome"], a["abandoned"], a["agent_id"]) == ("abandoned", True, None), a
        assert a["amd_status"] == "HUMAN", a
        transfer = f"api uuid_transfer {a['call_id']} engine_safe_harbour XML default"
        assert transfer in f.fs.received
        # Released at the safe-harbour time, and hung up by the extension after its
        # prompt, not by the far end (which stays up TAP_CALL_S).
        held = seconds_between(a["amd_at"], a["ended_at"])
        assert held is not None and held >= SAFE_HARBOUR_S - 0.05, a
        assert (a["ended_at"] - a["answered_at"]).total_seconds() < TAP_CALL_S, a
    final = await f.fetch("SELECT final_outcome FROM contacts WHERE campaign_id = $1", name)
    assert [r["final_outcome"] for r in final] == ["abandoned", "abandoned"]
    events = [m["event"] for m in messages if "event" in m]
    abandoned = {e["call_id"] for e in events if e.get("type") == "CallAbandoned"}
    assert abandoned == {a["call_id"] for a in attempts}


async def test_a_machines_message_flow_reads_the_contacts_fields(fs_campaign: Fs) -> None:
    """Issue 10, build item 2: custom fields reach IVR variables. A machine's call goes to
    ``amd.machine_flow`` (tests/fixtures/ivr/campaign-message.yaml) over the outbound socket;
    the flow's ``set`` and ``say`` read ``{contact.name}`` and ``{contact.account}``, found by
    the engine from the session's uuid (no contact data in the transfer command)."""
    f, c = fs_campaign, fs_campaign.client
    runtime = f.engine.ivr
    assert runtime is not None
    name = f"fs-message-{uuid.uuid4().hex[:6]}"
    body = campaign_body(name, mode="progressive", machine={"final": True})
    body["spec"]["amd"] = {"enabled": True, "machine_flow": "campaign-message"}
    await api(c, "POST", "/campaigns", 201, json=body)
    phone = e164("9601")
    f.fs.tap_audio[f"6{phone[-4:]}"] = MACHINE
    # A value with the characters FreeSWITCH's syntax gives a meaning ('|', '}', quotes).
    who = "Ann O'Neil | }x{"
    csv = f'phone,tz,name,account,first-name\n{phone},{WINDOW_TZ},"{who}",AC-77,skipped\n'
    await api(
        c,
        "POST",
        f"/campaigns/{name}/contacts",
        data=csv.encode(),
        headers={"Content-Type": "text/csv"},
    )
    runs: list[Any] = []
    real_run = runtime.run

    async def recorded(session: Any, flow_name: str | None = None, preset: Any = None) -> Any:
        result = await real_run(session, flow_name, preset)
        runs.append((session.call_id, result))
        return result

    runtime.run = recorded  # type: ignore[method-assign]
    try:
        await api(c, "POST", f"/campaigns/{name}/start")
        await wait_done(c, name, 1, timeout_s=30)
        await wait_for(lambda: bool(runs), 10, "the machine's message flow ran")
    finally:
        del runtime.run
    (attempt,) = await attempts_of(f, name)
    assert (attempt["outcome"], attempt["amd_status"]) == ("machine", "MACHINE"), attempt
    ((leg, result),) = runs
    assert leg == attempt["call_id"]
    # To its hangup step (the fake's leg reports its own hang-up first, hence no "hangup" end).
    assert result.path == [f"campaign-message:{s}" for s in ("set@0", "say@1", "hangup@2")]
    want = f"Hello {who}, this is about account AC-77"
    assert result.variables["greeting"] == want
    assert result.variables["contact_phone"] == phone
    assert result.variables["contact.campaign"] == name
    assert not any(k.startswith("contact.first") for k in result.variables)
    assert len(result.prompts) == 1  # the say, rendered from the contact's fields
    # The flow reached the switch through the driver's checked transfer, with no field in it.
    transfers = [r for r in f.fs.received if r.startswith(f"api uuid_transfer {leg}")]
    assert transfers and all(who not in t and "AC-77" not in t for t in transfers), transfers
