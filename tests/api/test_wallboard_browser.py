"""``/wallboard`` in a real browser (Debian's chromium driven by Playwright) against the whole
engine with real PostgreSQL and Redis (the switch is the fake AMI carrier: the page reads the
engine's API and event stream, which are the same whatever the switch).

One engine, one browser and one signed-in page for the module; the tests run in order (the
second drops the socket of the page the first signed in).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Request, WebSocket, async_playwright, expect

from engine.api.events_ws import EVENT_SOCKETS
from engine.app import Engine
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import Client, engine_config, running_engine

CHROMIUM = "/usr/bin/chromium"
STREAM_MAXLEN = 1000
ACD = """
[acd]
pause_reasons = ["break", "lunch"]
[[agents]]
id = "alice"
name = "Alice"
endpoints = { asterisk-1 = "PJSIP/agent1" }
skills = { sales = 9 }
[[agents]]
id = "bob"
endpoints = { asterisk-1 = "PJSIP/agent2" }
skills = { sales = 5, tech = 5 }
[[agents]]
id = "carol"
endpoints = { asterisk-1 = "PJSIP/agent3" }
skills = { tech = 7 }
[[queues]]
name = "sales"
skills = { sales = 5 }
[[queues]]
name = "tech"
skills = { tech = 5 }
[[trunk_groups]]
name = "outbound"
members = ["self-trunk"]
"""


@dataclass
class Board:
    engine: Engine
    client: Client
    token: str  # a supervisor's
    page: Page
    base: str
    requests: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def board(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Board]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/host-deps (installs Debian's chromium)")
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"wb:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-wallboard",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=ACD,
        )
        # Summary events every 0.5 s (2 s by default); the harness writes the [api] table.
        api_cfg = cfg.api.model_copy(update={"live_feed_interval_s": 0.5})
        # The smallest history the config allows, so the gap test can outrun it.
        storage = cfg.storage.model_copy(update={"event_stream_maxlen": STREAM_MAXLEN})
        cfg = cfg.model_copy(update={"api": api_cfg, "storage": storage})
        async with running_engine(cfg) as (engine, client):
            status, body, _ = await client.request(
                "POST", "/tokens", json={"label": "wallboard test", "role": "supervisor"}
            )
            assert status == 201, body
            async with async_playwright() as pw:
                browser: Browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 900})
                    base = f"http://127.0.0.1:{engine.api_port}"
                    b = Board(engine, client, body["token"], page, base)

                    def note(request: Request) -> None:
                        b.requests.append(request.url)

                    def socket(ws: WebSocket) -> None:
                        b.sockets.append(ws.url)

                    page.on("request", note)
                    page.on("websocket", socket)
                    yield b
                finally:
                    await browser.close()


async def _as_supervisor(b: Board, method: str, path: str, **kw: Any) -> Any:
    status, body, _ = await b.client.request(method, path, token=b.token, **kw)
    assert status == 200, (method, path, body)
    return body


def _card(b: Board, agent: str) -> Any:
    return b.page.locator(f'.agent[data-id="{agent}"]')


async def test_page_loads_signs_in_and_shows_an_agent_change(board: Board) -> None:
    b, page = board, board.page
    await page.goto(f"{b.base}/wallboard")
    await expect(page.locator("#login-form")).to_be_visible()
    await page.fill("#token", b.token)
    await page.click("#login-button")
    await expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    await expect(_card(b, "alice")).to_have_attribute("data-state", "logged_out")
    await expect(page.locator("#queue-rows tr")).to_have_count(2)
    await expect(page.locator('#trunk-rows tr[data-trunk="self-trunk"]')).to_be_visible()
    # Today's chart starts from the interval report (GET /v1/reports/queues).
    await page.wait_for_function("window.wallboard.metrics.historyReads >= 1", timeout=15_000)
    await expect(page.locator("#chart-note")).to_have_text("")
    assert any("/v1/reports/queues?" in url for url in b.requests), b.requests

    body = await _as_supervisor(b, "POST", "/agents/alice/login")
    assert body["state"] == "paused"
    await expect(_card(b, "alice")).to_have_attribute("data-state", "paused", timeout=10_000)
    await expect(_card(b, "alice").locator(".i")).to_have_text("reason: login")
    await _as_supervisor(b, "POST", "/agents/alice/ready")
    await expect(_card(b, "alice")).to_have_attribute("data-state", "available", timeout=10_000)
    seen = await page.evaluate("window.wallboard.metrics.agentSeen.alice")
    # From the change's timestamp in the engine to the DOM write in the page: a figure for
    # the report (docs/wallboard.md), not asserted (no speed in tests).
    print(f"agent change -> DOM: {seen['latencyMs']:.0f} ms")
    # The queue's "agents" column counts her as available among those signed in.
    sales = page.locator('#queue-rows tr[data-queue="sales"] td').nth(7)
    await expect(sales).to_have_text("1 / 1", timeout=10_000)

    # The supervisor's token never went into a URL; the socket was opened with a ticket.
    assert all(b.token not in url for url in b.requests + b.sockets)
    assert b.sockets and all("ticket=wst_" in url for url in b.sockets)
    assert all(url.startswith(b.base) or url.startswith("ws://127.0.0.1") for url in b.requests)
    # The supervisor's pause button goes through the API.
    await _card(b, "alice").click()
    await page.select_option("#pause-reason", "break")
    await page.click('#panel button[data-action="pause"]')
    await expect(page.locator("#panel-result")).to_have_text("pause: done")
    await expect(_card(b, "alice").locator(".i")).to_have_text("reason: break", timeout=10_000)
    # Listen goes to the supervisor controls' route (issue 14 item 4): alice has no call to
    # listen to, and the page shows the engine's reason.
    await page.fill("#spy-endpoint", "PJSIP/supervisor1")
    await page.click('#panel button[data-mode="listen"]')
    result = page.locator("#panel-result")
    await expect(result).not_to_have_text("pause: done")
    text = await result.text_content()
    assert text is not None and "not on a call" in text, text
    # The other controls of item 4 (force-pause with a note for the audit trail).
    await page.fill("#note", "coaching")
    await page.click('#panel button[data-action="force-pause"]')
    await expect(result).not_to_have_text(text)
    forced = await result.text_content()
    assert forced == "force-pause: done", forced


async def test_after_a_socket_drop_the_page_resumes_with_no_lost_update(board: Board) -> None:
    b, page = board, board.page
    await wait_for_connected(b)
    before = await page.evaluate("window.wallboard.metrics.lastSeq")
    assert isinstance(before, int)
    snapshots = await page.evaluate("window.wallboard.metrics.snapshots")
    # The page may reconnect only when told, so the changes below happen while it is away.
    await page.evaluate("window.wallboard.holdReconnect = true")
    app = b.engine.app
    assert app is not None
    sockets = list(app[EVENT_SOCKETS].sockets)
    assert sockets, "the page has no event socket open"
    for ws in sockets:
        await ws.close(code=1012, message=b"dropped by the test")
    await page.wait_for_function("() => !window.wallboard.connected()")
    await expect(page.locator("#conn")).to_have_text("reconnecting", timeout=15_000)
    # The last event the page had when its socket went: summary events (every 0.5 s while
    # figures change) may still have arrived after `before` was read, so the resume is
    # checked against this, not against `before`. Nothing can arrive while it is away.
    at_drop = await page.evaluate("window.wallboard.metrics.lastSeq")
    assert isinstance(at_drop, int) and at_drop >= before

    # Every kind of change while the page is away, several per agent.
    await _as_supervisor(b, "POST", "/agents/bob/login")
    await _as_supervisor(b, "POST", "/agents/bob/ready")
    await _as_supervisor(b, "POST", "/agents/carol/login")
    await _as_supervisor(b, "POST", "/agents/alice/pause", json={"reason": "lunch"})
    await _as_supervisor(b, "POST", "/agents/carol/logout")
    await _as_supervisor(b, "POST", "/agents/carol/login")
    assert b.engine.event_lane is not None
    assert await b.engine.event_lane.wait_drained(10)
    assert b.engine.redis is not None
    head = await app[EVENT_SOCKETS].stream.last_seq()
    assert head >= at_drop + 6

    await page.evaluate("window.wallboard.holdReconnect = false")
    await expect(_card(b, "bob")).to_have_attribute("data-state", "available", timeout=15_000)
    await expect(_card(b, "carol")).to_have_attribute("data-state", "paused", timeout=15_000)
    await expect(_card(b, "carol").locator(".i")).to_have_text("reason: login", timeout=15_000)
    await expect(_card(b, "alice").locator(".i")).to_have_text("reason: lunch", timeout=15_000)
    await page.wait_for_function(f"() => window.wallboard.metrics.lastSeq >= {head}")
    m = await page.evaluate("window.wallboard.metrics")
    # It resumed from the last event it had, got every one after it, and did not need to
    # read the state again (which would hide a lost event).
    assert at_drop in m["resumes"], (at_drop, m["resumes"])
    assert m["missing"] == 0 and m["gaps"] == 0
    assert m["snapshots"] == snapshots
    assert m["reconnects"] >= 1


async def test_when_the_missed_events_are_no_longer_kept_the_page_reads_the_state_again(
    board: Board,
) -> None:
    b, page = board, board.page
    await wait_for_connected(b)
    m = await page.evaluate("window.wallboard.metrics")
    snapshots, gaps = m["snapshots"], m["gaps"]
    await page.evaluate("window.wallboard.holdReconnect = true")
    await page.evaluate("window.wallboard.dropSocket()")
    await page.wait_for_function("() => !window.wallboard.connected()")
    # A change the page must show, then more events than the stream keeps: the change is
    # trimmed away before the page comes back.
    await _as_supervisor(b, "POST", "/agents/bob/pause", json={"reason": "break"})
    lane = b.engine.event_lane
    assert lane is not None
    for n in range(STREAM_MAXLEN + 400):
        lane.put({"type": "WallboardTestFiller", "ts": time.time(), "n": n})
    assert await lane.wait_drained(30)

    await page.evaluate("window.wallboard.holdReconnect = false")
    await page.wait_for_function(f"() => window.wallboard.metrics.snapshots > {snapshots}")
    await expect(_card(b, "bob")).to_have_attribute("data-state", "paused", timeout=15_000)
    await expect(_card(b, "bob").locator(".i")).to_have_text("reason: break")
    m = await page.evaluate("window.wallboard.metrics")
    assert m["gaps"] == gaps + 1 and m["missing"] == 0
    # Still live after the re-read.
    await _as_supervisor(b, "POST", "/agents/bob/ready")
    await expect(_card(b, "bob")).to_have_attribute("data-state", "available", timeout=10_000)


async def wait_for_connected(b: Board) -> None:
    page = b.page
    await page.wait_for_function("() => window.wallboard && window.wallboard.connected()")
    # Something must have arrived, so the page has a sequence to resume from. On a quiet
    # engine nothing may come by itself after a (re)load of the page (summary events only
    # follow changing figures), so publish one.
    lane = b.engine.event_lane
    assert lane is not None
    lane.put({"type": "WallboardTestFiller", "ts": time.time(), "n": -1})
    await page.wait_for_function("() => window.wallboard.metrics.lastSeq !== null")


async def test_wallboard_files_are_served_and_unknown_ones_refused(board: Board) -> None:
    for name, kind in (("wallboard.js", "text/javascript"), ("wallboard.css", "text/css")):
        async with board.client.http.get(f"{board.base}/wallboard/{name}") as r:
            assert r.status == 200 and r.content_type == kind
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    async with board.client.http.get(f"{board.base}/wallboard/index.html") as r:
        assert r.status == 404
        assert (await r.json())["error_id"] == "not-found"


async def test_a_draft_campaign_shows_its_limit_and_a_long_trunk_failure_stays_in_its_tile(
    board: Board,
) -> None:
    # Found on the sandbox (make run): a campaign not running nor paused showed "0.00% / 0%"
    # (its limit only came from the stats route), and a trunk's last failure ran past the
    # right edge of the trunks tile.
    b, page = board, board.page
    status, body, _ = await b.client.request(
        "POST",
        "/campaigns",
        json={
            "name": "wb-draft",
            "spec": {"trunk_group": "outbound", "queue": "sales", "abandon_limit": 0.05},
        },
    )
    assert status == 201, body
    await page.goto(f"{b.base}/wallboard")
    if await page.locator("#login-form").is_visible():
        await page.fill("#token", b.token)
        await page.click("#login-button")
    await expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    row = page.locator('#campaign-rows tr[data-campaign="wb-draft"]')
    await expect(row.locator("td").nth(1)).to_have_text("draft", timeout=10_000)
    await expect(row.locator("td").nth(3)).to_have_text("0.00% / 5%")

    cell = page.locator('#trunk-rows tr[data-trunk="self-trunk"] td').last
    await cell.evaluate(
        "(td) => { td.textContent = '503 Circuit/channel congestion (carrier said: all "
        "circuits busy now, try again later) 12:53:34 AM'; }"
    )
    overflow = await page.evaluate(
        "() => { const t = document.querySelector('.trunks'); "
        "return t.scrollWidth - t.clientWidth; }"
    )
    assert overflow <= 0, f"the trunks tile overflows by {overflow} px"


async def test_a_move_between_queues_moves_the_agent_in_the_queues_agents_column(
    board: Board,
) -> None:
    # Found walking the supervisor's flows: after "Move" the queue rows still counted the agent
    # in the queue it left (and not in the one it joined) until the page was reloaded: the page
    # ignored the move's AgentSupervised event.
    b, page = board, board.page
    await wait_for_connected(b)
    bob = await _as_supervisor(b, "GET", "/agents/bob")
    if bob["state"] == "logged_out":
        await _as_supervisor(b, "POST", "/agents/bob/login")
    if bob["state"] != "available":
        await _as_supervisor(b, "POST", "/agents/bob/ready")
    bob = await _as_supervisor(b, "GET", "/agents/bob")
    assert bob["state"] == "available" and "sales" in bob["queues"], bob

    def cell(queue: str) -> Any:
        return page.locator(f'#queue-rows tr[data-queue="{queue}"] td').nth(7)

    async def expect_engine_figures() -> None:
        views = (await _as_supervisor(b, "GET", "/queues"))["queues"]
        for v in views:
            available = len(v["agents"]["available"])
            staffed = sum(len(ids) for st, ids in v["agents"].items() if st != "logged_out")
            await expect(cell(v["name"])).to_have_text(f"{available} / {staffed}", timeout=10_000)

    await expect_engine_figures()
    moved = await _as_supervisor(
        b, "POST", "/agents/bob/move", json={"from": "sales", "to": "tech"}
    )
    assert moved["queues"] == ["tech"]
    await expect_engine_figures()
    # His next change counts in tech only.
    await _as_supervisor(b, "POST", "/agents/bob/pause", json={"reason": "break"})
    await expect(_card(b, "bob")).to_have_attribute("data-state", "paused", timeout=10_000)
    await expect_engine_figures()


async def test_at_midnight_the_chart_starts_a_new_day(board: Board) -> None:
    # A wall display runs for days. Found reading the chart code: after local midnight every
    # call fell outside the day's 96 intervals (counted from the midnight the page was loaded
    # at) and yesterday's bars stayed, until a reload. A call stamped just after the next
    # midnight stands for time passing (the engine's clock cannot be moved).
    b, page = board, board.page
    await wait_for_connected(b)
    lane = b.engine.event_lane
    assert lane is not None
    midnight = await page.evaluate(
        "() => { const d = new Date(); d.setHours(24, 0, 0, 0); return d.getTime() / 1000; }"
    )
    today = min(time.time(), midnight - 60)

    # The height of the "offered" bar of one 15-minute interval of the chart.
    height = (
        "(i) => { const g = document.querySelectorAll('#chart g')[i]; "
        "return g ? Number(g.querySelector('rect.offered').getAttribute('height')) : 0; }"
    )
    now_bucket = await page.evaluate(
        "(t) => { const d = new Date(t * 1000); "
        "return d.getHours() * 4 + Math.floor(d.getMinutes() / 15); }",
        today,
    )
    # A call today, then one at 00:31 tomorrow (a queue the page does not show: only the chart).
    lane.put({"type": "QueueCallEntered", "ts": today, "queue": "wb-none", "entry_id": "t1"})
    assert await lane.wait_drained(10)
    await page.wait_for_function(f"(i) => ({height})(i) > 0", arg=now_bucket, timeout=10_000)
    lane.put(
        {"type": "QueueCallEntered", "ts": midnight + 1860, "queue": "wb-none", "entry_id": "t2"}
    )
    assert await lane.wait_drained(10)
    await page.wait_for_function(f"(i) => ({height})(i) > 0", arg=2, timeout=10_000)
    if now_bucket != 2:
        assert await page.evaluate(height, now_bucket) == 0, "yesterday's bar stayed"
