"""A campaign runner's loop under its Redis lease with a fencing token: take the lease (only
where the campaign's queue is served), record the token in ``campaigns.fence``, reconcile what
a crash left open, then turn: renew the lease, follow the agents and hand-overs, start the
periodic flight check, and take a dial (or preview) turn, until stopped with nothing in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from engine.campaigns.errors import CampaignLeaseLost
from engine.campaigns.flight_check import FlightCheck
from engine.campaigns.model import Mode
from engine.campaigns.runner_tasks import RunnerTasks
from engine.core.errors import EngineError
from engine.core.running_time import within
from engine.store.errors import StoreError
from engine.telemetry.logging import get_logger

if TYPE_CHECKING:
    from engine.campaigns.runner import CampaignRunner, RunnerDeps

log = get_logger("engine.campaigns")

TICK_S = 0.1
LEASE_RENEW_S = 1.0


class LeaseLoop:
    def __init__(
        self,
        runner: CampaignRunner,
        deps: RunnerDeps,
        *,
        check: FlightCheck,
        tasks: RunnerTasks,
    ) -> None:
        self._r = runner
        self._d = deps
        self._check = check
        self._tasks = tasks
        self._wake = asyncio.Event()

    async def run(self) -> None:
        r = self._r
        name = f"campaign:{r.campaign_id}"
        token = await self._acquire(name)
        if token is None:
            return
        r.token = token
        try:
            fenced = await self._show_fence(name, token)
            if fenced is None:
                log.warning("stale fencing token; not running", campaign=r.campaign_id)
                return
            token = r.token = fenced
            if self._d.settle is not None:
                await self._d.settle()
            await r.recover()
            await self._loop(name, token)
        finally:
            self._tasks.cancel_all()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._d.leases.release(name, r.token), 2.0)

    async def _show_fence(self, name: str, token: int) -> int | None:
        """Record ``token`` in ``campaigns.fence``; the token to run with, or None when a
        newer one is there because another engine runs the campaign.

        A larger fence with nobody else holding the lease means Redis lost its token counter
        (restarted empty, or a failover to a replica that missed the INCR): the counter is
        raised past the fence and our stale hold dropped (``Leases.refence``, as for switch
        leases), and the lease is taken once more, with a token PostgreSQL accepts. Another
        engine's hold is never touched: then the second take finds the lease held."""
        campaign_id = self._r.campaign_id
        if await self._d.store.take_fence(campaign_id, token):
            return token
        row = await self._d.store.get(campaign_id)
        if row is None or row.fence <= token:
            return None  # gone, or the fence moved back down: nothing to raise
        await self._d.leases.refence(name, token, row.fence)
        again = await self._d.leases.acquire(name)
        if again is None:
            return None  # another engine holds it: the fence was its
        self._r.token = again  # released by run() whatever happens next
        if not await self._d.store.take_fence(campaign_id, again):
            return None
        log.warning(
            "campaign lease token was below PostgreSQL's fence (Redis lost its counter); "
            "raised past it",
            campaign=campaign_id,
            stale=token,
            fence=row.fence,
            token=again,
        )
        return again

    async def _acquire(self, name: str) -> int | None:
        r = self._r
        while not r.stopping:
            token = None
            # Several engines: the campaign's lease is taken only where its queue is served,
            # i.e. once this engine holds the queue's lease and has rebuilt it. A runner that
            # took over first would recover its open attempts against an ACD that does not
            # know them yet: a person talking to an agent at the owner's death looked answered
            # and in nobody's hands, and was released with the safe-harbour message (the
            # takeover drill, tests/integration/test_drill_takeover.py).
            if self._d.acd.serves(r.spec.queue):
                try:
                    token = await within(self._d.leases.acquire(name), 5.0)
                except (EngineError, StoreError, TimeoutError) as err:
                    log.warning(
                        "campaign lease unavailable", campaign=r.campaign_id, error=str(err)
                    )
            if token is not None:
                return token
            await self.sleep(LEASE_RENEW_S)
        return None

    async def _loop(self, name: str, token: int) -> None:
        r = self._r
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + LEASE_RENEW_S
        while not (r.stopping and not r.flights):
            if loop.time() >= renew_at:
                renew_at = loop.time() + LEASE_RENEW_S
                try:
                    held = await within(self._d.leases.renew(name, token), 5.0)
                except (EngineError, StoreError, TimeoutError):
                    # Storage blip: keep going until the lease's local deadline, no longer.
                    held = self._d.leases.valid(name)
                if not held:
                    log.error("campaign lease lost; this runner stops", campaign=r.campaign_id)
                    raise CampaignLeaseLost(
                        f"campaign {r.campaign_id}: lease {name} lost (expired, taken over "
                        "or handed back); the runner stands by to take it again"
                    )
            # The turn is the runner's own steps (_follow, then a dial or preview turn), the
            # same ones tests/unit/test_pacing_noleak.py takes one by one.
            r._follow()
            if self._check.due():
                self._tasks.spawn(self._check.run())
            if r.dialing and not r.stopping:
                try:
                    if r.spec.mode is Mode.PREVIEW:
                        await r._preview_turn()
                    else:
                        await r._dial_turn()
                except (StoreError, EngineError) as err:
                    log.warning("dial turn failed", campaign=r.campaign_id, error=str(err))
                    await self.sleep(1.0)
                except Exception:
                    # A bug must not end the runner: its calls in progress still need it.
                    log.exception("dial turn failed", campaign=r.campaign_id)
                    await self.sleep(1.0)
            await self.sleep(TICK_S)

    async def sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def wake(self) -> None:
        self._wake.set()
