"""HMAC-SHA256 webhook signatures (docs/security.md has the receiver's snippet).

The signed text is ``f"{timestamp}.{body}"``: the timestamp (Unix seconds, the
``Webhook-Timestamp`` header) is covered, so a captured request cannot be replayed later with
a fresh timestamp; a receiver refuses timestamps outside its replay window (300 s by default)
and remembers the ``Webhook-Id`` of what it accepted within that window.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCHEME = "v1"
REPLAY_WINDOW_S = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def headers(
    secret: str, event_id: str, timestamp: int, body: bytes, attempt: int
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Webhook-Id": event_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": signature(secret, timestamp, body),
        "Webhook-Attempt": str(attempt),
        "User-Agent": "telephony-engine-webhooks/1",
    }


def verify(
    secret: str,
    timestamp_header: str,
    signature_header: str,
    body: bytes,
    now: float,
    window_s: int = REPLAY_WINDOW_S,
) -> bool:
    """What a receiver does (the reference for the docs' snippet): the timestamp is within
    the window and one of the header's signatures matches, compared in constant time."""
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        return False
    if abs(now - timestamp) > window_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(
        hmac.compare_digest(expected, candidate.strip())
        for candidate in signature_header.split(",")
    )
