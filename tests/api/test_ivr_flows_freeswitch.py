"""Issue 12's real-parts IVR flows on FreeSWITCH (the fake ESL peer), through the whole engine
(real PostgreSQL and Redis), as tests/integration/test_ivr_flows_live.py runs them on the real
Asterisk: the engine originates a call whose answered leg runs the flow over the outbound
socket (``then: ivr``), the far end keys what the test set (``fs.far_end_digits``).

- a webhook to a local test HTTP server (its HMAC signature checked) sets variables, and a
  condition branches on them;
- a `split` variant is recorded on the call (``IvrSplit``) and in its CDR;
- a `transfer` to a dialplan target sends ``uuid_transfer`` and ends the flow "transferred".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.ivr.webhook import verify
from engine.store.pg.pool import PgStore
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
from tests.integration.engine_process import free_port

SWITCH = "freeswitch-1"
SECRET = "fs-flow-secret"

WEBHOOK = """\
name: fs-webhook
variables: {{tier: "", balance: 0}}
steps:
  - answer
  - id: ask
    gather: {{prompt: beep, into: account, max_digits: 4, timeout_s: 6, on_timeout: vip_check}}
  - id: crm
    webhook:
      url: "http://127.0.0.1:{port}/crm/{{account}}"
      method: POST
      body: {{account: "{{account}}"}}
      map: {{tier: customer.tier, balance: customer.balance}}
      timeout_s: 2
      on_error: normal
  - id: vip_check
    if: tier == "gold" and balance > 100
    then: vip
    else: normal
  - id: vip
    set: {{greeting: "gold {{account}}"}}
  - hangup
  - id: normal
    set: {{greeting: "plain {{account}}"}}
  - hangup
"""

SPLIT = """\
name: fs-split
steps:
  - answer
  - split:
      name: greeting
      variants:
        short: {share: 50, goto: short}
        long: {share: 50, goto: long}
  - id: short
    play: beep
  - hangup
  - id: long
    play: beep
  - hangup
"""

TRANSFER = """\
name: fs-transfer
steps:
  - answer
  - transfer: {dialplan: {context: customers, exten: s}, on_error: failed}
  - id: failed
    hangup:
"""


class Crm:
    """The CRM the webhook step calls: checks the signature, answers by account."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(SECRET, request.headers, request.method, str(request.url), body)
        self.seen.append((request.path, ok, json.loads(body)))
        if not ok:
            return web.json_response({"error": "bad signature"}, status=401)
        tier = "gold" if request.match_info["account"] == "4242" else "silver"
        return web.json_response({"customer": {"tier": tier, "balance": 150.5}})


@dataclass
class Rig:
    client: Client
    fs: FakeFreeSwitch
    crm: Crm


