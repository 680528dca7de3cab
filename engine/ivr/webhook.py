"""The ``webhook`` step's HTTP side: signing, the aiohttp client, reading the reply.

Signature (docs/ivr.md "webhook"): ``X-Engine-Timestamp: <unix seconds>`` and
``X-Engine-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<method>.<url>.<body>")>``.
The method and URL are signed too, so a captured POST body cannot be replayed
against another endpoint, and the timestamp lets the receiver refuse old requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from engine.ivr.expr import Value
from engine.ivr.ports import WebhookError, WebhookReply, WebhookRequest

MAX_REPLY_BYTES = 64 * 1024
SIGNATURE_HEADER = "X-Engine-Signature"
TIMESTAMP_HEADER = "X-Engine-Timestamp"


def signature(secret: str, timestamp: str, method: str, url: str, body: bytes) -> str:
    message = f"{timestamp}.{method}.{url}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str, timestamp: str, method: str, url: str, body: bytes
) -> dict[str, str]:
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, method, url, body),
        "User-Agent": "telephony-engine-ivr",
    }
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def verify(secret: str, headers: Mapping[str, str], method: str, url: str, body: bytes) -> bool:
    """The receiver's check (used by the tests' server; shown in docs/ivr.md)."""
    ts = headers.get(TIMESTAMP_HEADER, "")
    expected = signature(secret, ts, method, url, body)
    return hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER, ""))


def pick(document: Any, path: str) -> Value | None:
    """The scalar at a dotted path (``customer.level``, ``items.0.name``), else None."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    if node is None:
        return ""
    if isinstance(node, bool | int | float | str):
        return node
    return None  # an object or a list is not a variable value


def parse_reply(reply: WebhookReply) -> Any:
    if not 200 <= reply.status < 300:
        raise WebhookError(f"HTTP {reply.status}")
    if not reply.body.strip():
        return {}
    try:
        return json.loads(reply.body)
    except (ValueError, UnicodeDecodeError) as err:
        raise WebhookError(f"reply is not JSON: {err}") from err


class HttpWebhookClient:
    """aiohttp, one session for the engine's life; every request has its own timeout."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def send(self, request: WebhookRequest) -> WebhookReply:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=request.timeout_s)
        try:
            async with self._session.request(
                request.method,
                request.url,
                data=request.body or None,
                headers=dict(request.headers),
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                body = await resp.content.read(MAX_REPLY_BYTES + 1)
                if len(body) > MAX_REPLY_BYTES:
                    raise WebhookError(f"reply larger than {MAX_REPLY_BYTES} bytes")
                return WebhookReply(status=resp.status, body=body)
        except TimeoutError as err:
            raise WebhookError(f"no reply within {request.timeout_s:g}s") from err
        except aiohttp.ClientError as err:
            raise WebhookError(f"{type(err).__name__}: {err}") from err

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
