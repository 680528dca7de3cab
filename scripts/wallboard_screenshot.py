"""Screenshots of the wallboard with live data: docs/img/wallboard.png (and -agent.png).

The rig of bench/wallboard.py (the whole engine in this process, real PostgreSQL and Redis,
the fake AMI carrier), sized for one screen: 120 agents and 8 queues. What is on the page:

- campaigns: real ones, created, given contacts and started (and one paused) through the API;
  no agent of the engine's own ACD is signed in, so their runners dial nothing and their figures
  (state, dial level, abandon against the limit, contacts left) are the engine's own;
- agents, callers and queue KPIs: the bench's synthetic events (bench.wallboard.Load) put on the
  event lane for 40 s, as in the benchmark;
- a trunk that fails: a synthetic ``TrunkStateChanged`` to ``down`` with a SIP 503.

    ENGINE_TEST_PG_DSN=... ENGINE_TEST_REDIS_URL=... python scripts/wallboard_screenshot.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make `engine` and `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.wallboard import Load, drive, rig, signed_in_page  # noqa: E402
from tests.campaign_rig import window_now  # noqa: E402

OUT = ROOT / "docs" / "img"
EXTRA = """
[[trunks]]
name = "carrier-b"
switch = "asterisk-1"
target = "carrier-b"
max_channels = 60
max_cps = 10
cps_burst = 5
[[trunk_groups]]
name = "outbound"
members = ["self-trunk", "carrier-b"]
"""


def _campaign(name: str, queue: str) -> dict[str, object]:
    start, end = window_now()
    return {
        "name": name,
        "spec": {
            "mode": "predictive",
            "trunk_group": "outbound",
            "queue": queue,
            "abandon_limit": 0.03,
            "window": {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": start,
                "end": end,
            },
        },
    }


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    async with rig(agents=120, queues=8, extra=EXTRA) as r:
        c = r.client
        for name, queue, contacts in (
            ("spring-renewals", r.queues[0], 1800),
            ("winback-q4", r.queues[3], 650),
        ):
            status, body, _ = await c.request("POST", "/campaigns", json=_campaign(name, queue))
            assert status == 201, body
            rows = "\n".join(f"+1212555{n:04d},Contact {n}" for n in range(contacts))
            status, body, _ = await c.request(
                "POST",
                f"/campaigns/{name}/contacts",
                data=f"phone,name\n{rows}\n",
                headers={"Content-Type": "text/csv"},
            )
            assert status in (200, 201), body
            status, body, _ = await c.request("POST", f"/campaigns/{name}/start")
            assert status == 200, body
        status, body, _ = await c.request("POST", "/campaigns/winback-q4/pause")
        assert status == 200, body

        lane = r.engine.event_lane
        assert lane is not None
        async with signed_in_page(r, width=1600, height=1180) as page:
            load = Load(r.agents, r.queues)
            await drive(lane.put, load, 60.0, 25.0)
            lane.put(
                {
                    "type": "TrunkStateChanged",
                    "trunk": "carrier-b",
                    "switch": "asterisk-1",
                    "call_id": "",
                    "ts": time.time(),
                    "state": "down",
                    "previous": "up",
                    "breaker": {"phase": "open", "reason": "consecutive-failures"},
                    "admin": "enabled",
                    "reachability": "reachable",
                    "last_failure": {
                        "cause": 34,
                        "sip_code": 503,
                        "cause_text": "Service Unavailable",
                        "at": time.time(),
                    },
                }
            )
            await drive(lane.put, load, 60.0, 15.0)
            await page.wait_for_timeout(1500)  # one clock tick after the last events
            await page.screenshot(path=str(OUT / "wallboard.png"), full_page=True)
            await page.locator(".agent[data-state='on_call']").first.click()
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(OUT / "wallboard-agent.png"))
    print(f"wrote {OUT / 'wallboard.png'} and {OUT / 'wallboard-agent.png'}")


if __name__ == "__main__":
    asyncio.run(main())