@pytest.fixture(scope="module")
async def rig(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Rig]:
    crm = Crm()
    app = web.Application()
    app.router.add_post("/crm/{account}", crm.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    base = store_data_dir / f"ivr-fs-{uuid.uuid4().hex[:6]}"
    flows = base / "ivr"
    flows.mkdir(parents=True)
    (flows / "fs-webhook.yaml").write_text(WEBHOOK.format(port=port))
    (flows / "fs-split.yaml").write_text(SPLIT)
    (flows / "fs-transfer.yaml").write_text(TRANSFER)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ENGINE_IVR_WEBHOOK_SECRET", SECRET)
            # 66XXX stays up until our leg's IVR session ends (or long_call_s).
            async with CarrierFakeAmi() as ami, FakeFreeSwitch(time_scale=0.05) as fs:
                fs.long_call_s = 30.0
                switch = freeswitch_switch_toml(
                    SWITCH, fs.host, fs.port, fs.password, outbound_port=free_port()
                )
                extra = f"""{switch}
[[trunks]]
name = "fs-good"
switch = "{SWITCH}"
target = "carrier"
max_channels = 20
max_cps = 20
"""
                cfg = engine_config(
                    pg_dsn=pg_dsn,
                    redis_url=redis_url,
                    prefix=f"ivrfs:{uuid.uuid4().hex[:8]}:",
                    data_dir=base / "engine",
                    ami_port=ami.port,
                    agi_bind_port=0,
                    ivr_dir=flows,
                    extra=extra,
                )
                async with running_engine(cfg) as (engine, client):
                    assert engine.ivr is not None and engine.ivr.errors == []
                    yield Rig(client, fs, crm)
    finally:
        await runner.cleanup()


def _ivr_events(log: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [
        m["event"]
        for m in list(log)
        if isinstance(m.get("event"), dict)
        and m["event"].get("call_id") == call_id
        and str(m["event"].get("type", "")).startswith("Ivr")
    ]


async def _run_call(rig: Rig, number: str, flow: str) -> tuple[str, list[dict[str, Any]]]:
    """Originate ``number`` through the fake carrier with ``then: ivr``; the call's IVR events
    once the flow has ended."""
    async with event_log(rig.client) as log:
        call = await rig.client.originate(
            number, trunk="fs-good", then={"kind": "ivr", "flow": flow}, timeout_s=10
        )
        call_id = call["call_id"]
        await wait_for(
            lambda: any(
                e["type"] in ("IvrFinished", "IvrFailed") for e in _ivr_events(log, call_id)
            ),
            timeout_s=30,
            what=f"the end of {flow}",
        )
        await rig.client.wait_state(call_id, "ended", timeout_s=30)
        return call_id, _ivr_events(log, call_id)


def _finished(events: list[dict[str, Any]]) -> dict[str, Any]:
    (done,) = [e for e in events if e["type"] in ("IvrFinished", "IvrFailed")]
    return done


def _steps(done: dict[str, Any]) -> list[str]:
    return [p.split(":", 1)[1] for p in done.get("path", [])]


@pytest.mark.parametrize(("account", "branch"), [("4242", "vip"), ("1111", "normal")])
async def test_webhook_sets_variables_and_a_condition_branches_on_them(
    rig: Rig, account: str, branch: str
) -> None:
    number = f"66{uuid.uuid4().int % 1000:03d}"
    rig.fs.far_end_digits[number] = account
    before = len(rig.crm.seen)
    _, events = await _run_call(rig, number, "fs-webhook")
    done = _finished(events)
    assert done["reason"] == "completed", done
    assert _steps(done)[1:5] == ["ask", "crm", "vip_check", branch], done
    path, signed, body = rig.crm.seen[before]
    assert (path, signed, body["account"]) == (f"/crm/{account}", True, account)
    (hook,) = [e for e in events if e["type"] == "IvrWebhook"]
    assert hook["ok"] is True
    (typed,) = [e for e in events if e["type"] == "IvrInput"]
    assert typed["digits"] == account


async def test_split_variant_is_on_the_call_and_in_its_cdr(rig: Rig, pg_store: PgStore) -> None:
    call_id, events = await _run_call(rig, f"66{uuid.uuid4().int % 1000:03d}", "fs-split")
    done = _finished(events)
    assert done["reason"] == "completed", done
    (split,) = [e for e in events if e["type"] == "IvrSplit"]
    assert split["variant"] in ("short", "long")
    assert split["variant"] in _steps(done), done
    (row,) = await stored_cdrs(pg_store.pool, call_id)
    assert row.variables.get("ivr_split.greeting") == split["variant"]


async def test_transfer_to_a_dialplan_target(rig: Rig) -> None:
    call_id, events = await _run_call(rig, f"66{uuid.uuid4().int % 1000:03d}", "fs-transfer")
    done = _finished(events)
    assert (done["reason"], done["target"]) == ("transferred", "dialplan:customers,s,1"), done
    status, call, _ = await rig.client.request("GET", f"/calls/{call_id}")
    assert status == 200 and call["then"]["kind"] == "dialplan", call
    sent = [c for c in rig.fs.received if c.startswith(f"api uuid_transfer {call_id} ")]
    assert sent == [f"api uuid_transfer {call_id} s XML customers"], rig.fs.received[-6:]
