"""The wallboard on the real Asterisk 22 sandbox: a real call waits in a queue and leaves it,
and the page, in Debian's chromium, follows it from the engine's events alone.

A loopback-carrier call (01XX: answered, up 60 s) is placed through ``self-trunk`` and handed
to the queue ``wb-sales``, which no agent serves: the page shows it waiting (and the trunk's
channel in use, from ``TrunkStats``); the call is hung up: the page shows it abandoned, the
queue's abandon % from ``QueueStats`` and the alert. About 10 s of sandbox time; run under the
sandbox lock:

    flock -o /tmp/asterisk-sandbox.lock .venv/bin/python -m pytest \
        tests/integration/test_wallboard_live.py
"""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from tests.harness import engine_config, running_engine
from tests.integration import sandbox

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
