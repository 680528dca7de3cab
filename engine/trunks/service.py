"""The trunks service: holds the one live :class:`Fleet` and carries out what
the pure core decides.

Everything that decides is pure (``planner``, ``fleet``, ``health``...); this
module only keeps the current value and plans calls through it. It is the
facade over collaborators with one job each, sharing the live fleet
(``live.LiveFleet``):

- ``shared_limits.SharedLimitsSync``: the limits every engine shares (Redis) and
  the holds this engine owns;
- ``admin.AdminState``: drain / enable, the same on every engine;
- ``poller.SwitchPoller``: switch reports and the reachability poll;
- ``changes.ChangeReporter``: publishes ``TrunkStateChanged`` on the event stream
  whenever a trunk's state, breaker phase, admin state or reachability changes,
  with ``exporter.MetricsExporter`` mirroring the fleet into Prometheus;
- ``loop.TrunkLoop``: the background loop, which also wakes up when time alone
  changes a trunk (a breaker half-opening).

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.core import clock
from engine.pbx.base import PbxDriver, TrunkStatus
from engine.telemetry.live import Source
from engine.telemetry.metrics import Metrics
from engine.trunks import planner, selection
from engine.trunks.admin import ADMIN_SYNC_S, AdminState, SharedAdmin
from engine.trunks.changes import ChangeReporter, Publish
from engine.trunks.errors import TrunkNotFound, TrunksUnavailable, UnknownTrunkGroup
from engine.trunks.exporter import MetricsExporter
from engine.trunks.fleet import Fleet
from engine.trunks.live import LiveFleet
from engine.trunks.loop import TrunkLoop
from engine.trunks.metrics import TrunkMetrics
from engine.trunks.model import GroupSpec, TrunkSpec, single_group_name
from engine.trunks.poller import SwitchPoller
from engine.trunks.shared_limits import (
    LATE_RELEASE_S,
    SHARED_POLL_S,
    SHARED_RETRY_S,
    SYNC_MIN_S,
    SharedLimits,
    SharedLimitsSync,
)

__all__ = [
    "ADMIN_SYNC_S",
    "LATE_RELEASE_S",
    "SHARED_POLL_S",
    "SHARED_RETRY_S",
    "SYNC_MIN_S",
    "Publish",
    "SharedAdmin",
    "SharedLimits",
    "TrunkService",
]


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
        self._live = live = LiveFleet(Fleet.build(trunks, groups))
        self._now = now
        self._wall = wall
        self._rng = rng or random.Random()
        self._turns: dict[str, asyncio.Lock] = {}  # group -> whose turn it is to wait
        self._exporter = MetricsExporter(metrics, now)
        self._changes = ChangeReporter(
            live,
            self._exporter,
            metrics=metrics,
            publish=publish,
            now=now,
            wall=wall,
            wake=self._wake,
        )
        changed = self._changes.after_change
        self._limits = SharedLimitsSync(
            shared, live, now=now, changed=changed, late_release_s=late_release_s
        )
        self._admin = AdminState(admin, live, changed=changed, sync_s=admin_sync_s)
        self._poller = SwitchPoller(live, drivers, now=now, changed=changed)
        self._loop = TrunkLoop(
            live, self._changes, self._limits, self._admin, self._poller, now=now
        )
        self._exporter.start(live.fleet.trunks)
        self._exporter.export(live.fleet, live.fleet.trunks, self._changes.seen)

    def _wake(self) -> None:
        self._loop.wake()

    # ------------------------------------------------------------------ queries

    @property
    def fleet(self) -> Fleet:
        return self._live.fleet

    def metrics_source(self, cap: int) -> Source:
        """Breaker phases and configured limits read at scrape time (engine/trunks/metrics.py)."""
        m = TrunkMetrics(lambda: self._live.fleet, self._now, cap)
        return Source("trunks", m.families, budget=m.budget)

    def has_group(self, name: str) -> bool:
        group = self._live.fleet.groups.get(name)
        return group is not None and not group.single

    @property
    def group_names(self) -> list[str]:
        return sorted(g.name for g in self._live.fleet.configured_groups)

    def _wall_offset(self) -> float:
        return self._wall() - self._now()

    def views(self) -> list[dict[str, Any]]:
        return self._live.fleet.views(self._now(), self._wall_offset())

    def view(self, name: str) -> dict[str, Any]:
        self._known(name)
        return self._live.fleet.view(name, self._now(), self._wall_offset())

    def _known(self, name: str) -> None:
        if name not in self._live.fleet.trunks:
            raise TrunkNotFound(
                f"no trunk named {name!r}",
                details={"trunk": name, "known": sorted(self._live.fleet.trunks)},
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

    def unusable(self, group: str, *, skip_switches: frozenset[str] = frozenset()) -> str | None:
        """Why a call through ``group`` could not be placed now: every member is on a switch
        whose link is not up (or in ``skip_switches``: a switch this engine does not command),
        drained, or behind an open breaker. None when a member could take it (a full one
        too: its channel frees up). Read-only: the campaign runner asks before it dials."""
        self._poller.look_at_links()
        fleet = self._live.fleet
        if group not in fleet.groups:
            return f"no trunk group named {group!r}"
        if skip_switches - fleet.down_switches:
            fleet = fleet.with_down_switches(fleet.down_switches | skip_switches)
        reasons = selection.unusable(fleet, group, self._now())
        if not reasons:
            return None
        return "; ".join(f"{m}: {why}" if m else why for m, why in reasons)

    # ------------------------------------------------------------------ plans

    async def begin(self, call_id: str, group: str) -> planner.Step:
        """The first decision of a call: ``Dial``, ``Wait`` or ``Fail``."""
        self._poller.look_at_links()
        step = self._apply(
            planner.start(call_id, group, self._live.fleet, self._now(), self._rng, self._wall())
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
        spec = self._live.fleet.groups.get(group)
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
        spec = self._live.fleet.groups.get(group)
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
                plan, outcome, self._live.fleet, self._now(), self._rng, self._wall()
            )
        )
        if (
            cur is not None
            and not outcome.answered
            and not isinstance(step.decision, planner.Ignored)
        ):
            self._limits.release(cur.trunk, plan.call_id)
        return await self._settle(step)

    async def retry(self, plan: planner.CallPlan) -> planner.Step:
        group = self._live.fleet.groups.get(plan.group)
        if group is not None:
            await self._limits.sync(group.members)
        self._poller.look_at_links()
        step = self._apply(
            planner.retry(plan, self._live.fleet, self._now(), self._rng, self._wall())
        )
        return await self._settle(step)

    async def wait_capacity(self, until: float) -> None:
        """Sleep until ``until`` or until a channel is released, whichever first
        (the planner's ``Wait``: a release may make a member available). With
        shared counters, at most :data:`SHARED_POLL_S`: another engine's
        release is seen only by looking."""
        released = self._live.released
        delay = until - self._now()
        if self._limits.shared is not None:
            delay = min(delay, SHARED_POLL_S)
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), delay)

    def release(self, trunk: str, holder: str = "") -> None:
        """An answered leg on ``trunk`` ended, or an attempt was abandoned
        without a verdict (link lost): free its channel. ``holder``: the call
        id the channel was taken for (frees the shared hold too)."""
        live = self._live
        if trunk not in live.fleet.trunks:
            return
        live.fleet = live.fleet.release(trunk)
        self._changes.after_change([trunk])
        live.signal_release()
        if holder:
            self._limits.release(trunk, holder)

    def adopt(self, trunk: str, holder: str) -> None:
        """A live call taken over after a restart holds a channel of ``trunk``:
        keep its shared hold refreshed (without shared counters, count it
        locally) until :meth:`release_adopted`."""
        self._limits.adopt(trunk, holder)

    def release_adopted(self, trunk: str, holder: str) -> None:
        """An adopted call ended (calls placed by this process use :meth:`release`)."""
        if self._limits.held(holder) == trunk:
            self.release(trunk, holder)

    def _apply(self, step: planner.Step) -> planner.Step:
        live = self._live
        before = live.fleet
        live.fleet = step.fleet
        touched = [n for n, st in step.fleet.states.items() if before.states.get(n) is not st]
        self._exporter.count(before, step.fleet, touched)
        self._changes.after_change(touched)
        if any(
            n in before.states and step.fleet.states[n].in_use < before.states[n].in_use
            for n in touched
        ):
            live.signal_release()
        return step

    async def _settle(self, step: planner.Step) -> planner.Step:
        """Carry a ``Dial`` through the shared counters: granted -> the step;
        refused (another engine took the channel or the CPS token first) ->
        take the attempt back, sync the trunk and plan again."""
        live, limits = self._live, self._limits
        for _ in range(len(live.fleet.trunks) + 1):
            d = step.decision
            if not isinstance(d, planner.Dial) or limits.shared is None:
                return step
            try:
                counts = await limits.take(d.trunk, step.plan.call_id)
            except BaseException:
                # Cancelled (or failed) while Redis was deciding: whether or
                # not the script ran, give the channel back everywhere.
                live.fleet = planner.unwind(step.plan, live.fleet).fleet
                limits.release(d.trunk, step.plan.call_id)
                self._changes.after_change([d.trunk])
                raise
            if counts is None or counts.taken:
                return step
            unwound = planner.unwind(step.plan, live.fleet)
            live.fleet = unwound.fleet
            limits.take_counts(d.trunk, counts)  # after the unwind: the shared count is the truth
            step = self._apply(
                planner.retry(unwound.plan, live.fleet, self._now(), self._rng, self._wall())
            )
        return step

    async def refresh_shared(self) -> None:
        """Extend our holds and read every trunk's shared counters: the holds
        of live calls never expire, a restarted engine rebuilds ``in_use``, and
        other engines' calls show in the local view."""
        await self._limits.refresh()

    # ------------------------------------------------------------------ switch reports

    def on_status(self, event: TrunkStatus) -> str | None:
        """A ``TrunkStatus`` from a driver (ContactStatus/PeerStatus, sofia
        gateway). Returns the trunk it was about, if any."""
        return self._poller.on_status(event)

    async def poll(self, drivers: Mapping[str, PbxDriver]) -> None:
        """Refresh reachability from every switch that has trunks and is up
        (engine/trunks/poller.py)."""
        await self._poller.poll(drivers)

    # ------------------------------------------------------------------ admin

    def drain(self, name: str) -> dict[str, Any]:
        self._known(name)
        self._admin.drain(name)
        return self.view(name)

    def enable(self, name: str) -> dict[str, Any]:
        self._known(name)
        self._admin.enable(name)  # and wakes waiting calls: they may use it now
        return self.view(name)

    async def set_admin(self, name: str, *, drained: bool) -> dict[str, Any]:
        """Drain or enable ``name`` for every engine (the API's): written to the shared
        admin state first (a storage error leaves it unchanged everywhere), then applied
        here at once; the other engines follow within ``admin_sync_s``."""
        self._known(name)
        await self._admin.write(name, drained=drained)
        return self.drain(name) if drained else self.enable(name)

    async def sync_admin(self) -> None:
        """Follow the shared admin state: drain what another engine drained, enable what it
        enabled. Storage away: the trunks keep their current admin state."""
        await self._admin.sync()

    # ------------------------------------------------------------------ background

    def request_poll(self) -> None:
        """Poll reachability soon (a switch link just came up: events sent
        while it was down are lost)."""
        self._loop.request_poll()

    def close(self) -> None:
        self._loop.close()

    async def run(self, drivers: Mapping[str, PbxDriver], poll_interval_s: float) -> None:
        """Until :meth:`close`: publish state changes, wake at the fleet's next
        timed transition, poll reachability every ``poll_interval_s``, refresh
        the shared holds a few times per hold TTL (engine/trunks/loop.py)."""
        await self._loop.run(drivers, poll_interval_s)

    async def flush(self) -> None:
        """Publish the queued TrunkStateChanged events, in order."""
        await self._changes.flush()
