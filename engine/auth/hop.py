"""The seal on a forwarded request: proof that another engine of this deployment sent it.

A request forwarded to the owner of its object (engine/api/forward.py) was already counted
against its token's rate limit by the engine it entered. The owner must not count it again,
but ``X-Engine-Forwarded`` alone is a header any client can send: skipping the limit on it
would let a client bypass its limit. So the forwarding engine seals the hop with an HMAC
over who sent it, when, a nonce, the method, the path and the caller's credential, keyed
with a secret every engine shares (kept in the shared Redis: engine/store/redis/engines.py).

The owner accepts a seal only if the MAC matches, it is at most ``max_age_s`` old (or ahead:
clocks of one site are kept in sync, ``engine doctor`` checks it) and its nonce was not seen
before (a seal is good for one request). A seal that fails any check is ignored: the request
is then counted as any other, so a forgery, a replay, a key being rotated or a clock out of
step can only cost a client its limit, never raise it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Callable

MAX_AGE_S = 30.0
# Nonces remembered at most (each for max_age_s); past it, seals are refused until some
# expire: a flood of forwarded requests is then counted, which is the safe side.
MAX_NONCES = 200_000


def _mac(key: bytes, sender: str, at: int, nonce: str, method: str, target: str, auth: str) -> str:
    credential = hashlib.sha256(auth.encode()).hexdigest()
    message = "\n".join((sender, str(at), nonce, method.upper(), target, credential))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


class HopSeal:
    """Seal a hop (the sending engine) and check one (the owner).

    ``key()`` returns the shared key, or None while it is not known (Redis away at start):
    then nothing is sealed and no seal is accepted. ``wall``: the wall clock, in seconds."""

    def __init__(
        self,
        key: Callable[[], bytes | None],
        *,
        max_age_s: float = MAX_AGE_S,
        wall: Callable[[], float] = time.time,
        max_nonces: int = MAX_NONCES,
    ) -> None:
        self._key = key
        self.max_age_s = max_age_s
        self._wall = wall
        self._max_nonces = max_nonces
        self._seen: dict[str, float] = {}  # nonce -> when it may be forgotten

    def seal(self, sender: str, method: str, target: str, authorization: str) -> str | None:
        key = self._key()
        if key is None:
            return None
        at = int(self._wall())
        nonce = secrets.token_hex(12)
        return f"{at}.{nonce}.{_mac(key, sender, at, nonce, method, target, authorization)}"

    def check(self, sender: str, seal: str, method: str, target: str, authorization: str) -> bool:
        """True once per genuine seal; False for anything else (see the module docstring)."""
        key = self._key()
        at_text, _, rest = seal.partition(".")
        nonce, _, mac = rest.partition(".")
        if key is None or not at_text.isdigit() or not nonce or not mac:
            return False
        at = int(at_text)
        now = self._wall()
        if abs(now - at) > self.max_age_s:
            return False
        expected = _mac(key, sender, at, nonce, method, target, authorization)
        if not hmac.compare_digest(expected, mac):
            return False
        if nonce in self._seen:
            return False  # a replay
        # Forget from the oldest while expired (insertion order is about expiry order:
        # amortized O(1) per check).
        for old in list(itertools.islice(self._seen, 64)):
            if self._seen[old] > now:
                break
            del self._seen[old]
        if len(self._seen) >= self._max_nonces:
            return False
        self._seen[nonce] = at + 2 * self.max_age_s
        return True
