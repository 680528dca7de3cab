"""Webhook signatures, the docs' receiver snippet, backoff and the event mapping (pure)."""

from __future__ import annotations

import json

import pytest

from engine.auth.matrix import RULES, Scope
from engine.auth.ratelimit import RateLimiter
from engine.auth.roles import Role
from engine.webhooks import policy, signing
from tests.webhook_receiver import docs_snippet

SECRET = "whsec_test"
BODY = json.dumps({"id": "evt_1", "type": "call.ended", "data": {}}).encode()


def _headers(ts: int, body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return signing.headers(secret, "evt_1", ts, body, 1)


def test_engine_signatures_verify_with_the_published_snippet() -> None:
    verify = docs_snippet()["verify_webhook"]
    now = 1_800_000_000
    assert verify(SECRET, _headers(now), BODY, now=now)
    assert verify(SECRET, _headers(now - 299), BODY, now=now)  # inside the window
    assert signing.verify(SECRET, str(now), _headers(now)["Webhook-Signature"], BODY, now)


@pytest.mark.parametrize(
    ("case", "headers", "body"),
    [
        ("body changed", _headers(1_800_000_000), BODY + b" "),
        ("other secret", _headers(1_800_000_000, secret="whsec_other"), BODY),
        ("too old", _headers(1_800_000_000 - 301), BODY),
        ("from the future", _headers(1_800_000_000 + 301), BODY),
        (
            "timestamp swapped",
            {**_headers(1_800_000_000 - 10), "Webhook-Timestamp": "1800000000"},
            BODY,
        ),
        ("no signature", {"Webhook-Timestamp": "1800000000"}, BODY),
        ("bad timestamp", {**_headers(1_800_000_000), "Webhook-Timestamp": "soon"}, BODY),
    ],
)
def test_what_the_snippet_refuses(case: str, headers: dict[str, str], body: bytes) -> None:
    verify = docs_snippet()["verify_webhook"]
    assert not verify(SECRET, headers, body, now=1_800_000_000), case


def test_backoff_grows_caps_and_jitters_within_half_to_full() -> None:
    ceilings = [min(60.0, 1.0 * 2 ** (n - 1)) for n in range(1, 12)]
    for n, ceiling in enumerate(ceilings, 1):
        low = policy.backoff(n, 1.0, 60.0, 0.0)
        high = policy.backoff(n, 1.0, 60.0, 0.999999)
        assert low == pytest.approx(ceiling / 2)
        assert ceiling / 2 <= high < ceiling
    assert policy.backoff(50, 1.0, 60.0, 0.5) <= 60.0


def test_events_map_to_webhook_types_with_a_per_call_order_key() -> None:
    cdr = {"cdr": {"call_id": "c1", "attempt": 2, "ended_at": {"__dt__": "2026-01-01T00:00:00"}}}
    ended = policy.from_cdr(cdr, 5.0)
    assert ended is not None and ended.type == "call.ended" and ended.order_key == "call:c1"
    assert ended.data["cdr"]["ended_at"] == "2026-01-01T00:00:00"
    abandoned = policy.from_event({"type": "QueueCallAbandoned", "call_id": "c1", "ts": 7.0}, 9)
    assert abandoned is not None
    assert (abandoned.type, abandoned.order_key, abandoned.occurred_at) == (
        "queue.abandoned",
        "call:c1",
        7.0,
    )
    finished = policy.from_event(
        {"type": "CampaignStateChanged", "campaign_id": "k", "state": "finished"}, 1
    )
    assert finished is not None and finished.order_key == "campaign:k"
    paused = {"type": "CampaignStateChanged", "campaign_id": "k", "state": "paused"}
    assert policy.from_event(paused, 1) is None
    assert policy.from_event({"type": "CallStateChanged", "call_id": "c1"}, 1) is None
    assert {e for e in policy.EVENT_TYPES} == {
        "call.ended",
        "call.disposition",
        "recording.ready",
        "campaign.finished",
        "queue.abandoned",
    }


def test_rate_limiter_allows_the_burst_then_the_rate() -> None:
    limiter = RateLimiter()
    assert [limiter.take("t", 2.0, 3, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("t", 2.0, 3, 100.0)
    assert wait == pytest.approx(0.5)
    assert limiter.take("t", 2.0, 3, 100.5) == 0.0  # one token came back
    assert limiter.take("other", 2.0, 3, 100.5) == 0.0  # buckets are per token
    assert limiter.take("t", 0.0, 1, 100.5) == 0.0  # rate 0: unlimited


def test_admin_has_every_route_and_the_auditor_only_reads() -> None:
    for rule in RULES:
        if rule.public:
            continue
        assert rule.scope(Role.ADMIN) is Scope.ANY, rule.path
        if rule.scope(Role.AUDITOR) is not None:
            assert rule.method == "GET", rule.path
        if rule.scope(Role.AGENT) is not None:
            assert rule.scope(Role.AGENT) is Scope.OWN, rule.path
