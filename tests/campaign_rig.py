"""What the live campaign tests share (Asterisk: tests/integration/test_campaign_live.py,
FreeSWITCH: tests/api/test_campaign_freeswitch.py): the campaign's settings, its contacts'
numbers and time zones, and the final state each kind of far end must end in."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.harness import Client

WINDOW_TZ = "Europe/London"
SHUT_TZ = "Pacific/Kiritimati"  # UTC+14: its local hour is far from London's window
SAFE_HARBOUR_S = 2.0
RETRIED = ("busy", "no_answer", "machine", "abandoned", "carrier_failure")

# The final state each kind must end in (with campaign_body's retry rules).
FINAL = {
    "human": {"human", "max_attempts"},  # max_attempts: released three times (safe harbour)
    "machine": {"max_attempts"},
    "busy": {"max_attempts"},
    "no_answer": {"max_attempts"},
    "congestion": {"carrier_failure"},
    "declined": {"declined"},
}

# The loopback carriers answer 503 on purpose (congestion): that must not open the breaker.
LENIENT_BREAKER = """[trunks.breaker]
failure_threshold = 1000
error_rate = 1.0
degraded_error_rate = 1.0
min_samples = 1000000
"""


def e164(number: str) -> str:
    """London's 020 7946 range; the trunk group's translation rule makes the carrier's number."""
    return f"+44207946{number}"


def window_now() -> tuple[str, str]:
    """A four-hour window around London's local time now (so SHUT_TZ is outside it)."""
    hour = datetime.now(UTC).astimezone(ZoneInfo(WINDOW_TZ)).hour
    return f"{(hour - 1) % 24:02d}:00", f"{(hour + 3) % 24:02d}:00"


def campaign_body(name: str, retry_s: float, **changes: Any) -> dict[str, Any]:
    """POST /v1/campaigns: predictive, 3 attempts, short retries, the window open now."""
    start, end = window_now()
    spec: dict[str, Any] = {
        "mode": "predictive",
        "trunk_group": "campaign-out",
        "queue": "campq",
        "caller_id_num": "442079460000",
        "safe_harbour_prompt": "vm-goodbye",
        "safe_harbour_s": SAFE_HARBOUR_S,
        "ring_timeout_s": 5,
        "max_attempts": 3,
        "max_attempts_per_day": 3,
        "max_uncounted_attempts": 2,
        "window": {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": start,
            "end": end,
        },
        "retries": {kind: {"after_s": retry_s} for kind in RETRIED},
    }
    spec.update(changes)
    return {"name": name, "spec": spec}


async def api(c: Client, method: str, path: str, want: int = 200, **kw: Any) -> Any:
    status, body, _ = await c.request(method, path, **kw)
    assert status == want, (method, path, status, body)
    return body


async def import_contacts(c: Client, campaign: str, rows: list[tuple[str, str, str]]) -> Any:
    text = "phone,tz,name\n" + "".join(f"{p},{tz},{n}\n" for p, tz, n in rows)
    return await api(
        c,
        "POST",
        f"/campaigns/{campaign}/contacts",
        data=text.encode(),
        headers={"Content-Type": "text/csv"},
    )


async def wait_done(c: Client, campaign: str, done: int, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        stats = await api(c, "GET", f"/campaigns/{campaign}/stats")
        live = stats["live"] or {}
        if stats["contacts"]["by_state"].get("done") == done and not live.get("calls_in_progress"):
            return
        assert loop.time() < deadline, f"contacts not done: {json.dumps(stats)[:2000]}"
        await asyncio.sleep(0.5)


def seconds_between(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 3) if a is not None and b is not None else None


def contacts_dialled(messages: list[dict[str, Any]]) -> int:
    """ContactDialed events among the messages an ``event_log`` collected."""
    return sum(1 for m in messages if m.get("event", {}).get("type") == "ContactDialed")


def person_answered(fs: Any) -> bool:
    """A fake FreeSWITCH outbound leg to a person (691XX) is up."""
    return any(
        ch.answered and ch.direction == "outbound" and ch.number.startswith("691")
        for ch in fs.channels.values()
    )


async def agents_hang_up(fs: Any, talk_s: float, after: asyncio.Event | None = None) -> None:
    """The agents' side on a fake FreeSWITCH: each agent leg bridged to a caller is hung up
    on the phone ``talk_s`` after it is bridged, or after ``after`` is set if that is later
    (until then the agents keep every call they have). Runs until cancelled."""
    seen: set[str] = set()
    talks: set[asyncio.Task[None]] = set()

    async def talk(uid: str) -> None:
        if after is not None:
            await after.wait()
        await asyncio.sleep(talk_s)  # the conversation's length, not a wait for a condition
        await fs.kill(uid, "NORMAL_CLEARING")

    try:
        while True:
            for uid in fs.bridged_agent_legs():
                if uid not in seen:
                    seen.add(uid)
                    task = asyncio.create_task(talk(uid))
                    talks.add(task)
                    task.add_done_callback(talks.discard)
            await asyncio.sleep(0.05)
    finally:
        for task in talks:
            task.cancel()
