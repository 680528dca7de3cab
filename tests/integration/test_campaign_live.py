"""A predictive campaign on the real Asterisk 22 sandbox, with two real SIP agent phones.

40 contacts, imported through the API, mix what the loopback carrier plays by first digit:
people (7XXX: a short hello, then silence), answering machines (6XXX), busy (2XXX), no answer
(4XXX), congestion (3XXX) and declines (9XXX, SIP 603); two are on the DNC list and two live in a
time zone whose calling window is shut. At most 3 counted attempts each, with short retries so
the whole list finishes in the test. It must show (issue 10 "Real parts and tests"):

- every contact ends in the right final state, and retries are spaced as configured;
- no machine reaches an agent;
- every person reaches an agent within the safe-harbour time of the AMD verdict, or hears the
  safe-harbour message and counts as abandoned;
- nothing is dialled outside its window or when on DNC.

The drill kills the engine with SIGKILL mid-campaign and restarts it: no contact is dialled
twice, and every attempt ends with one row.

The final table goes to reports/campaign-live.json (the closing note's figures).

Run under the sandbox lock:
    flock -o /tmp/asterisk-sandbox.lock .venv/bin/python -m pytest \
        tests/integration/test_campaign_live.py
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.campaign_rig import (
    FINAL,
    LENIENT_BREAKER,
    SAFE_HARBOUR_S,
    SHUT_TZ,
    WINDOW_TZ,
    api,
    campaign_body,
    e164,
    import_contacts,
    seconds_between,
    wait_done,
)
from tests.harness import ROOT, Client, engine_config_text, event_log
from tests.integration import sandbox
from tests.integration.engine_process import EngineProcess, free_port
from tests.sip_agents import AgentPhones, AgentSpec

pytestmark = pytest.mark.asterisk

SWITCH = "asterisk-1"
RETRY_S = 3.0
# The carrier's number plan (telephony-config/asterisk/carrier-test.conf) -> what must happen.
PLAN = {
    "7": ("human", 8),
    "6": ("machine", 8),
    "2": ("busy", 6),
    "4": ("no_answer", 5),
    "3": ("congestion", 5),
    "9": ("declined", 4),
}
CONFIG = f"""
# The loopback carrier; 3XXX answers 503 on purpose, which must not open the breaker here.
[[trunks]]
name = "self-trunk"
switch = "{SWITCH}"
target = "self-trunk"
max_channels = 500
max_cps = 1000
cps_burst = 100
{LENIENT_BREAKER}
[[trunk_groups]]
name = "campaign-out"
members = ["self-trunk"]
translations = [{{ match = '^\\+44207946(\\d{{4}})$', replace = '\\1' }}]

[[agents]]
id = "ca1"
endpoints = {{ {SWITCH} = "PJSIP/agent1" }}
skills = {{ camp = 5 }}
[[agents]]
id = "ca2"
endpoints = {{ {SWITCH} = "PJSIP/agent2" }}
skills = {{ camp = 5 }}

