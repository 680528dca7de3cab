"""Per-token rate limits: a token bucket per token, decided here (pure, takes ``now``).

The buckets live in each engine's memory, so with N engines behind a balancer a token gets up
to N times its rate; the limit protects each engine's event loop, which is what it is for
(docs/security.md). Shared buckets would put a Redis round trip on every request.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_BUCKETS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rate_per_s: float, burst: int, now: float) -> float:
        """0.0 when the request may go; else the seconds until one would be allowed."""
        if rate_per_s <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                # Only full buckets can be dropped without changing a decision.
                self._buckets = {
                    k: b
                    for k, b in self._buckets.items()
                    if b.tokens + (now - b.at) * rate_per_s < burst
                }
            bucket = self._buckets[key] = _Bucket(float(burst), now)
        bucket.tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.at) * rate_per_s)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate_per_s
