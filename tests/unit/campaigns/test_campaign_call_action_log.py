"""A campaign's hang-up or redirect that fails only logs, and the line names the campaign and
the call (engine/campaigns/flight_tracker.py): at 3 a.m. an operator greps for either."""

from __future__ import annotations

from structlog.testing import capture_logs

from engine.calls.errors import CallNotFound
from engine.campaigns.flight_tracker import _quietly


async def _gone() -> None:
    raise CallNotFound("c-42")


async def test_a_failed_campaign_call_action_logs_campaign_and_call() -> None:
    with capture_logs() as logs:
        await _quietly(_gone(), "spring-promo", "c-42")
    [line] = [e for e in logs if e["event"] == "campaign call action not done"]
    assert (line["campaign"], line["call_id"], line["error_id"]) == (
        "spring-promo",
        "c-42",
        "call-not-found",
    )