[[queues]]
name = "campq"
skills = {{ camp = 5 }}
ring_timeout_s = 10.0
"""

PHONES = [
    AgentSpec("agent1", mode="answer-hangup", hold_s=3.0),
    AgentSpec("agent2", mode="answer-hangup", hold_s=3.0),
]


@dataclass
class Live:
    proc: EngineProcess
    client: Client
    pool: asyncpg.Pool
    work: Path


@pytest.fixture(scope="module")
async def live(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Live]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    work = store_data_dir / f"campaign-live-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    port = free_port()
    prefix = f"camplive:{uuid.uuid4().hex[:8]}:"
    config = work / "engine.toml"
    config.write_text(
        engine_config_text(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=prefix,
            data_dir=work / "engine",
            api_port=port,
            extra=CONFIG,
        )
    )
    proc = EngineProcess(config, port, work / "engine.log", redis_prefix=prefix)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with AgentPhones(PHONES, work / "phones"):
            await proc.start()
            async with aiohttp.ClientSession() as http:
                client = proc.client(http)
                yield Live(proc, client, pool, work)
    finally:
        proc.stop()
        await pool.close()


async def agents_ready(c: Client) -> None:
    """Both agents available (the module's first test may have left them so already)."""
    for agent in ("ca1", "ca2"):
        view = await api(c, "GET", f"/agents/{agent}")
        if view["state"] == "logged_out":
            await api(c, "POST", f"/agents/{agent}/login")
            view = await api(c, "GET", f"/agents/{agent}")
        if view["state"] != "available":
            await api(c, "POST", f"/agents/{agent}/ready")


async def wait_finished(c: Client, campaign: str, timeout_s: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        row = await api(c, "GET", f"/campaigns/{campaign}")
        if row["state"] == "finished":
            return dict(row)
        stats = await api(c, "GET", f"/campaigns/{campaign}/stats")
        assert loop.time() < deadline, f"campaign not finished: {json.dumps(stats)[:2000]}"
        await asyncio.sleep(0.5)


async def attempts_of(pool: asyncpg.Pool, campaign: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT a.*, c.final_outcome, c.state AS contact_state FROM campaign_attempts a "
        "JOIN contacts c USING (contact_id) WHERE a.campaign_id = $1 ORDER BY a.created_at",
        campaign,
    )
    return [dict(r) for r in rows]


async def test_campaign_on_the_real_switch(live: Live) -> None:
    c = live.client
    name = "live-mix"
    await api(c, "POST", "/campaigns", 201, json=campaign_body(name, RETRY_S))
    rows: list[tuple[str, str, str]] = []
    kinds: dict[str, str] = {}
    for digit, (kind, count) in PLAN.items():
        for i in range(1, count + 1):
            phone = e164(f"{digit}{i:03d}")
            rows.append((phone, WINDOW_TZ, f"{kind}-{i}"))
            kinds[phone] = kind
    dnc = [e164("7101"), e164("7102")]
    shut = [e164("7201"), e164("7202")]
    rows += [(p, WINDOW_TZ, "dnc") for p in dnc] + [(p, SHUT_TZ, "shut") for p in shut]
    assert len(rows) == 40
    report = await import_contacts(c, name, rows)
    assert report["loaded"] == 40, report
    for phone in dnc:
        await api(c, "POST", "/dnc", json={"phones": [phone]})
    await agents_ready(c)
    async with event_log(c) as messages:
        await api(c, "POST", f"/campaigns/{name}/start")
        # The DNC and shut-window contacts stay ready: the campaign is not finished, but
        # everything it may dial now is done.
        await wait_done(c, name, len(kinds), timeout_s=420)
    events = [m["event"] for m in messages if "event" in m]
    attempts = await attempts_of(live.pool, name)
    by_phone: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        by_phone[a["phone"]].append(a)

    # Nothing on DNC or outside its window was dialled; everything else was.
    assert not set(by_phone) & set(dnc + shut)
    assert set(by_phone) == set(kinds)
    states = await live.pool.fetch(
        "SELECT phone, state, final_outcome FROM contacts WHERE campaign_id = $1", name
    )
    final = {r["phone"]: (r["state"], r["final_outcome"]) for r in states}
    for phone in dnc + shut:
        assert final[phone] == ("ready", None)

    # Every contact ends in the right final state; retries spaced as configured.
    for phone, kind in kinds.items():
        state, outcome = final[phone]
        assert state == "done" and outcome in FINAL[kind], (
            phone,
            kind,
            [(t["outcome"], t["cause"], t["sip_code"], t["counts"]) for t in by_phone[phone]],
        )
        tries = by_phone[phone]
        assert all(t["state"] == "done" for t in tries), tries
        for before, after in itertools.pairwise(tries):
            gap = (after["created_at"] - before["ended_at"]).total_seconds()
            assert gap >= RETRY_S - 0.05, (phone, gap)

    # No machine reaches an agent.
    offered = {e["call_id"] for e in events if e.get("type") in ("QueueCallEntered",)}
    for a in attempts:
        if a["outcome"] == "machine":
            assert a["agent_id"] is None and a["call_id"] not in offered, a

    # Every person reached an agent within the safe-harbour time of the verdict, or was
    # released with the message and counted as abandoned.
    humans = [a for a in attempts if a["outcome"] in ("human", "abandoned")]
    assert humans
    for a in humans:
        if a["outcome"] == "human":
            took = seconds_between(a["amd_at"], a["agent_at"])
            assert took is not None and took <= SAFE_HARBOUR_S + 0.25, a
        else:
            assert a["agent_id"] is None, a
            if not a["abandoned"]:
                # Hung up waiting while the safe-harbour time still ran: no drop.
                gone = seconds_between(a["amd_at"], a["ended_at"])
                assert gone is not None and gone < SAFE_HARBOUR_S, a
    abandoned_calls = {e["call_id"] for e in events if e.get("type") == "CallAbandoned"}
    assert abandoned_calls <= {a["call_id"] for a in attempts if a["outcome"] == "abandoned"}

    stats = await api(c, "GET", f"/campaigns/{name}/stats")
    table = [
        {
            "contact": phone,
            "kind": kinds[phone],
            "attempts": len(tries),
            "outcomes": [t["outcome"] for t in tries],
            "final": final[phone][1],
            "agent": next((t["agent_id"] for t in tries if t["agent_id"]), None),
            "seconds_answer_to_agent": next(
                (seconds_between(t["answered_at"], t["agent_at"]) for t in tries if t["agent_at"]),
                None,
            ),
            "seconds_answer_to_verdict": next(
                (seconds_between(t["answered_at"], t["amd_at"]) for t in tries if t["agent_at"]),
                None,
            ),
            "seconds_verdict_to_agent": next(
                (seconds_between(t["amd_at"], t["agent_at"]) for t in tries if t["agent_at"]), None
            ),
        }
        for phone, tries in sorted(by_phone.items())
    ]
    first = min(a["created_at"] for a in attempts)
    last = max(a["ended_at"] for a in attempts)
    agent_hours = 2 * (last - first).total_seconds() / 3600
    live_answers = sum(1 for a in attempts if a["outcome"] in ("human", "abandoned"))
    summary = {
        "dials": len(attempts),
        "dials_per_agent_hour": round(len(attempts) / agent_hours, 1),
        "abandon_pct": round(100 * sum(1 for a in attempts if a["abandoned"]) / live_answers, 2),
        "outcomes": dict(Counter(a["outcome"] for a in attempts)),
        "wall_s": round((last - first).total_seconds(), 1),
        "stats": stats,
    }
    out = ROOT / "reports" / "campaign-live.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "table": table}, indent=2, default=str))
    print(json.dumps(summary, default=str))
    assert stats["contacts"]["by_state"].get("done") == 36


async def test_sigkill_mid_campaign_dials_nobody_twice(live: Live) -> None:
    """The drill: SIGKILL while calls are up, restart, and check every contact and attempt."""
    c = live.client
    name = "live-drill"
    # Every outcome is final here: any second attempt of a contact would be a double dial.
    final = {"final": True}
    kinds = ("busy", "no_answer", "machine", "abandoned", "carrier_failure", "interrupted")
    body = campaign_body(name, RETRY_S, mode="progressive", retries=dict.fromkeys(kinds, final))
    await api(c, "POST", "/campaigns", 201, json=body)
    rows = [(e164(f"7{300 + i:03d}"), WINDOW_TZ, f"p{i}") for i in range(10)]
    rows += [(e164(f"4{300 + i:03d}"), WINDOW_TZ, f"r{i}") for i in range(10)]
    await import_contacts(c, name, rows)
    await agents_ready(c)
    async with event_log(c) as messages:
        await api(c, "POST", f"/campaigns/{name}/start")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while sum(1 for m in messages if m.get("event", {}).get("type") == "ContactDialed") < 6:
            assert loop.time() < deadline, "the campaign did not dial"
            await asyncio.sleep(0.05)
    live.proc.kill()
    killed_at = datetime.now(UTC)
    await live.proc.start()
    await wait_finished(c, name, timeout_s=240)
    attempts = await attempts_of(live.pool, name)
    per_contact = Counter(a["contact_id"] for a in attempts)
    dialled_twice = [k for k, n in per_contact.items() if n > 1]
    assert dialled_twice == []
    assert len(per_contact) == 20
    # Every attempt ended with exactly one row, none left open.
    assert {a["state"] for a in attempts} <= {"done"}, Counter(a["state"] for a in attempts)
    assert all(a["outcome"] for a in attempts)
    open_at_kill = [
        a for a in attempts if a["created_at"] < killed_at < (a["ended_at"] or killed_at)
    ]
    report = {
        "contacts": 20,
        "attempts": len(attempts),
        "dialled_twice": len(dialled_twice),
        "open_at_kill": len(open_at_kill),
        "outcomes_of_those": dict(Counter(a["outcome"] for a in open_at_kill)),
        "killed_at": killed_at.isoformat(),
    }
    out = ROOT / "reports" / "campaign-sigkill.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert open_at_kill, "the kill should land while calls were up"


async def test_a_callee_who_hangs_up_while_the_amd_listens_is_no_answer(live: Live) -> None:
    """1XXX answers, plays hello-world, waits 2 s and hangs up (carrier-test.conf): app_amd
    ends with HANGUP. Not a person handed over, not an abandon: ``no_answer``, the verdict in
    the row and in CampaignAmdResult, never a queue entry, nothing in the abandon figures.
    (Before the fix each was queued as a person and counted abandoned: 100 %.)"""
    c = live.client
    name = "live-gone"
    kinds = ("busy", "no_answer", "machine", "abandoned", "carrier_failure", "interrupted")
    final = {"final": True}
    body = campaign_body(name, RETRY_S, mode="progressive", retries=dict.fromkeys(kinds, final))
    await api(c, "POST", "/campaigns", 201, json=body)
    await import_contacts(
        c, name, [(e164(f"1{400 + i:03d}"), WINDOW_TZ, f"g{i}") for i in range(3)]
    )
    await agents_ready(c)
    async with event_log(c) as messages:
        await api(c, "POST", f"/campaigns/{name}/start")
        await wait_finished(c, name, timeout_s=90)
    attempts = await attempts_of(live.pool, name)
    assert len(attempts) == 3
    for a in attempts:
        assert a["answered_at"] is not None, a
        assert (a["amd_status"], a["outcome"], a["abandoned"]) == ("HANGUP", "no_answer", False), a
        assert a["agent_id"] is None and a["final_outcome"] == "no_answer", a
    calls = {a["call_id"] for a in attempts}
    events = [m.get("event", {}) for m in messages]
    assert not [
        e for e in events if e.get("type") == "QueueCallEntered" and e.get("call_id") in calls
    ]
    verdicts = [
        e for e in events if e.get("type") == "CampaignAmdResult" and e.get("call_id") in calls
    ]
    assert sorted(e["status"] for e in verdicts) == ["HANGUP"] * 3, verdicts
    stats = await api(c, "GET", f"/campaigns/{name}/stats")
    assert (stats["period"]["human"], stats["period"]["abandoned"]) == (0, 0), stats
    assert stats["period"]["abandon_pct"] == 0.0
