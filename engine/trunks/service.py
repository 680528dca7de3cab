"""The trunks service: holds the one live :class:`Fleet` and carries out what
the pure core decides.

Everything that decides is pure (``planner``, ``fleet``, ``health``...); this
module only keeps the current value, turns switch reports into
``Fleet.report``, mirrors the fleet into Prometheus, wakes up when time alone
changes a trunk (a breaker half-opening) and publishes ``TrunkStateChanged``
on the event stream whenever a trunk's state, breaker phase, admin state or
reachability changes.

The calls service asks it for plans (``admit`` / ``result`` / ``retry``) and
tells it when an answered leg hangs up (``release``). Every call through a
trunk comes here: a plain ``trunk`` is planned as the trunk's implicit
single-member group (same limits, queue timeout and 503, no failover).

Clocks: the fleet (breakers, CPS buckets, queue waits) runs on the monotonic
clock (``now``); attempts are stamped with the wall clock (``wall``) because
they end up in CDRs, and views turn monotonic instants into timestamps.

Shared limits: with a :class:`SharedLimits` (Redis, see
``engine.store.redis.trunk_counters``) a Dial the local planner decided is
only carried out once the shared counters granted a channel and a CPS token;
if another engine took them first, the attempt is taken back, the local view
is synced from the shared counts and the planner asked again. If Redis cannot
be reached, the local limits decide (docs/trunks.md "Shared limits").

Shared admin state: with a :class:`SharedAdmin` (``engine.store.redis.trunk_admin``), a
drain or enable is written there for every engine before it is applied here, and every
engine follows what is written there about once a second (:meth:`TrunkService.sync_admin`),
so a drained trunk stays drained on an engine that takes its switch over or restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.core import clock
from engine.pbx.base import LinkState, PbxDriver, TrunkStatus
from engine.store.errors import StoreError
from engine.store.redis.trunk_counters import Counts
from engine.telemetry.live import Source
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics
from engine.trunks import breaker as brk
from engine.trunks import health as hl
from engine.trunks import planner
from engine.trunks.errors import TrunkNotFound, TrunksUnavailable, UnknownTrunkGroup
from engine.trunks.fleet import Fleet
from engine.trunks.metrics import FAILURE_CLASSES, TrunkMetrics, failure_class
from engine.trunks.model import BreakerParams, GroupSpec, Phase, TrunkSpec, single_group_name

log = get_logger("engine.trunks")

Publish = Callable[[Mapping[str, Any]], Awaitable[None]]

#: While waiting for capacity with shared counters, look at them at least this
#: often: another engine's hangup frees a channel without telling us.
SHARED_POLL_S = 0.25
#: Waiters that wake together share one read of a trunk's shared counters.
SYNC_MIN_S = 0.05
#: After Redis failed, calls do not wait on it again for this long (each try
#: costs up to the counters' timeout); local limits decide meanwhile.
SHARED_RETRY_S = 2.0
# A take whose Redis round failed may still run in Redis later (its round was
# written, the reply lost), possibly after the call's release ran there:
# Redis would then hold that channel until the hold's TTL. Such a holder's
# release is sent once more this much later (docs/trunks.md "Shared limits").
LATE_RELEASE_S = 5.0
#: How often each engine reads which trunks are drained (another engine's drain or enable
#: reaches this one within about this long).
ADMIN_SYNC_S = 1.0


_HEALTH_STATES: tuple[Literal["up", "degraded", "down", "probing"], ...] = (
    "up",
    "degraded",
    "down",
    "probing",
)


@dataclass(frozen=True, slots=True)
class _Seen:
    """What a TrunkStateChanged compares: the fields an operator acts on."""

    state: str
    phase: str
    reason: str
    admin: str
    reachability: str


# A _Seen and what it was read from: (breaker, window, params, bucket, enabled, reach, seen).
_Snapshot = tuple[brk.BreakerState, hl.Window, BreakerParams, int, bool, str, _Seen]


class SharedLimits(Protocol):
    """Trunk counters every engine shares (``TrunkCounters`` in store.redis)."""

    @property
    def hold_ttl_s(self) -> float: ...

    async def acquire(
        self, trunk: str, holder: str, *, max_channels: int, rate: float, burst: int
    ) -> Counts: ...

    async def release(self, trunk: str, holder: str) -> Counts: ...

    async def refresh(self, trunk: str, holders: Iterable[str] = ()) -> Counts: ...


class SharedAdmin(Protocol):
    """Which trunks are drained, for every engine (``TrunkAdmin`` in store.redis)."""

    async def set_drained(self, trunk: str, drained: bool) -> None: ...

    async def drained(self) -> set[str]: ...


class TrunkService:
    def __init__(
        self,
        trunks: Iterable[TrunkSpec],
        groups: Iterable[GroupSpec],
        *,
        metrics: Metrics,
        publish: Publish | None = None,
        now: Callable[[], float] = clock.monotonic,
        wall: Callable[[], float] = clock.now,
        rng: random.Random | None = None,
        drivers: Mapping[str, PbxDriver] | None = None,
        shared: SharedLimits | None = None,
        late_release_s: float = LATE_RELEASE_S,
        admin: SharedAdmin | None = None,
        admin_sync_s: float = ADMIN_SYNC_S,
    ) -> None:
        self._fleet = Fleet.build(trunks, groups)
        self._admin = admin
        self._admin_sync_s = admin_sync_s
        self._admin_changes = 0  # bumped by each local drain/enable (see sync_admin)
        self._metrics = metrics
        self._publish = publish
        self._now = now
        self._wall = wall
        self._rng = rng or random.Random()
        self._drivers = drivers
        self._shared = shared
        self._shared_ok = True  # False while Redis fails: local limits decide
        self._shared_retry_at = float("-inf")
        self._holds: dict[str, str] = {}  # holder (call id) -> trunk, shared holds we own
        self._uncertain: set[str] = set()  # holders whose take's Redis outcome is unknown
        self._late_release_s = late_release_s
        self._synced_at: dict[str, float] = {}
        self._syncing: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._turns: dict[str, asyncio.Lock] = {}  # group -> whose turn it is to wait
        self._released = asyncio.Event()
        self._kick = asyncio.Event()
        self._outbox: list[dict[str, Any]] = []
        self._seen: dict[str, _Seen] = {}
        self._exported: dict[str, tuple[str, int, bool]] = {}
        # Gauge and counter children per label values, looked up once (labels() hashes
        # and validates its arguments on every call, several times per call placed).
        self._children: dict[tuple[object, ...], Any] = {}
        # name -> (breaker, window, params, bucket, enabled, reach, snapshot): _snapshot's
        # last answer while the breaker is closed.
        self._snapshots: dict[str, _Snapshot] = {}
        self._closed = False
        self._poll_now = False
        for name in self._fleet.trunks:
            self._seen[name] = self._snapshot(name, self._now())
            for cls in FAILURE_CLASSES:  # every class at 0, so rate() has a series to start
                metrics.trunk_failures_by_class.labels(name, cls)
        self._export(self._fleet.trunks)

    # ------------------------------------------------------------------ queries

    @property
    def fleet(self) -> Fleet:
        return self._fleet

    def metrics_source(self, cap: int) -> Source:
        """Breaker phases and configured limits read at scrape time (engine/trunks/metrics.py)."""
        m = TrunkMetrics(lambda: self._fleet, self._now, cap)
        return Source("trunks", m.families, budget=m.budget)

    def has_group(self, name: str) -> bool:
        group = self._fleet.groups.get(name)
        return group is not None and not group.single

    @property
    def group_names(self) -> list[str]:
        return sorted(g.name for g in self._fleet.configured_groups)

    def _wall_offset(self) -> float:
        return self._wall() - self._now()

    def views(self) -> list[dict[str, Any]]:
        return self._fleet.views(self._now(), self._wall_offset())

    def view(self, name: str) -> dict[str, Any]:
        self._known(name)
        return self._fleet.view(name, self._now(), self._wall_offset())

    def _known(self, name: str) -> None:
        if name not in self._fleet.trunks:
            raise TrunkNotFound(
                f"no trunk named {name!r}",
                details={"trunk": name, "known": sorted(self._fleet.trunks)},
            )

    def group_for(self, *, trunk_group: str | None = None, trunk: str | None = None) -> str:
        """The group a call is planned in: the named group, or the implicit
        group of a plain ``trunk``. Unknown names are errors naming the known ones."""
        if trunk is not None:
            self._known(trunk)
            return single_group_name(trunk)
        if trunk_group is None or not self.has_group(trunk_group):
            raise UnknownTrunkGroup(
                f"no trunk group named {trunk_group!r}",
                details={"trunk_group": trunk_group, "known": self.group_names},
            )
        return trunk_group

    # ------------------------------------------------------------------ plans

    async def begin(self, call_id: str, group: str) -> planner.Step:
        """The first decision of a call: ``Dial``, ``Wait`` or ``Fail``."""
        self._look_at_links()
        step = self._apply(
            planner.start(call_id, group, self._fleet, self._now(), self._rng, self._wall())
        )
        return await self._settle(step)

    async def admit(self, call_id: str, group: str) -> planner.Step:
        """:meth:`begin`, waiting while every member is full (up to the group's
        queue timeout). Returns a step whose decision is a :class:`Dial`;
        raises :class:`TrunksUnavailable` (HTTP 503 with Retry-After)."""
        step = await self.begin(call_id, group)
        if isinstance(step.decision, planner.Wait):
            step = await self._queue(group, step)
        decision = step.decision
        if isinstance(decision, planner.Dial):
            return step
        if not isinstance(decision, planner.Fail):  # begin/retry give Dial | Wait | Fail
            raise RuntimeError(f"unexpected planner decision {decision!r}")
        reason, detail = decision.reason, decision.detail
        retry = decision.retry_after_s or 1.0
        spec = self._fleet.groups.get(group)
        if spec is not None and spec.single:
            what, key, name = "trunk", "trunk", spec.members[0]
        else:
            what, key, name = "trunk group", "trunk_group", group
        err = TrunksUnavailable(
            f"{what} {name!r} cannot take the call: {reason}",
            retry_after_s=retry,
            details={key: name, "reason": reason, "detail": detail, "retry_after_s": retry},
        )
        if reason == "switch-unavailable":
            err.error_id = reason  # the same id as a plain endpoint call's
        raise err

    async def _queue(self, group: str, step: planner.Step) -> planner.Step:
        """Wait for capacity in arrival order: one waiter per group at a time
        watches for a free channel or CPS token (asyncio.Lock is FIFO), the
        others wait their turn. Waking every waiter at every token would cost
        O(waiters) per call start; a burst of 1,000 would starve the loop.
        The turn is bounded by what is left of the group's queue timeout."""
        spec = self._fleet.groups.get(group)
        left = spec.queue_timeout_s if spec is not None else 0.0
        turn = self._turns.setdefault(group, asyncio.Lock())
        mine = False
        try:
            try:
                await asyncio.wait_for(turn.acquire(), timeout=max(0.001, left))
                mine = True
            except TimeoutError:
                pass  # the queue timeout passed while waiting: retry() says Fail
            step = await self.retry(step.plan)
            while isinstance(step.decision, planner.Wait):
                await self.wait_capacity(step.decision.until)
                step = await self.retry(step.plan)
            return step
        finally:
            if mine:
                turn.release()

    async def result(self, plan: planner.CallPlan, outcome: planner.AttemptOutcome) -> planner.Step:
        cur = plan.current
        step = self._apply(
            planner.on_attempt_result(
                plan, outcome, self._fleet, self._now(), self._rng, self._wall()
            )
        )
        if (
            cur is not None
            and not outcome.answered
            and not isinstance(step.decision, planner.Ignored)
        ):
            self._release_shared(cur.trunk, plan.call_id)
        return await self._settle(step)

    async def retry(self, plan: planner.CallPlan) -> planner.Step:
        group = self._fleet.groups.get(plan.group)
        if group is not None:
            await self._sync(group.members)
        self._look_at_links()
        step = self._apply(planner.retry(plan, self._fleet, self._now(), self._rng, self._wall()))
        return await self._settle(step)

    async def wait_capacity(self, until: float) -> None:
        """Sleep until ``until`` or until a channel is released, whichever first
        (the planner's ``Wait``: a release may make a member available). With
        shared counters, at most :data:`SHARED_POLL_S`: another engine's
        release is seen only by looking."""
        released = self._released
        delay = until - self._now()
        if self._shared is not None:
            delay = min(delay, SHARED_POLL_S)
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), delay)

    def release(self, trunk: str, holder: str = "") -> None:
        """An answered leg on ``trunk`` ended, or an attempt was abandoned
        without a verdict (link lost): free its channel. ``holder``: the call
        id the channel was taken for (frees the shared hold too)."""
        if trunk not in self._fleet.trunks:
            return
        self._fleet = self._fleet.release(trunk)
        self._after_change([trunk])
        self._signal_release()
        if holder:
            self._release_shared(trunk, holder)

    def adopt(self, trunk: str, holder: str) -> None:
        """A live call taken over after a restart holds a channel of ``trunk``:
        keep its shared hold refreshed (without shared counters, count it
        locally) until :meth:`release_adopted`."""
        if trunk not in self._fleet.trunks or holder in self._holds:
            return
        self._holds[holder] = trunk
        if self._shared is None:
            in_use = self._fleet.states[trunk].in_use + 1
            self._fleet = self._fleet.sync(trunk, in_use, None)
            self._after_change([trunk])

    def release_adopted(self, trunk: str, holder: str) -> None:
        """An adopted call ended (calls placed by this process use :meth:`release`)."""
        if self._holds.get(holder) == trunk:
            self.release(trunk, holder)

    def _apply(self, step: planner.Step) -> planner.Step:
        before = self._fleet
        self._fleet = step.fleet
        touched = [n for n, st in step.fleet.states.items() if before.states.get(n) is not st]
        self._count(before, step.fleet, touched)
        self._after_change(touched)
        if any(
            n in before.states and step.fleet.states[n].in_use < before.states[n].in_use
            for n in touched
        ):
            self._signal_release()
        return step

    def _signal_release(self) -> None:
        # Wake every waiter once; the next ones wait on a fresh event.
        self._released.set()
        self._released = asyncio.Event()

    def _look_at_links(self) -> None:
        """Trunks of a switch whose link is not up are not selected: nothing
        could be placed there, and it is not the carriers' fault."""
        if self._drivers is None:
            return
        switches = {t.switch for t in self._fleet.trunks.values()}
        down = frozenset(
            s
            for s in switches
            if (d := self._drivers.get(s)) is None or d.state is not LinkState.UP
        )
        self._fleet = self._fleet.with_down_switches(down)

    # ------------------------------------------------------------------ shared limits

    async def _settle(self, step: planner.Step) -> planner.Step:
        """Carry a ``Dial`` through the shared counters: granted -> the step;
        refused (another engine took the channel or the CPS token first) ->
        take the attempt back, sync the trunk and plan again."""
        for _ in range(len(self._fleet.trunks) + 1):
            d = step.decision
            if not isinstance(d, planner.Dial) or self._shared is None:
                return step
            try:
                counts = await self._take(d.trunk, step.plan.call_id)
            except BaseException:
                # Cancelled (or failed) while Redis was deciding: whether or
                # not the script ran, give the channel back everywhere.
                self._fleet = planner.unwind(step.plan, self._fleet).fleet
                self._release_shared(d.trunk, step.plan.call_id)
                self._after_change([d.trunk])
                raise
            if counts is None or counts.taken:
                return step
            unwound = planner.unwind(step.plan, self._fleet)
            self._fleet = unwound.fleet
            self._take_counts(d.trunk, counts)  # after the unwind: the shared count is the truth
            step = self._apply(
                planner.retry(unwound.plan, self._fleet, self._now(), self._rng, self._wall())
            )
        return step

    async def _take(self, trunk: str, holder: str) -> Counts | None:
        """Ask the shared counters for a channel and a CPS token. ``None``:
        Redis is away and the local limits decided (fail open, see module)."""
        shared = self._shared
        assert shared is not None
        spec = self._fleet.trunks[trunk]
        if not self._shared_ok and self._now() < self._shared_retry_at:
            self._holds[holder] = trunk
            return None
        try:
            counts = await shared.acquire(
                trunk,
                holder,
                max_channels=spec.max_channels,
                rate=spec.max_cps,
                burst=spec.cps_burst,
            )
        except StoreError as err:
            # Calls go on under this engine's own count; the hold is re-added
            # to Redis by the refresher once it is back.
            self._shared_failed(err)
            self._holds[holder] = trunk
            self._uncertain.add(holder)
            return None
        self._shared_back()
        if counts.taken:
            self._holds[holder] = trunk
            self._take_counts(trunk, counts)
        return counts

    def _take_counts(self, trunk: str, counts: Counts) -> None:
        if trunk not in self._fleet.trunks:
            return
        now = self._now()
        self._synced_at[trunk] = now
        tat = None if counts.tat_in_s is None else now + counts.tat_in_s
        before = self._fleet.states[trunk].in_use
        # Never fewer than the channels this engine itself holds: holds taken
        # while Redis was away (local limits decided) are missing from its
        # count until the refresher re-adds them, and trusting that count
        # alone let a burst place 26 calls on a 20-channel trunk.
        own = sum(1 for held in self._holds.values() if held == trunk)
        self._fleet = self._fleet.sync(trunk, max(counts.in_use, own), tat)
        self._after_change([trunk])
        if counts.in_use < before:
            self._signal_release()

    def _release_shared(self, trunk: str, holder: str) -> None:
        if self._holds.get(holder) == trunk:
            del self._holds[holder]
        shared = self._shared
        if shared is None:
            return

        late = holder in self._uncertain
        self._uncertain.discard(holder)

        async def release() -> None:
            try:
                self._take_counts(trunk, await shared.release(trunk, holder))
                if late:
                    await asyncio.sleep(self._late_release_s)
                    self._take_counts(trunk, await shared.release(trunk, holder))
            except StoreError as err:
                # The hold expires by itself after hold_ttl_s.
                self._shared_failed(err)

        self._spawn(release())

    async def _sync(self, trunks: Iterable[str]) -> None:
        """Read the shared counters of ``trunks`` (waiters share one read)."""
        shared = self._shared
        if shared is None:
            return
        now = self._now()
        tasks = []
        for name in trunks:
            task = self._syncing.get(name)
            if task is None:
                if now - self._synced_at.get(name, float("-inf")) < SYNC_MIN_S:
                    continue
                task = asyncio.create_task(self._sync_one(shared, name))
                self._syncing[name] = task
            tasks.append(task)
        if tasks:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks))

    async def _sync_one(self, shared: SharedLimits, trunk: str) -> None:
        holders = [h for h, t in self._holds.items() if t == trunk]
        if not self._shared_ok and self._now() < self._shared_retry_at:
            self._syncing.pop(trunk, None)
            return
        try:
            counts = await shared.refresh(trunk, holders)
        except StoreError as err:
            self._shared_failed(err)
            return
        finally:
            self._syncing.pop(trunk, None)
        self._shared_back()
        self._take_counts(trunk, counts)

    async def refresh_shared(self) -> None:
        """Extend our holds and read every trunk's shared counters: the holds
        of live calls never expire, a restarted engine rebuilds ``in_use``, and
        other engines' calls show in the local view."""
        self._synced_at.clear()
        await self._sync(list(self._fleet.trunks))

    def _shared_failed(self, err: Exception) -> None:
        if self._shared_ok:
            log.warning("shared trunk limits unavailable; local limits decide", error=str(err))
        self._shared_ok = False
        self._shared_retry_at = self._now() + SHARED_RETRY_S

    def _shared_back(self) -> None:
        if not self._shared_ok:
            log.info("shared trunk limits available again")
        self._shared_ok = True

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ switch reports

    def on_status(self, event: TrunkStatus) -> str | None:
        """A ``TrunkStatus`` from a driver (ContactStatus/PeerStatus, sofia
        gateway). Returns the trunk it was about, if any."""
        name = self._fleet.trunk_for(event.switch, event.trunk)
        if name is None:
            return None
        self._fleet = self._fleet.report(name, event.status, self._now(), event.rtt_ms)
        self._after_change([name])
        return name

    async def poll(self, drivers: Mapping[str, PbxDriver]) -> None:
        """Refresh reachability from every switch that has trunks and is up
        (``PbxDriver.trunk_status``).

        Asterisk sends ContactStatus only on a change, so a trunk already
        unreachable when we connected is never reported by an event; the
        poll also refreshes "unreachable" reports before their TTL ends.
        Failures are logged and skipped (the next poll tries again).
        """
        switches = {t.switch for t in self._fleet.trunks.values()}
        for name in sorted(switches):
            driver = drivers.get(name)
            if driver is None or driver.state is not LinkState.UP:
                continue
            try:
                report = await driver.trunk_status()
            except Exception as err:  # link down, timeout: not fatal for a poll
                log.info("trunk poll failed", switch=name, error=str(err))
                continue
            now = self._now()
            for target, status in report.items():
                trunk = self._fleet.trunk_for(name, target)
                if trunk is not None:
                    self._fleet = self._fleet.report(trunk, status, now)
            self._after_change()

    # ------------------------------------------------------------------ admin

    def drain(self, name: str) -> dict[str, Any]:
        self._known(name)
        self._fleet = self._fleet.drain(name)
        self._after_change([name])
        return self.view(name)

    def enable(self, name: str) -> dict[str, Any]:
        self._known(name)
        self._fleet = self._fleet.enable(name)
        self._after_change([name])
        self._signal_release()  # waiting calls may use it now
        return self.view(name)

    async def set_admin(self, name: str, *, drained: bool) -> dict[str, Any]:
        """Drain or enable ``name`` for every engine (the API's): written to the shared
        admin state first (a storage error leaves it unchanged everywhere), then applied
        here at once; the other engines follow within ``admin_sync_s``."""
        self._known(name)
        if self._admin is not None:
            await self._admin.set_drained(name, drained)
        self._admin_changes += 1
        return self.drain(name) if drained else self.enable(name)

    async def sync_admin(self) -> None:
        """Follow the shared admin state: drain what another engine drained, enable what it
        enabled. Storage away: the trunks keep their current admin state."""
        if self._admin is None:
            return
        changes = self._admin_changes
        try:
            drained = await self._admin.drained()
        except StoreError as err:
            log.warning("cannot read the drained trunks; keeping the admin states", error=str(err))
            return
        if changes != self._admin_changes:
            return  # a local drain/enable raced the read: the next read includes it
        changed: list[str] = []
        enabled = False
        for name, state in self._fleet.states.items():
            if state.enabled == (name in drained):
                self._fleet = (
                    self._fleet.drain(name) if name in drained else self._fleet.enable(name)
                )
                changed.append(name)
                enabled = enabled or name not in drained
        if changed:
            log.info(
                "trunk admin state from another engine", drained=sorted(drained & set(changed))
            )
            self._after_change(changed)
            if enabled:
                self._signal_release()

    # ------------------------------------------------------------------ background

    def request_poll(self) -> None:
        """Poll reachability soon (a switch link just came up: events sent
        while it was down are lost)."""
        self._poll_now = True
        self._kick.set()

    def close(self) -> None:
        self._closed = True
        self._kick.set()

    async def run(self, drivers: Mapping[str, PbxDriver], poll_interval_s: float) -> None:
        """Until :meth:`close`: publish state changes, wake at the fleet's next
        timed transition, poll reachability every ``poll_interval_s``, refresh
        the shared holds a few times per hold TTL."""
        if self._drivers is None:
            self._drivers = drivers
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        next_refresh = loop.time()
        next_admin = loop.time()
        refresh_every = self._shared.hold_ttl_s / 4 if self._shared is not None else None
        admin_every = self._admin_sync_s if self._admin is not None else None
        while not self._closed:
            if refresh_every is not None and loop.time() >= next_refresh:
                await self.refresh_shared()
                next_refresh = loop.time() + refresh_every
            if admin_every is not None and loop.time() >= next_admin:
                await self.sync_admin()
                next_admin = loop.time() + admin_every
            if self._poll_now or loop.time() >= next_poll:
                self._poll_now = False
                await self.poll(drivers)
                next_poll = loop.time() + poll_interval_s
            # A breaker half-opening is a change by time alone: look again then.
            self._after_change()
            await self.flush()
            wake = self._fleet.next_wakeup()
            delay = next_poll - loop.time()
            if refresh_every is not None:
                delay = min(delay, next_refresh - loop.time())
            if admin_every is not None:
                delay = min(delay, next_admin - loop.time())
            if wake is not None:
                # +1 ms: at exactly open_until the breaker has just half-opened.
                delay = min(delay, max(0.0, wake - self._now()) + 0.001)
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), max(0.0, delay))
        await self.flush()
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2.0)

    async def flush(self) -> None:
        """Publish the queued TrunkStateChanged events, in order."""
        while self._outbox:
            data = self._outbox.pop(0)
            if self._publish is not None:
                try:
                    await self._publish(data)
                except Exception:
                    log.exception("TrunkStateChanged not published", trunk=data.get("trunk"))

    # ------------------------------------------------------------------ change tracking

    def _snapshot(self, name: str, now: float) -> _Seen:
        st = self._fleet.states[name]
        params = self._fleet.trunks[name].breaker
        # A closed breaker does not change with time, and the window's totals change
        # only with its bucket: while neither the breaker, the window, the admin state,
        # the reachability nor the bucket moved (a take or a release moves only the
        # channel count), the last snapshot is still exact. Open and half-open
        # breakers change with time alone, so they are always read afresh.
        closed = st.breaker.phase is Phase.CLOSED
        if closed:
            bucket = int(now // (params.window_s / hl.BUCKETS))
            last = self._snapshots.get(name)
            if (
                last is not None
                and last[0] is st.breaker
                and last[1] is st.window
                and last[2] is params
                and last[3] == bucket
                and last[4] == st.enabled
                and last[5] == st.reach
            ):
                return last[6]
        b = brk.advance(st.breaker, params, now)
        seen = _Seen(
            state=self._fleet.health(name, now).value,
            phase=b.phase.value,
            reason=b.reason or "",
            admin="enabled" if st.enabled else "drained",
            reachability=st.reach,
        )
        if closed:
            self._snapshots[name] = (
                st.breaker,
                st.window,
                params,
                bucket,
                st.enabled,
                st.reach,
                seen,
            )
        return seen

    def _after_change(self, names: Iterable[str] | None = None) -> None:
        """Look for state changes of ``names`` (default: every trunk, which
        the background loop does after timed transitions)."""
        now = self._now()
        changed = False
        todo = list(self._fleet.trunks) if names is None else list(names)
        for name in todo:
            seen = self._snapshot(name, now)
            old = self._seen.get(name)
            if old is not seen and old != seen:
                self._seen[name] = seen
                changed = True
                if old is not None:
                    self._queue_change(name, old, seen, now)
        self._export(todo)
        if changed:
            self._kick.set()

    def _queue_change(self, name: str, old: _Seen, new: _Seen, now: float) -> None:
        spec = self._fleet.trunks[name]
        offset = self._wall_offset()
        view = self._fleet.view(name, now, offset)
        if new.phase == "open" and old.phase != "open":
            self._metrics.trunk_breaker_opened.labels(name).inc()
        log.info("trunk state", trunk=name, state=new.state, previous=old.state, reason=new.reason)
        self._outbox.append(
            {
                "type": "TrunkStateChanged",
                "trunk": name,
                "switch": spec.switch,
                "call_id": "",
                "ts": now + offset,
                "state": new.state,
                "previous": old.state,
                "breaker": view["breaker"],
                "admin": new.admin,
                "reachability": new.reachability,
                "last_failure": view["last_failure"],
            }
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per service (no child is ever
        removed from these metrics, so a cached child stays the exported one)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _count(self, before: Fleet, after: Fleet, names: Iterable[str]) -> None:
        for name in names:
            st = after.states[name]
            old = before.states.get(name)
            if old is None or old is st:
                continue
            a, b = old.counters, st.counters
            m = self._metrics
            if b.attempts > a.attempts:
                self._child(m.trunk_attempts, name).inc(b.attempts - a.attempts)
            if b.failovers > a.failovers:
                self._child(m.trunk_failures, name).inc(b.failovers - a.failovers)
                cls = failure_class(b.last_failure)
                self._child(m.trunk_failures_by_class, name, cls).inc(b.failovers - a.failovers)
            if b.answered > a.answered:
                self._child(m.trunk_answered, name).inc(b.answered - a.answered)

    def _export(self, names: Iterable[str]) -> None:
        """Mirror the trunks' state into the gauges, only what changed: this
        runs several times per call (take, release, shared-count syncs), and
        setting six labelled gauges each time was a visible share of the
        engine's CPU per call. The health is the one ``_after_change`` just
        read (``_seen``). A take or release changes only ``in_use``: one gauge."""
        m = self._metrics
        for name in names:
            st = self._fleet.states[name]
            seen = self._seen.get(name)
            health = seen.state if seen is not None else self._fleet.health(name, self._now()).value
            value = (health, st.in_use, st.enabled)
            old = self._exported.get(name)
            if old == value:
                continue
            self._exported[name] = value
            if old is None or old[0] != health:
                for s in _HEALTH_STATES:
                    self._child(m.trunk_state, name, s).set(1 if health == s else 0)
            if old is None or old[1] != st.in_use:
                self._child(m.trunk_channels_in_use, name).set(st.in_use)
            if old is None or old[2] != st.enabled:
                self._child(m.trunk_drained, name).set(0 if st.enabled else 1)
