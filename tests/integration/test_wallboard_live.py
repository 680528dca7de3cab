"""The wallboard on the real Asterisk 22 sandbox: a real call waits in a queue and leaves it,
and the page, in Debian's chromium, follows it from the engine's events alone.

A loopback-carrier call (01XX: answered, up 60 s) is placed through ``self-trunk`` and handed
to the queue ``wb-sales``, which no agent serves: the page shows it waiting (and the trunk's
channel in use, from ``TrunkStats``); the call is hung up: the page shows it abandoned, the
queue's abandon % from ``QueueStats`` and the alert.

The Listen button, heard (the issue's browser test of item 4): three SIPp phones with a real
audio path (tests/media_phone.py, as in tests/integration/test_supervisor_live.py): the caller
``customer1`` says 440 Hz, the agent ``agent1`` 620 Hz, on a real call the ACD bridged. The
supervisor signs in on the page, opens the agent's panel, types the endpoint and clicks
Listen; the phone ``supervisor1`` gets the spy call and, judged by the spectrum of what it
receives, hears both parties, while neither hears its own 1700 Hz tone.

About 15 s of sandbox time in all; run under the sandbox lock:

    flock -o /tmp/asterisk-sandbox.lock .venv/bin/python -m pytest \
        tests/integration/test_wallboard_live.py
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.harness import Client, engine_config, running_engine, wait_for
from tests.integration import sandbox
from tests.media_phone import HEARS, SILENT, MediaPhone
from tests.rtp_media import RtpMedia
from tests.sip_agents import AgentPhones, AgentSpec

pytestmark = pytest.mark.asterisk

CHROMIUM = "/usr/bin/chromium"
QUEUE = """
[[agents]]
id = "wb-agent"
endpoints = { asterisk-1 = "PJSIP/agent1" }
skills = { wbsales = 5 }
[[queues]]
name = "wb-sales"
skills = { wbsales = 5 }
"""
# 01XX numbers of the loopback carrier, away from the ACD scenarios' own counter.
_numbers = itertools.count(71)


async def test_a_real_call_waits_and_abandons_on_the_page(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/host-deps (installs Debian's chromium)")
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"wblive:{uuid.uuid4().hex[:8]}:",
        data_dir=store_data_dir / f"wallboard-live-{uuid.uuid4().hex[:8]}",
        agi_bind_port=0,
        extra=QUEUE,
    )
    cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"live_feed_interval_s": 0.5})})
    async with running_engine(cfg) as (engine, client):
        status, body, _ = await client.request(
            "POST", "/tokens", json={"label": "wallboard live", "role": "supervisor"}
        )
        assert status == 201, body
        token = body["token"]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page.goto(f"http://127.0.0.1:{engine.api_port}/wallboard")
                await page.fill("#token", token)
                await page.click("#login-button")
                await expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
                row = page.locator('#queue-rows tr[data-queue="wb-sales"] td')
                await expect(row.nth(1)).to_have_text("0")

                call = await client.originate(f"01{next(_numbers):02d}", timeout_s=10)
                call_id = call["call_id"]
                await client.wait_state(call_id, "answered", timeout_s=20)
                status, body, _ = await client.request(
                    "POST", "/queues/wb-sales/calls", json={"call_id": call_id}
                )
                assert status == 201, body
                # Waiting, from QueueCallEntered; the trunk's channel, from TrunkStats.
                await expect(row.nth(1)).to_have_text("1", timeout=10_000)
                trunk = page.locator('#trunk-rows tr[data-trunk="self-trunk"] td')
                await expect(trunk.nth(2)).to_have_text("1 / 500", timeout=10_000)

                status, body, _ = await client.request("DELETE", f"/calls/{call_id}")
                assert status in (200, 202), body
                await expect(row.nth(1)).to_have_text("0", timeout=10_000)
                # The abandon, from QueueStats (the ACD's own KPI), and its alert.
                await expect(row.nth(6)).to_have_text("100.0%", timeout=10_000)
                await expect(page.locator("#alert-list")).to_contain_text(
                    "queue wb-sales: abandon 100.0%"
                )
                await expect(trunk.nth(2)).to_have_text("0 / 500", timeout=10_000)
                m = await page.evaluate("window.wallboard.metrics")
                assert m["missing"] == 0 and m["gaps"] == 0
            finally:
                await browser.close()


LISTEN = """
[acd]
supervisor_endpoints = { asterisk-1 = ["PJSIP/supervisor1"] }
[[agents]]
id = "wbspy-a1"
endpoints = { asterisk-1 = "PJSIP/agent1" }
skills = { wbspy = 5 }
[[queues]]
name = "wb-spy"
skills = { wbspy = 5 }
"""
CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 440.0, 620.0, 1700.0


@asynccontextmanager
async def _signed_in_page(api_port: int, client: Client) -> AsyncIterator[Page]:
    """The wallboard in chromium, signed in with a fresh supervisor token, live."""
    status, body, _ = await client.request(
        "POST", "/tokens", json={"label": "wallboard listen", "role": "supervisor"}
    )
    assert status == 201, body
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(f"http://127.0.0.1:{api_port}/wallboard")
            await page.fill("#token", body["token"])
            await page.click("#login-button")
            await expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
            yield page
        finally:
            await browser.close()


async def test_the_listen_button_rings_the_supervisor_who_hears_the_call(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/host-deps (installs Debian's chromium)")
    names = ("customer1", "agent1", "supervisor1")
    medias = {n: await RtpMedia.open() for n in names}
    specs = [AgentSpec(n, mode="media", rtp_port=m.port) for n, m in medias.items()]
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"wbspy:{uuid.uuid4().hex[:8]}:",
        data_dir=store_data_dir / f"wallboard-spy-{uuid.uuid4().hex[:8]}",
        agi_bind_port=0,
        extra=LISTEN,
    )
    try:
        async with (
            AgentPhones(specs) as phones,
            running_engine(cfg) as (engine, c),
            _signed_in_page(engine.api_port, c) as page,
        ):
            caller, agent, supervisor = (MediaPhone(phones[n], medias[n]) for n in names)
            card = page.locator('#agent-grid .agent[data-id="wbspy-a1"]')
            await expect(card).to_have_attribute("data-state", "logged_out", timeout=10_000)
            for action in ("login", "ready"):
                status, body, _ = await c.request("POST", f"/agents/wbspy-a1/{action}")
                assert status == 200, body

            # A real call through the ACD: the caller's phone answers the engine's call, the
            # call is queued, the ACD rings and bridges the agent's phone.
            call = await c.originate("100", trunk=None, endpoint="customer1", timeout_s=10)
            call_id = str(call["call_id"])
            await caller.answered_and_talking(CALLER_HZ)
            await c.wait_state(call_id, "answered")
            status, body, _ = await c.request(
                "POST", "/queues/wb-spy/calls", json={"call_id": call_id}
            )
            assert status == 201, body
            await agent.answered_and_talking(AGENT_HZ)
            await wait_for(lambda: agent.hears(CALLER_HZ) > HEARS, 10, "the agent hears the caller")
            await expect(card).to_have_attribute("data-state", "on_call", timeout=10_000)

            # The supervisor opens the agent's panel and clicks Listen.
            await card.click()
            await expect(page.locator("#panel-detail")).to_contain_text(f"call {call_id}")
            await page.fill("#spy-endpoint", "PJSIP/supervisor1")
            await page.click('#panel button[data-action="spy"][data-mode="listen"]')
            await expect(page.locator("#panel-result")).to_have_text(
                "listen: ringing PJSIP/supervisor1", timeout=10_000
            )

            # The supervisor's phone rings (a spy call) and hears both parties.
            await supervisor.answered_and_talking(SUPERVISOR_HZ)
            await wait_for(
                lambda: supervisor.hears(CALLER_HZ) > HEARS and supervisor.hears(AGENT_HZ) > HEARS,
                10,
                "the supervisor hears the caller and the agent",
            )
            # Listen only: nobody on the call hears the supervisor.
            assert agent.hears(SUPERVISOR_HZ) < SILENT and caller.hears(SUPERVISOR_HZ) < SILENT
            print(
                "listen from the page: supervisor hears "
                f"{CALLER_HZ:g} Hz {supervisor.hears(CALLER_HZ):.3f}, "
                f"{AGENT_HZ:g} Hz {supervisor.hears(AGENT_HZ):.3f}"
            )

            # Stop, from the same panel: the supervisor's phone is hung up, the call goes on.
            byes = len([s for s in supervisor.agent.steps() if s.step == "BYE-RECEIVED"])
            await page.click('#panel button[data-action="spy-stop"]')
            await expect(page.locator("#panel-result")).to_have_text("spy-stop: done")
            await supervisor.agent.wait_for("BYE-RECEIVED", count=byes + 1)
            status, body, _ = await c.request("DELETE", f"/calls/{call_id}")
            assert status == 202, body
            await agent.agent.wait_for("BYE-RECEIVED")
    finally:
        for m in medias.values():
            await m.close()
