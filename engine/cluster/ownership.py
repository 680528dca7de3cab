"""The lease loop: heartbeat, renew what we hold, take and hand back what the policy says.

Ownership is decided from **local state**: :meth:`Ownership.owns` reads an in-memory map, so
an originate or a dispatch pays no Redis round trip for it. Every lease we hold carries a
local deadline, ``t0 + ttl - margin``, where ``t0`` is the monotonic time taken *before* the
acquire (or renew) request was sent: whatever the request's latency, the lease in Redis
lives at least until ``t0 + ttl``, so the deadline is always before it expires there. Past
the deadline ``owns`` says no at once, even if the loop itself has not run yet (a process
frozen by SIGSTOP, a stalled event loop): an engine that wakes after its lease expired does
not act on it, and steps down on its next turn. Renewal that Redis refuses means stepping
down at once; renewal that fails (Redis away, timeout) keeps the lease only until the local
deadline. Each Redis call's timeout counts running time only (engine/core/running_time.py):
a stalled loop no longer turns the reply already in the socket into a failed renewal (a
few in a row lost a lease Redis still gave us) or a failed take. That extends no belief of
ownership: a lease's deadline is anchored at ``t0``, before the request, and ``owns`` checks
it against the clock, stalls included.

Listeners hear of every lease taken (``on_acquired(name, token)``) and lost
(``on_lost(name, token, reason)``); they are called synchronously from the loop and must
only record or spawn. A lease given up on purpose (handed back, or the engine stopping) is
released only once every ``before_release(name)`` has finished (each bounded by the Redis
timeout): the engine has stopped acting for it, and what it decided meanwhile reaches the
store before the next owner reads it (the calls registry: engine/wiring/cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from engine.cluster.membership import Membership
from engine.cluster.policy import Placement, View, own_name, plan, preferred
from engine.core import clock
from engine.core.running_time import within
from engine.store.errors import StoreError
from engine.store.redis.locks import Leases
from engine.telemetry.logging import get_logger

log = get_logger("engine.cluster")

Acquired = Callable[[str, int], None]
Lost = Callable[[str, int, str], None]


@dataclass(frozen=True, slots=True)
class Held:
    token: int
    deadline: float  # monotonic; no action on the lease's behalf after it


@dataclass(frozen=True, slots=True)
class Timing:
    """Lease timing. ``ttl_s`` in Redis; renewal every ``ttl_s / 3``; no action after
    ``ttl_s - margin_s`` from the request that took or last renewed the lease."""

    ttl_s: float = 5.0
    margin_s: float = 1.0
    timeout_s: float = 1.0  # each Redis call
    handback_after_s: float = 10.0
    grace_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.margin_s < self.ttl_s:
            raise ValueError(f"lease margin_s {self.margin_s}: expected between 0 and ttl_s")
        if self.timeout_s <= 0:
            raise ValueError(f"lease timeout_s {self.timeout_s}: expected > 0")

    @property
    def renew_s(self) -> float:
        return self.ttl_s / 3

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl_s * 1000))


class Ownership:
    """One engine's view of who owns what, and the loop that keeps it true."""

    def __init__(
        self,
        leases: Leases,
        members: Membership,
        names: Iterable[str],
        *,
        timing: Timing | None = None,
        placement: Placement = own_name,
        monotonic: Callable[[], float] = clock.monotonic,
    ) -> None:
        self.me = leases.owner
        self._leases = leases
        self._members = members
        self.names: tuple[str, ...] = tuple(sorted(set(names)))
        self.timing = timing or Timing()
        self.placement = placement
        self._clock = monotonic
        self._held: dict[str, Held] = {}
        self._last: dict[str, int] = {}  # the token each lease was last held with
        self._live_since: dict[str, float] = {}
        self._free_since: dict[str, float] = {}
        self.on_acquired: list[Acquired] = []
        self.on_lost: list[Lost] = []
        self.before_release: list[Callable[[str], Awaitable[object]]] = []
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ local reads

    def owns(self, name: str) -> bool:
        """Whether we may act for lease ``name`` now (no I/O)."""
        held = self._held.get(name)
        return held is not None and self._clock() < held.deadline

    def owns_switch(self, switch: str) -> bool:
        return self.owns(f"switch:{switch}")

    def owns_queue(self, queue: str) -> bool:
        return self.owns(f"queue:{queue}")

    def token(self, name: str) -> int | None:
        """Our fencing token for ``name``, or None when we may not act for it."""
        held = self._held.get(name)
        return held.token if held is not None and self._clock() < held.deadline else None

    def last_token(self, name: str) -> int | None:
        """The token we last held ``name`` with, valid or not (what a write stamped while we
        held it carries; the store judges it)."""
        return self._last.get(name)

    def held(self) -> dict[str, int]:
        now = self._clock()
        return {n: h.token for n, h in self._held.items() if now < h.deadline}

    def live(self) -> frozenset[str]:
        return frozenset(self._live_since) | {self.me}

    def prefers(self, name: str) -> str | None:
        """The preferred owner of ``name`` among the engines we last saw live."""
        return preferred(self.placement(name), self.live())

    def may_take(self, name: str, free_for_s: float = 0.0) -> bool:
        """For leases another loop acquires (the campaign runner's): take it only if we
        prefer it, its preferred owner is not live, or it has been free for ``grace_s``."""
        want = self.prefers(name)
        return want == self.me or want not in self._live_since or free_for_s >= self.timing.grace_s

    def should_hand_back(self, name: str) -> bool:
        """For leases another loop holds: its preferred owner is another engine, live for
        at least ``handback_after_s``."""
        want = self.prefers(name)
        if want is None or want == self.me:
            return False
        since = self._live_since.get(want)
        return since is not None and self._clock() - since >= self.timing.handback_after_s

    # ------------------------------------------------------------------ changes

    def stale(self, name: str, token: int, reason: str) -> None:
        """A store refused ``token`` for ``name``: another engine took it over. Step down
        (unless we hold it with a newer token already)."""
        held = self._held.get(name)
        if held is not None and held.token <= token:
            self._lose(name, f"stale fencing token: {reason}")

    async def refence(self, name: str, token: int, floor: int) -> None:
        """PostgreSQL holds ``floor`` > ``token`` for ``name``: if no other engine holds the
        lease, the token counter went back (Redis lost its data). Raise it past ``floor``
        and drop our stale hold so the next turn takes a token PostgreSQL accepts; then step
        down for now."""
        try:
            await within(self._leases.refence(name, token, floor), self.timing.timeout_s)
        except Exception as err:  # the next turn tries again
            log.warning("cannot raise the lease's token counter", lease=name, error=str(err))
        self.stale(name, token, f"a larger token ({floor}) is in PostgreSQL's fences")

    def _lose(self, name: str, reason: str) -> Held | None:
        held = self._held.pop(name, None)
        if held is None:
            return None
        log.warning("lease lost; stepping down", lease=name, token=held.token, reason=reason)
        for listener in self.on_lost:
            try:
                listener(name, held.token, reason)
            except Exception:
                log.exception("lease listener failed", lease=name)
        return held

    def _gain(self, name: str, token: int, t0: float) -> None:
        self._held[name] = Held(token, t0 + self.timing.ttl_s - self.timing.margin_s)
        self._last[name] = token
        log.info("lease acquired", lease=name, token=token)
        for listener in self.on_acquired:
            try:
                listener(name, token)
            except Exception:
                log.exception("lease listener failed", lease=name)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Turn every ``ttl / 3`` until :meth:`close`."""
        while not self._closed.is_set():
            await self.turn()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.timing.renew_s)

    async def turn(self) -> None:
        """One turn: drop what passed its deadline, heartbeat, renew, take, hand back."""
        t = self.timing
        now = self._clock()
        for name, held in list(self._held.items()):
            if now >= held.deadline:
                self._lose(name, "local deadline passed without a renewal")
        try:
            live = await self._members.beat()
        except StoreError as err:
            log.warning("engine heartbeat failed", error=str(err))
            live = None
        await asyncio.gather(*(self._renew(n, h) for n, h in list(self._held.items())))
        if live is None:
            return
        now = self._clock()
        for engine in live:
            self._live_since.setdefault(engine, now)
        for engine in set(self._live_since) - live:
            del self._live_since[engine]
        try:
            holders = await within(self._leases.holders(self.names), t.timeout_s)
        except (StoreError, TimeoutError) as err:
            log.warning("cannot read the lease holders", error=str(err))
            return
        owners = {n: (h.owner if h is not None else None) for n, h in holders.items()}
        for name, owner in owners.items():
            if owner is None:
                self._free_since.setdefault(name, now)
            else:
                self._free_since.pop(name, None)
        decided = plan(
            View(
                me=self.me,
                live_for={e: now - s for e, s in self._live_since.items() if e != self.me},
                holders=owners,
                held=frozenset(self.held()),
                free_for={n: now - s for n, s in self._free_since.items()},
            ),
            handback_after_s=t.handback_after_s,
            grace_s=t.grace_s,
            placement=self.placement,
        )
        for name in decided.hand_back:
            given = self._lose(name, "handed back to its preferred owner")
            if given is not None:
                await self._before_release(name)
                with contextlib.suppress(StoreError, TimeoutError):
                    await within(self._leases.release(name, given.token), t.timeout_s)
        for name in decided.take:
            await self._take(name)

    async def _before_release(self, name: str) -> None:
        for hook in self.before_release:
            try:
                await within(hook(name), self.timing.timeout_s)
            except Exception as err:  # released anyway: the lease must not outlive us
                log.warning("before-release step failed", lease=name, error=str(err))

    async def _renew(self, name: str, held: Held) -> None:
        t0 = self._clock()
        try:
            ok = await within(
                self._leases.renew(name, held.token, self.timing.ttl_ms), self.timing.timeout_s
            )
        except (StoreError, TimeoutError) as err:
            # Kept only until the local deadline: the next turn drops it if still unrenewed.
            log.warning("lease renewal failed", lease=name, error=str(err))
            return
        if self._held.get(name) != held:
            return  # stepped down meanwhile
        if ok:
            self._held[name] = Held(held.token, t0 + self.timing.ttl_s - self.timing.margin_s)
        else:
            self._lose(name, "renewal refused: the lease expired or another engine holds it")

    async def _take(self, name: str) -> None:
        t0 = self._clock()
        try:
            token = await within(
                self._leases.acquire(name, self.timing.ttl_ms, self._last.get(name)),
                self.timing.timeout_s,
            )
        except (StoreError, TimeoutError) as err:
            log.warning("cannot take lease", lease=name, error=str(err))
            return
        if token is not None:
            self._free_since.pop(name, None)
            self._gain(name, token, t0)

    async def close(self) -> None:
        """Stop the loop, hand every lease back and leave the live set (a clean stop: the
        others need not wait for the TTL)."""
        self._closed.set()
        for name in list(self._held):
            gone = self._lose(name, "engine stopping")
            if gone is not None:
                await self._before_release(name)
                with contextlib.suppress(StoreError, TimeoutError):
                    await within(self._leases.release(name, gone.token), self.timing.timeout_s)
        with contextlib.suppress(StoreError, TimeoutError):
            await self._members.leave()
