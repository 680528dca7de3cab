"""A running campaign whose switch link is not up yet does not dial (docs/campaigns.md
"Waiting for the switch").

The defect (found by an audit of the campaign PG-outage drill): right after a (re)start, the
runner dialled before the switch link (ESL here) was connected and synced; the calls service
refused each originate (no trunk usable, cause 38) and every contact so claimed ended
``carrier_failure``: never placed, yet retried only after the rule's 5 minutes (and spending
one of its ``max_uncounted_attempts``). Here the engine starts with its FreeSWITCH (the fake
ESL peer) not listening yet; a progressive campaign of busy numbers is started with both
agents available, so its policy wants to dial at once. While the link is down the runner
takes turns and claims nothing: no attempt row, every contact still ``ready`` and untouched.
Once the fake listens and the link is up, every contact is dialled (each number once) and ends
``busy``, with no ``carrier_failure`` anywhere.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from engine.app import Engine
from engine.pbx.base import LinkState
from tests.api.test_campaign_freeswitch import CONFIG, RETRY_S, SWITCH
from tests.campaign_rig import WINDOW_TZ, api, campaign_body, e164, import_contacts, wait_done
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import Client, engine_config, freeswitch_switch_toml, wait_for
from tests.integration.engine_process import free_port

BUSY = [f"20{i:02d}" for i in range(1, 7)]
DIALLED = re.compile(r"sofia/gateway/[^/ ]+/(\d+)")


async def test_a_campaign_waits_for_its_switch_link_and_dials_once_it_is_up(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    esl_port = free_port()  # the fake FreeSWITCH listens there only later
    fs = FakeFreeSwitch(time_scale=0.05, port=esl_port)
    name = f"linkdown-{uuid.uuid4().hex[:6]}"
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"camplink:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / f"engine-camp-linkdown-{uuid.uuid4().hex[:6]}",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=freeswitch_switch_toml(SWITCH, fs.host, esl_port, fs.password) + CONFIG,
        )
        try:
            async with Engine(cfg) as engine, aiohttp.ClientSession() as http:
                c = Client(http, f"http://127.0.0.1:{engine.api_port}/v1")
                driver = engine.drivers[SWITCH]

                def link_up() -> bool:
                    return driver.state is LinkState.UP

                assert not link_up()
                # The default carrier_failure rule (5 min, not counted); a busy is final.
                body = campaign_body(name, RETRY_S, mode="progressive")
                body["spec"]["retries"] = {"busy": {"final": True}}
                await api(c, "POST", "/campaigns", 201, json=body)
                report = await import_contacts(
                    c, name, [(e164(n), WINDOW_TZ, f"b{n}") for n in BUSY]
                )
                assert report["loaded"] == len(BUSY), report
                for agent in ("fa1", "fa2"):
                    await api(c, "POST", f"/agents/{agent}/login")
                    await api(c, "POST", f"/agents/{agent}/ready")
                await api(c, "POST", f"/campaigns/{name}/start")

                # The runner takes turns while the link is down (its lease held, its
                # decision renewed several times): each would have dialled on the base.
                assert engine.campaigns is not None
                service = engine.campaigns
                turns: list[float] = []

                def turned() -> bool:
                    runner = service.runners.get(name)
                    at = runner.last_decision.get("at") if runner is not None else None
                    if at is not None and (not turns or turns[-1] != at):
                        turns.append(at)
                    return len(turns) >= 5

                await wait_for(turned, 20, "five runner turns with the switch link down")
                assert not link_up(), "the link must still be down here"
                assert engine.pg is not None
                pool = engine.pg.pool
                rows = await pool.fetch(
                    "SELECT outcome, state FROM campaign_attempts WHERE campaign_id = $1", name
                )
                assert [dict(r) for r in rows] == [], "contacts claimed while the link was down"
                contacts = await pool.fetch(
                    "SELECT state, attempts, rank, next_at FROM contacts WHERE campaign_id = $1",
                    name,
                )
                assert {(r["state"], r["attempts"], r["rank"]) for r in contacts} == {
                    ("ready", 0, 2)
                }, [dict(r) for r in contacts]
                # ... and says why it waits.
                why = str(service.runners[name].last_decision.get("blocked"))
                assert "link not up" in why, service.runners[name].last_decision

                # The switch comes up: every contact is dialled soon after.
                await fs.start()
                await wait_for(link_up, 30, "the switch link to come up")
                await wait_done(c, name, len(BUSY), timeout_s=30)
                attempts: list[dict[str, Any]] = [
                    dict(r)
                    for r in await pool.fetch(
                        "SELECT phone, outcome, trunk, counts FROM campaign_attempts "
                        "WHERE campaign_id = $1",
                        name,
                    )
                ]
        finally:
            await fs.stop()
    assert Counter(a["outcome"] for a in attempts) == {"busy": len(BUSY)}, attempts
    assert sorted(a["phone"] for a in attempts) == sorted(e164(n) for n in BUSY)
    assert all(a["trunk"] == "fs-carrier" for a in attempts), attempts
    originates = Counter(
        m.group(1) for cmd in fs.received if "originate" in cmd and (m := DIALLED.search(cmd))
    )
    assert originates == Counter({f"6{n}": 1 for n in BUSY}), originates
