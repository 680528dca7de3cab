"""Pure decisions of the webhooks: which engine event is which webhook, and when to retry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EVENT_TYPES: tuple[str, ...] = (
    "call.ended",  # one per call leg, with its CDR
    "call.disposition",  # an agent's disposition of a campaign call
    "recording.ready",  # a recording was stopped, encrypted and indexed
    "campaign.finished",  # a campaign ran out of contacts
    "queue.abandoned",  # a caller hung up (or was withdrawn) before an agent took it
)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    type: str
    order_key: str  # deliveries with one key go out in order (per subscription)
    occurred_at: float  # wall clock, seconds
    data: dict[str, Any]


def _flat_cdr(cdr: Mapping[str, Any]) -> dict[str, Any]:
    # The CDR lane keeps datetimes as {"__dt__": iso}; a receiver gets plain ISO strings.
    return {
        k: v["__dt__"] if isinstance(v, dict) and set(v) == {"__dt__"} else v
        for k, v in cdr.items()
    }


def from_cdr(payload: Mapping[str, Any], now: float) -> WebhookEvent | None:
    """A record of the CDR lane: ``{"cdr": {...}}`` -> call.ended."""
    cdr = payload.get("cdr")
    if not isinstance(cdr, Mapping) or "call_id" not in cdr:
        return None
    data = _flat_cdr(cdr)
    return WebhookEvent("call.ended", f"call:{data['call_id']}", now, {"cdr": data})


def from_event(payload: Mapping[str, Any], now: float) -> WebhookEvent | None:
    """A record of the events lane, if it is one a webhook carries."""
    kind = payload.get("type")
    ts = payload.get("ts")
    at = float(ts) if isinstance(ts, int | float) else now
    data = dict(payload)
    if kind == "QueueCallAbandoned":
        return WebhookEvent("queue.abandoned", f"call:{payload.get('call_id')}", at, data)
    if kind == "CallDispositioned":
        return WebhookEvent("call.disposition", f"call:{payload.get('call_id')}", at, data)
    if kind == "RecordingReady":
        key = payload.get("call_id") or payload.get("recording_id")
        return WebhookEvent("recording.ready", f"call:{key}", at, data)
    if kind == "CampaignStateChanged" and payload.get("state") == "finished":
        key = f"campaign:{payload.get('campaign_id')}"
        return WebhookEvent("campaign.finished", key, at, data)
    return None


def backoff(attempt: int, base_s: float, cap_s: float, rand: float) -> float:
    """Seconds before retry number ``attempt`` (1 = after the first failure): exponential,
    capped, with jitter (``rand`` in [0, 1): half the delay is random, so receivers coming
    back are not hit by every engine's retries in the same instant)."""
    ceiling = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + ceiling / 2 * rand
