"""One running campaign: the dialling loop, under a Redis lease with a fencing token.

Each turn of the loop: renew the lease, build the pacing view (the campaign queue's agents from
the ACD, this runner's calls in progress, the running statistics), ask the policy how many to
dial, pick that many contacts (hopper: windows, DNC and attempt limits are in its query), claim
them with the fencing token (the attempt rows are written ``pending`` before any originate), and
originate through the campaign's trunk group.

Call events reach the runner through ``CallService.watch`` (synchronous, on the event path): it
only updates the flight and schedules what must happen (hand to the ACD, the machine action,
the outcome record). A state change never waits on storage: outcomes go to the ``campaigns``
outbox lane. Safe harbour is a timer per hand-over: a person no agent has taken when it fires
is withdrawn from the queue, hears the prompt and counts as abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from engine.agents.model import AgentState
from engine.calls.commands import OriginateCommand
from engine.calls.model import Call
from engine.campaigns import events as ev
from engine.campaigns.abandon import AbandonFigures, figures, guard_tripped
from engine.campaigns.errors import CampaignLeaseLost
from engine.campaigns.flights import (
    Flight,
    FlightPhase,
    Preview,
    build_view,
    connected,
    serves,
)
from engine.campaigns.model import CampaignSpec, Mode, Outcome
from engine.campaigns.outcomes import DialResult, classify
from engine.campaigns.ports import AcdPort, CallsPort, HopperPort, LeasePort, Sink, SwitchPort
from engine.campaigns.retry import ContactCounters, NextStep, next_step
from engine.campaigns.store import CampaignStore, Pick
from engine.campaigns.windows import open_timezones, zone
from engine.core.clock import to_datetime
from engine.core.errors import EngineError
from engine.dialer.pacing import make_policy
from engine.dialer.pacing.view import (
    AgentTaskDone,
    DialResolved,
    Observation,
    PacingPolicy,
    PacingStats,
)
from engine.pbx.base import DialplanTarget, IvrTarget, Park, Then
from engine.speech.amd.params import AmdOverrides
from engine.store.errors import StoreError
from engine.telemetry.logging import get_logger

log = get_logger("engine.campaigns")

TICK_S = 0.1
LEASE_RENEW_S = 1.0
MAX_BATCH = 50
#: The channel variable carrying a preview call's agent (docs/campaigns.md "Crash safety").
PREVIEW_AGENT_VAR = "ENGINE_PREVIEW_AGENT"
#: How long an adopted, answered AMD call waits for its resumed verdict: the analysis'
#: own bound (total_analysis_time, 5 s in amd.conf) plus the commands that restart it.
AMD_RESUME_BOUND_S = 8.0
#: How often a runner checks its flights against their calls (``check_flights``): a call
#: whose switch another engine owns, or one its engine adopted without telling the runner.
FLIGHT_CHECK_S = 1.0
#: Each look-up of a call this engine does not follow (the registry, the ended store).
LOOKUP_TIMEOUT_S = 2.0


class RunnerDeps:
    """Everything a runner uses, composed by the campaign service."""

    def __init__(
        self,
        *,
        store: CampaignStore,
        hopper: HopperPort,
        calls: CallsPort,
        acd: AcdPort,
        switches: SwitchPort,
        leases: LeasePort,
        records: Sink,
        events: Sink,
        translate: Callable[[str, str], str],
        amd_then: Callable[[AmdOverrides | None], Then],
        safe_harbour: Callable[[str], DialplanTarget],
        clock: Callable[[], float],
        trunk_groups: set[str] | None = None,
        settle: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.store = store
        self.hopper = hopper
        self.calls = calls
        self.acd = acd
        self.switches = switches
        self.leases = leases
        self.records = records
        self.events = events
        self.translate = translate
        self.amd_then = amd_then
        self.safe_harbour = safe_harbour  # switch name -> where the message is played
        self.clock = clock
        self.trunk_groups = trunk_groups
        # Awaited before a runner reconciles: the outbox's replay of what a crash left in the
        # journal (so PostgreSQL has every outcome the engine had accepted).
        self.settle = settle


def policy_for(spec: CampaignSpec) -> PacingPolicy:
    if spec.mode is Mode.POWER:
        return make_policy(f"power-{spec.power_ratio:g}")
    if spec.mode is Mode.PREDICTIVE:
        return make_policy("predictive")
    return make_policy("progressive")  # preview dials what agents accept: see service


class CampaignRunner:
    def __init__(
        self,
        campaign_id: str,
        spec: CampaignSpec,
        deps: RunnerDeps,
        *,
        baseline: AbandonFigures | None = None,
    ) -> None:
        self.campaign_id = campaign_id
        self.spec = spec
        self._d = deps
        self.flights: dict[str, Flight] = {}
        self.previews: dict[str, Preview] = {}  # preview mode: attempt id -> offer
        self.policy = policy_for(spec)
        self._fallback = make_policy("progressive")
        self.dialing = True  # False while paused or stopping: in-flight calls go on
        self.stopping = False
        self.token: int | None = None
        self.exhausted = False  # the hopper found nothing to dial (and nothing is in flight)
        self._stats = PacingStats(
            shift_start=deps.clock(),
            amd_false_positive_rate=spec.amd.false_positive_rate if spec.amd.enabled else 0.0,
        )
        self._baseline = baseline or AbandonFigures(0.0, 0.0, 0.0)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._agents_seen: dict[str, tuple[str, float]] = {}
        self.counters: dict[str, int] = {
            "dials": 0,
            "answers": 0,
            "human": 0,
            "machine": 0,
            "abandoned": 0,
            "connected": 0,
            "carrier_failures": 0,
        }
        # Ended attempts by outcome (the Prometheus counter, engine/campaigns/metrics.py).
        self.outcomes: dict[str, int] = {}
        self.last_decision: dict[str, Any] = {}
        self.observations: list[Observation] = []  # the policy's inputs (kept for the test)
        self._keep_observations = False
        self._checked_at = float("-inf")  # loop time of the last check_flights
        self._checking = False

    # ------------------------------------------------------------------ figures

    @property
    def stats(self) -> PacingStats:
        return self._stats

    def period_figures(self) -> AbandonFigures:
        now = figures(self._stats)
        live = self._baseline.live + now.live
        ab = self._baseline.abandoned + now.abandoned
        return AbandonFigures(live, ab, ab / live if live > 0 else 0.0)

    @property
    def guard(self) -> bool:
        return guard_tripped(self.period_figures(), self.spec.abandon_limit)

    def keep_observations(self) -> None:
        self._keep_observations = True

    def _observe(self, obs: Observation) -> None:
        if self._keep_observations:
            self.observations.append(obs)
        for policy in (self.policy, self._fallback):
            observe = getattr(policy, "observe", None)
            if observe is not None:
                observe(obs)

    def _count(self, **changes: int) -> None:
        s = self._stats
        self._stats = PacingStats(
            shift_start=s.shift_start,
            dials=s.dials + changes.get("dials", 0),
            handed_over=s.handed_over + changes.get("handed_over", 0),
            dropped=s.dropped + changes.get("dropped", 0),
            connects=s.connects + changes.get("connects", 0),
            amd_human=s.amd_human + changes.get("amd_human", 0),
            amd_false_positive_rate=s.amd_false_positive_rate,
        )

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        name = f"campaign:{self.campaign_id}"
        token = await self._acquire(name)
        if token is None:
            return
        self.token = token
        try:
            fenced = await self._show_fence(name, token)
            if fenced is None:
                log.warning("stale fencing token; not running", campaign=self.campaign_id)
                return
            token = self.token = fenced
            if self._d.settle is not None:
                await self._d.settle()
            await self.recover()
            await self._loop(name, token)
        finally:
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._d.leases.release(name, self.token), 2.0)

    async def _show_fence(self, name: str, token: int) -> int | None:
        """Record ``token`` in ``campaigns.fence``; the token to run with, or None when a
        newer one is there because another engine runs the campaign.

        A larger fence with nobody else holding the lease means Redis lost its token counter
        (restarted empty, or a failover to a replica that missed the INCR): the counter is
        raised past the fence and our stale hold dropped (``Leases.refence``, as for switch
        leases), and the lease is taken once more, with a token PostgreSQL accepts. Another
        engine's hold is never touched: then the second take finds the lease held."""
        if await self._d.store.take_fence(self.campaign_id, token):
            return token
        row = await self._d.store.get(self.campaign_id)
        if row is None or row.fence <= token:
            return None  # gone, or the fence moved back down: nothing to raise
        await self._d.leases.refence(name, token, row.fence)
        again = await self._d.leases.acquire(name)
        if again is None:
            return None  # another engine holds it: the fence was its
        self.token = again  # released by run() whatever happens next
        if not await self._d.store.take_fence(self.campaign_id, again):
            return None
        log.warning(
            "campaign lease token was below PostgreSQL's fence (Redis lost its counter); "
            "raised past it",
            campaign=self.campaign_id,
            stale=token,
            fence=row.fence,
            token=again,
        )
        return again

    async def _acquire(self, name: str) -> int | None:
        while not self.stopping:
            token = None
            # Several engines: the campaign's lease is taken only where its queue is served,
            # i.e. once this engine holds the queue's lease and has rebuilt it. A runner that
            # took over first would recover its open attempts against an ACD that does not
            # know them yet: a person talking to an agent at the owner's death looked answered
            # and in nobody's hands, and was released with the safe-harbour message (the
            # takeover drill, tests/integration/test_drill_takeover.py).
            if self._d.acd.serves(self.spec.queue):
                try:
                    token = await asyncio.wait_for(self._d.leases.acquire(name), 5.0)
                except (EngineError, StoreError, TimeoutError) as err:
                    log.warning(
                        "campaign lease unavailable", campaign=self.campaign_id, error=str(err)
                    )
            if token is not None:
                return token
            await self._sleep(LEASE_RENEW_S)
        return None

    async def _loop(self, name: str, token: int) -> None:
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + LEASE_RENEW_S
        while not (self.stopping and not self.flights):
            if loop.time() >= renew_at:
                renew_at = loop.time() + LEASE_RENEW_S
                try:
                    held = await asyncio.wait_for(self._d.leases.renew(name, token), 5.0)
                except (EngineError, StoreError, TimeoutError):
                    # Storage blip: keep going until the lease's local deadline, no longer.
                    held = self._d.leases.valid(name)
                if not held:
                    log.error("campaign lease lost; this runner stops", campaign=self.campaign_id)
                    raise CampaignLeaseLost(
                        f"campaign {self.campaign_id}: lease {name} lost (expired, taken over "
                        "or handed back); the runner stands by to take it again"
                    )
            self._follow()
            if loop.time() - self._checked_at >= FLIGHT_CHECK_S and not self._checking:
                self._checked_at = loop.time()
                self._checking = True
                self._spawn(self.check_flights())
            if self.dialing and not self.stopping:
                try:
                    if self.spec.mode is Mode.PREVIEW:
                        await self._preview_turn()
                    else:
                        await self._dial_turn()
                except (StoreError, EngineError) as err:
                    log.warning("dial turn failed", campaign=self.campaign_id, error=str(err))
                    await self._sleep(1.0)
                except Exception:
                    # A bug must not end the runner: its calls in progress still need it.
                    log.exception("dial turn failed", campaign=self.campaign_id)
                    await self._sleep(1.0)
            await self._sleep(TICK_S)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ pacing

    def _agents(self) -> list[tuple[Any, Any]]:
        acd = self._d.acd
        q = acd.queues.get(self.spec.queue)
        required = dict(getattr(q, "skills", {}) or {})
        required.update(self.spec.skills)
        out = []
        for config in acd.agent_configs():
            if serves(config, required):
                out.append((config, acd.status(config.id)))
        return out

    def _follow(self) -> None:
        """Agents' finished talks and wrap-ups (the policy's AgentTaskDone), and hand-overs
        an agent has taken."""
        now = self._d.clock()
        for config, status in self._agents():
            before = self._agents_seen.get(config.id)
            current = (status.state.value, status.since)
            if before is not None and before != current:
                state, since = before
                if state == "on_call":
                    self._observe(
                        AgentTaskDone("talk", max(0.0, status.since - since), status.since)
                    )
                elif state == "wrap_up":
                    self._observe(
                        AgentTaskDone("wrap", max(0.0, status.since - since), status.since)
                    )
            self._agents_seen[config.id] = current
        for flight in list(self.flights.values()):
            if flight.phase is FlightPhase.QUEUED:
                entry = self._d.acd.entry_of(flight.call_id)
                if connected(entry) and entry is not None:
                    self._connected(flight, entry.answered_at or now, entry.agent_id)

    def view_now(self) -> Any:
        agents = self._agents()
        logged = len(agents)
        cap = self.spec.max_lines or max(1, 3 * logged)
        return build_view(agents, list(self.flights.values()), line_cap=cap, stats=self._stats)

    async def _dial_turn(self) -> None:
        now = self._d.clock()
        view = self.view_now()
        policy = self._fallback if self.guard else self.policy
        n = max(0, min(policy.decide(view, now), MAX_BATCH))
        self.last_decision = {
            "at": now,
            "policy": getattr(policy, "name", "?"),
            "guard_tripped": policy is self._fallback and self.policy is not self._fallback,
            "dial": n,
            "agents": view.agents,
            "idle": len(view.idle_since),
            "ringing": len(view.ringing_since),
            "waiting": len(view.waiting_since),
            "line_cap": view.line_cap,
        }
        if n <= 0:
            return
        await self.dial(n, to_datetime(now))

    async def dial(self, n: int, at: datetime) -> int:
        """Pick, claim and originate up to ``n`` contacts; returns how many were claimed."""
        claimed = await self._claim(n, at)
        for flight in claimed:
            self._launch(flight)
        return len(claimed)

    def _launch(self, flight: Flight) -> None:
        self.flights[flight.call_id] = flight
        if flight.extra.get("untranslatable"):
            self._end(flight, DialResult(answered=False, cause=28), None)
            return
        flight.dialed_at = self._d.clock()
        self._count(dials=1)
        self.counters["dials"] += 1
        self._spawn(self._originate(flight))

    async def _claim(self, n: int, at: datetime) -> list[Flight]:
        """Pick and claim up to ``n`` contacts: their attempts are ``pending`` in PostgreSQL."""
        token = self.token
        if token is None:
            return []
        spec = self.spec
        tzs = await self._d.hopper.distinct_timezones(self.campaign_id)
        open_tzs = open_timezones(spec.window, tzs, at)
        if not open_tzs:
            return []
        picked = await self._d.hopper.pick(
            self.campaign_id,
            limit=n,
            now=at,
            open_tzs=open_tzs,
            max_attempts=spec.max_attempts,
            max_per_day=spec.max_attempts_per_day,
        )
        self.exhausted = not picked and not self.flights and not self.previews
        if not picked:
            return []
        picks = []
        untranslatable: set[int] = set()
        for row in picked:
            contact_id, phone = row.contact_id, row.phone
            try:
                dialed = self._d.translate(spec.trunk_group, phone)
            except ValueError as err:
                # A translation rule that makes an unsafe dial string: this number is never
                # dialled; its attempt ends at once as an invalid number (cause 28).
                log.error("number not translated", campaign=self.campaign_id, error=str(err))
                dialed = phone
                untranslatable.add(contact_id)
            picks.append(
                Pick(
                    contact_id=contact_id,
                    attempt_id=uuid.uuid4().hex,
                    call_id=str(uuid.uuid4()),
                    dialed_number=dialed,
                )
            )
        claimed = await self._d.store.claim(self.campaign_id, token, picks)
        dialed_numbers = {p.attempt_id: p.dialed_number for p in picks}
        now = self._d.clock()
        out = []
        for c in claimed:
            flight = Flight(
                attempt_id=c.attempt_id,
                contact_id=c.contact_id,
                call_id=c.call_id,
                phone=c.phone,
                dialed_number=dialed_numbers[c.attempt_id],
                tz=c.tz,
                fields=c.fields,
                attempts=c.attempts,
                attempts_today=_today_count(c.attempts_today, c.attempts_day, c.tz, now),
                dialed_at=now,
                seq=c.seq,
            )
            if c.contact_id in untranslatable:
                flight.extra["untranslatable"] = True
            out.append(flight)
        return out

    # ------------------------------------------------------------------ preview mode

    async def _preview_turn(self) -> None:
        """Preview mode: each available agent of the queue gets one contact to accept or skip
        (event ``ContactPreview``, ``GET /v1/campaigns/{id}/previews``); nothing is dialled
        until the agent accepts, and the answered call goes to that agent alone."""
        now = self._d.clock()
        for preview in list(self.previews.values()):
            if now >= preview.expires_at:
                self.skip(preview.flight.attempt_id, reason="timeout")
        taken = {p.agent_id for p in self.previews.values()}
        taken |= {str(f.extra.get("agent")) for f in self.flights.values()}
        free = [
            config.id
            for config, status in self._agents()
            if status.state is AgentState.AVAILABLE and config.id not in taken
        ]
        if not free:
            return
        for agent_id, flight in zip(
            free, await self._claim(len(free), to_datetime(now)), strict=False
        ):
            self.previews[flight.attempt_id] = Preview(
                flight, agent_id, now, now + self.spec.preview_timeout_s
            )
            self._d.events.put(ev.contact_preview(self.campaign_id, flight, agent_id, now))

    def accept(self, attempt_id: str) -> Flight:
        preview = self.previews.pop(attempt_id)
        preview.flight.extra["agent"] = preview.agent_id
        self._launch(preview.flight)
        return preview.flight

    def skip(self, attempt_id: str, *, reason: str = "skipped") -> Flight:
        preview = self.previews.pop(attempt_id)
        flight, now = preview.flight, self._d.clock()
        step = next_step(
            self.spec,
            Outcome.SKIPPED,
            ContactCounters(flight.attempts, flight.attempts_today, flight.tz),
            to_datetime(now),
        )
        log.info("preview skipped", campaign=self.campaign_id, agent=preview.agent_id, why=reason)
        self.put_end(flight, Outcome.SKIPPED, step, DialResult(answered=False), now)
        self.wake()
        return flight

    async def _originate(self, flight: Flight) -> None:
        spec = self.spec
        # AMD with the campaign's parameters (amd.profile / amd.params; None: the switch's).
        then: Then = self._d.amd_then(spec.amd.overrides()) if spec.amd.enabled else Park()
        variables = {
            "ENGINE_CAMPAIGN": self.campaign_id,
            # The safe-harbour context plays this (dialplans/); a validated file name.
            "ENGINE_SAFE_HARBOUR_PROMPT": spec.safe_harbour_prompt,
        }
        if "agent" in flight.extra:
            # Preview mode: the agent who accepted it, kept with the call (the live-call
            # registry) so that after a restart it is still queued for that agent alone.
            variables[PREVIEW_AGENT_VAR] = str(flight.extra["agent"])
        cmd = OriginateCommand(
            to=flight.dialed_number,
            then=then,
            trunk_group=spec.trunk_group,
            caller_id_num=spec.caller_id_num,
            caller_id_name=spec.caller_id_name,
            timeout_s=spec.ring_timeout_s,
            call_id=flight.call_id,
            variables=variables,
        )
        if not self._d.leases.valid(f"campaign:{self.campaign_id}"):
            # Checked here, just before the write, from local state: a runner frozen past its
            # lease (SIGSTOP, a stalled loop) does not dial when it wakes. The claimed attempt
            # stays open for the new owner's recovery to decide; the loop stops at its turn.
            log.error(
                "campaign lease past its deadline; not dialling",
                campaign=self.campaign_id,
                contact=flight.contact_id,
            )
            return
        try:
            call, _created = await self._d.calls.originate(cmd)
        except EngineError as err:
            # Nothing was placed (no trunk free, switch down, draining): a carrier failure,
            # not counted against the contact, retried by its rule.
            log.info("contact not dialled", campaign=self.campaign_id, error=str(err))
            if flight.call_id in self.flights:
                self._end(flight, DialResult(answered=False, cause=38), None)
            return
        flight.trunk = call.trunk
        flight.switch = call.switch
        self._d.records.put(
            {
                "kind": "attempt_dialing",
                "attempt_id": flight.attempt_id,
                "switch": call.switch,
                "trunk": call.trunk,
            }
        )
        self._d.events.put(
            ev.contact_dialed(self.campaign_id, flight, call.switch, self._d.clock())
        )
        if call.is_ended and flight.call_id in self.flights:
            self.on_call(call, call)

    # ------------------------------------------------------------------ call events

    async def check_flights(self) -> int:
        """Catch up with what the calls did that no watcher told this runner; returns how many
        flights moved.

        A runner hears of its calls through its own engine's calls service, which follows the
        calls of the switches this engine owns. Several engines: a switch's lease and a
        campaign's lease move separately (the lease loop hands switches back, the runner its
        campaign), so for a moment a runner can have flights on a switch its engine does not
        own (the switch handed back first; or a runner that recovered its attempts from the
        registry before its engine took the switch over). Their ends are folded and written
        (CDR, registry, ended store) by the switch's owner, and no watcher here hears of them:
        they stayed ``ringing`` in the runner, holding its lines (the handback race,
        docs/production.md). So every ``FLIGHT_CHECK_S`` each flight is compared with its call:

        - a call this engine follows (memory): any change the runner has not seen is taken
          (an answer or a verdict of a call adopted by a switch takeover, which tells no
          watcher);
        - a call another engine follows (looked up, with a timeout): only its end is taken,
          with the outcome its owner recorded; an answer is acted on by whoever follows the
          call (a person is never handed to a queue from here, through a switch not ours).
        """
        moved = 0
        try:
            for call_id, flight in list(self.flights.items()):
                if not flight.switch or self.flights.get(call_id) is not flight:
                    continue  # not placed yet, or ended meanwhile
                tracked = self._d.calls.is_tracked(call_id)
                try:
                    call = await asyncio.wait_for(self._d.calls.get(call_id), LOOKUP_TIMEOUT_S)
                except (EngineError, StoreError, TimeoutError) as err:
                    log.info("flight's call not looked up", call_id=call_id, error=str(err))
                    continue
                if self.flights.get(call_id) is not flight:
                    continue
                unseen = call.is_ended or (
                    tracked
                    and (
                        (call.answered_at is not None and flight.answered_at is None)
                        or (bool(call.amd_status) and flight.amd_status is None)
                    )
                )
                if unseen:
                    if not tracked:
                        log.warning(
                            "call ended on a switch another engine follows; outcome taken "
                            "from its record",
                            campaign=self.campaign_id,
                            call_id=call_id,
                            switch=call.switch,
                            cause=call.cause,
                        )
                    self.on_call(call, call)
                    moved += 1
        finally:
            self._checking = False
        return moved

    def on_call(self, before: Call, after: Call) -> None:
        """CallService watcher: one committed change of one of this runner's calls."""
        flight = self.flights.get(after.call_id)
        if flight is None:
            return
        now = self._d.clock()
        if after.trunk:
            flight.trunk = after.trunk
        flight.switch = after.switch
        if after.answered_at is not None and flight.answered_at is None:
            flight.answered_at = after.answered_at
            flight.phase = FlightPhase.ANSWERED
            self.counters["answers"] += 1
            self._progress(flight, answered_at=after.answered_at)
            if not self.spec.amd.enabled and not after.is_ended:
                self._hand_over(flight, now)
            elif flight.adopted and not after.is_ended and not after.amd_status:
                self.await_verdict(flight)
        if after.amd_status and flight.amd_status is None and not after.is_ended:
            self._amd(flight, after, now)
        if after.is_ended:
            result = DialResult(
                answered=after.answered_at is not None,
                cause=after.cause,
                sip_code=after.sip_code,
                amd_status=after.amd_status,
                interrupted=after.interrupted,
            )
            self._end(flight, result, after)
        self.wake()

    def _amd(self, flight: Flight, call: Call, now: float) -> None:
        flight.amd_status = (call.amd_status or "").upper()
        flight.amd_cause = call.amd_cause
        flight.amd_at = call.amd_at or now
        self._progress(
            flight, amd_at=flight.amd_at, amd_status=flight.amd_status, amd_cause=flight.amd_cause
        )
        self._d.events.put(ev.amd_result(self.campaign_id, flight, now))
        if flight.amd_status == "MACHINE":
            flight.phase = FlightPhase.MACHINE
            self.counters["machine"] += 1
            self._resolve(flight, now, needs_agent=False)
            amd = self.spec.amd
            if amd.machine_flow:
                self._spawn(
                    self._quietly(
                        self._d.calls.redirect(flight.call_id, IvrTarget(amd.machine_flow))
                    )
                )
            else:
                self._spawn(self._quietly(self._d.calls.hangup(flight.call_id)))
            return
        self._count(amd_human=1)
        self._hand_over(flight, now)

    def await_verdict(self, flight: Flight) -> None:
        """An adopted call answered with AMD on and no verdict yet: the driver resumes its
        analysis (engine/calls/recovery.py, base.ResumesAmd), which ends within the
        analysis time. Should none come by AMD_RESUME_BOUND_S, the person (or machine) is
        handed to the ACD without one, as app_amd's NOTSURE would be."""
        flight.phase = FlightPhase.ANSWERED
        asyncio.get_running_loop().call_later(
            AMD_RESUME_BOUND_S, self._verdict_overdue, flight.call_id
        )

    def _verdict_overdue(self, call_id: str) -> None:
        flight = self.flights.get(call_id)
        if flight is None or flight.phase is not FlightPhase.ANSWERED or flight.amd_status:
            return
        log.warning("no AMD verdict for an adopted call; handed over", call_id=call_id)
        self._hand_over(flight, self._d.clock())

    def _hand_over(self, flight: Flight, now: float) -> None:
        if flight.phase in (FlightPhase.QUEUED, FlightPhase.CONNECTED):
            return
        flight.phase = FlightPhase.QUEUED
        flight.handed_at = now
        self.counters["human"] += 1
        self._count(handed_over=1)
        self._resolve(flight, now, needs_agent=True)
        loop = asyncio.get_running_loop()
        loop.call_later(self.spec.safe_harbour_s, self._safe_harbour_due, flight.call_id)
        self._spawn(self._enter_queue(flight))

    def _resolve(self, flight: Flight, now: float, *, needs_agent: bool) -> None:
        if flight.resolved:
            return
        flight.resolved = True
        self._observe(
            DialResolved(
                dialed_at=flight.dialed_at,
                resolved_at=now,
                needs_agent=needs_agent,
                patience=self.spec.safe_harbour_s if needs_agent else None,
            )
        )

    async def _enter_queue(self, flight: Flight) -> None:
        customer = {str(k): str(v) for k, v in flight.fields.items()}
        customer.update(
            {
                "campaign": self.campaign_id,
                "contact_id": str(flight.contact_id),
                "phone": flight.phone,
            }
        )
        try:
            await self._d.acd.enter(
                flight.call_id,
                queue=self.spec.queue,
                customer=customer,
                only_agent=flight.extra.get("agent"),
            )
        except EngineError as err:
            # The person hung up meanwhile (the end event settles it), or the queue refused:
            # nobody will take the call, so it is released like a safe-harbour drop.
            log.warning("answered contact not queued", campaign=self.campaign_id, error=str(err))
            if flight.call_id in self.flights and flight.phase is FlightPhase.QUEUED:
                self._release(flight, self._d.clock())

    def _safe_harbour_due(self, call_id: str) -> None:
        flight = self.flights.get(call_id)
        if flight is None or flight.phase is not FlightPhase.QUEUED:
            return
        entry = self._d.acd.entry_of(call_id)
        if connected(entry) and entry is not None:
            self._connected(flight, entry.answered_at or self._d.clock(), entry.agent_id)
            return
        self._d.acd.withdraw(call_id)
        self._release(flight, self._d.clock())

    def _release(self, flight: Flight, now: float) -> None:
        flight.phase = FlightPhase.ABANDONED
        self.counters["abandoned"] += 1
        self._count(dropped=1)
        self._d.events.put(ev.call_abandoned(self.campaign_id, flight, now))
        self._spawn(self._safe_harbour(flight))

    async def _safe_harbour(self, flight: Flight) -> None:
        # Plays ENGINE_SAFE_HARBOUR_PROMPT and hangs up (dialplans/asterisk/engine.conf
        # [engine-safe-harbour], dialplans/freeswitch/engine.xml engine_safe_harbour).
        try:
            target = self._d.safe_harbour(flight.switch)
            await self._d.calls.redirect(flight.call_id, target)
        except EngineError as err:
            log.warning("safe-harbour prompt not played", call_id=flight.call_id, error=str(err))
            await self._quietly(self._d.calls.hangup(flight.call_id))

    def _connected(self, flight: Flight, at: float, agent_id: str | None) -> None:
        flight.phase = FlightPhase.CONNECTED
        flight.agent_at = at
        flight.agent_id = agent_id
        self.counters["connected"] += 1
        # PacingStats.connects: hand-overs an agent took, as the simulator counts them (it
        # counted answers here before, machines the AMD hung up on among them).
        self._count(connects=1)
        self._progress(
            flight,
            agent_at=at,
            agent_id=agent_id,
            seconds_to_agent=self._seconds_to_agent(flight),
        )

    @staticmethod
    def _seconds_to_agent(flight: Flight) -> float | None:
        if flight.agent_at is None or flight.answered_at is None:
            return None
        return round(max(0.0, flight.agent_at - flight.answered_at), 3)

    def _progress(self, flight: Flight, **fields: Any) -> None:
        self._d.records.put({"kind": "attempt_progress", "attempt_id": flight.attempt_id, **fields})

    def _end(self, flight: Flight, result: DialResult, call: Call | None) -> None:
        now = self._d.clock()
        if flight.phase is FlightPhase.QUEUED:
            entry = self._d.acd.entry_of(flight.call_id)
            if connected(entry) and entry is not None:
                self._connected(flight, entry.answered_at or now, entry.agent_id)
        outcome = classify(result)
        if flight.phase is FlightPhase.ABANDONED:
            outcome = Outcome.ABANDONED
        elif outcome is Outcome.HUMAN and flight.phase is FlightPhase.QUEUED:
            # The person hung up before any agent took the call: an abandon as well.
            outcome = Outcome.ABANDONED
            self.counters["abandoned"] += 1
            self._count(dropped=1)
        if outcome is Outcome.CARRIER_FAILURE:
            self.counters["carrier_failures"] += 1
        self._resolve(flight, now, needs_agent=False)
        flight.phase = FlightPhase.ENDED
        del self.flights[flight.call_id]
        disposition = flight.extra.get("disposition")
        step = next_step(
            self.spec,
            outcome,
            ContactCounters(
                flight.attempts,
                flight.attempts_today,
                flight.tz,
                uncounted=max(0, flight.seq - 1 - flight.attempts),
            ),
            to_datetime(now),
            disposition=disposition.disposition if disposition is not None else None,
            callback_at=disposition.callback_at if disposition is not None else None,
            callback_agent=flight.extra.get("callback_agent"),
        )
        self.put_end(flight, outcome, step, result, now)
        self.wake()

    def put_end(
        self,
        flight: Flight,
        outcome: Outcome,
        step: NextStep,
        result: DialResult,
        now: float,
        *,
        state: str = "done",
    ) -> None:
        self.outcomes[outcome.value] = self.outcomes.get(outcome.value, 0) + 1
        day = to_datetime(now).astimezone(zone(flight.tz)).date().isoformat()
        disposition = flight.extra.get("disposition")
        self._d.records.put(
            {
                "kind": "attempt_end",
                "campaign_id": self.campaign_id,
                "attempt_id": flight.attempt_id,
                "contact_id": flight.contact_id,
                "state": state,
                "ended_at": now,
                "cause": result.cause,
                "sip_code": result.sip_code,
                "outcome": outcome.value,
                "abandoned": outcome is Outcome.ABANDONED,
                "answered_at": flight.answered_at,
                "amd_status": flight.amd_status,
                "amd_cause": flight.amd_cause or None,
                "agent_id": flight.agent_id,
                "agent_at": flight.agent_at,
                "seconds_to_agent": self._seconds_to_agent(flight),
                "trunk": flight.trunk,
                "day": day,
                "disposition": disposition.disposition.value if disposition else None,
                "dnc_phone": flight.phone
                if disposition is not None and disposition.disposition.value == "do_not_call"
                else None,
                "next": {
                    "state": step.state,
                    "rank": step.rank,
                    "next_at": step.next_at.timestamp() if step.next_at else None,
                    "final_outcome": step.final_outcome,
                    "counts": step.counts,
                    "callback_agent": step.callback_agent,
                },
            }
        )
        self._d.events.put(ev.attempt_ended(self.campaign_id, flight, outcome, step, now))
        if step.state == "done":
            self._d.events.put(ev.contact_finished(self.campaign_id, flight, step, now))

    # ------------------------------------------------------------------ restart

    async def recover(self) -> int:
        """Reconcile attempts left open by a crash (docs/campaigns.md "Crash safety")."""
        from engine.campaigns.recovery import recover

        return await recover(self, self._d)

    # ------------------------------------------------------------------ helpers

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quietly(awaitable: Coroutine[Any, Any, Any]) -> None:
        try:
            await awaitable
        except EngineError as err:
            log.info("campaign call action not done", error=str(err))


def _today_count(attempts_today: int, attempts_day: Any, tz: str, now: float) -> int:
    if attempts_day is None:
        return 0
    today = to_datetime(now).astimezone(zone(tz)).date()
    return attempts_today if attempts_day == today else 0
