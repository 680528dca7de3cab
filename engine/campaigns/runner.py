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

``CampaignRunner`` is the facade: it holds the campaign's live state (spec, flights, previews,
token, counters) and composes one collaborator per job:

- ``lease_loop.LeaseLoop``: the lease, the fence and the loop's turns;
- ``pacing_book.PacingBook``: the policies, what they observe, the stats, agents and view;
- ``dialer.Dialer``: the dial turn, the hopper claim and the originate;
- ``preview_desk.PreviewDesk``: preview mode's offers, accepts and skips;
- ``flight_tracker.FlightTracker``: call changes (AMD, hand-over, safe harbour, connect, end);
- ``flight_check.FlightCheck``: the periodic catch-up of flights with their calls;
- ``attempt_end.AttemptEnds``: the attempt's end record and events;
- ``recovery``: what a crash left open (docs/campaigns.md "Crash safety").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any

from engine.calls.model import Call
from engine.campaigns.abandon import AbandonFigures, guard_tripped
from engine.campaigns.attempt_end import AttemptEnds
from engine.campaigns.dialer import PREVIEW_AGENT_VAR, Dialer
from engine.campaigns.flight_check import FlightCheck
from engine.campaigns.flight_tracker import FlightTracker
from engine.campaigns.flights import Flight, Preview
from engine.campaigns.lease_loop import LeaseLoop
from engine.campaigns.model import CampaignSpec, Mode
from engine.campaigns.pacing_book import PacingBook
from engine.campaigns.ports import AcdPort, CallsPort, HopperPort, LeasePort, Sink, SwitchPort
from engine.campaigns.preview_desk import PreviewDesk
from engine.campaigns.recovery import recover
from engine.campaigns.runner_tasks import RunnerTasks
from engine.campaigns.store import CampaignStore
from engine.dialer.pacing import make_policy
from engine.dialer.pacing.view import Observation, PacingPolicy, PacingStats
from engine.pbx.base import DialplanTarget, Then
from engine.speech.amd.params import AmdOverrides

__all__ = ["PREVIEW_AGENT_VAR", "CampaignRunner", "RunnerDeps", "policy_for"]


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
        ivr_flows: Callable[[], Collection[str] | None] | None = None,
        blocked: Callable[[str], str | None] | None = None,
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
        # The IVR flows this engine has loaded (None: not known), for amd.machine_flow.
        self.ivr_flows = ivr_flows
        # Awaited before a runner reconciles: the outbox's replay of what a crash left in the
        # journal (so PostgreSQL has every outcome the engine had accepted).
        self.settle = settle
        # Why a call through this trunk group could not be placed now (its switch links not
        # up or not synced, not ours, or no usable trunk), None when it could: the runner does
        # not dial meanwhile (docs/campaigns.md "Waiting for the switch"). None: always can.
        self.blocked = blocked


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
        self.dialing = True  # False while paused or stopping: in-flight calls go on
        self.stopping = False
        self.token: int | None = None
        self.exhausted = False  # the hopper found nothing to dial (and nothing is in flight)
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
        tasks = RunnerTasks()
        self.pacing = PacingBook(self, deps, spec, policy_for(spec), baseline=baseline)
        self.ends = AttemptEnds(self, deps)
        self.tracker = FlightTracker(
            self,
            deps,
            pacing=self.pacing,
            ends=self.ends,
            tasks=tasks,
            safe_harbour_due=self._safe_harbour_due,
            verdict_overdue=self._verdict_overdue,
        )
        self.dialer = Dialer(self, deps, pacing=self.pacing, tracker=self.tracker, tasks=tasks)
        self.preview_desk = PreviewDesk(
            self, deps, pacing=self.pacing, dialer=self.dialer, ends=self.ends
        )
        self.flight_check = FlightCheck(self, deps, self.tracker)
        self.lease_loop = LeaseLoop(self, deps, check=self.flight_check, tasks=tasks)

    # ------------------------------------------------------------------ figures

    @property
    def policy(self) -> PacingPolicy:
        return self.pacing.policy

    @policy.setter
    def policy(self, policy: PacingPolicy) -> None:
        self.pacing.policy = policy

    @property
    def _baseline(self) -> AbandonFigures:
        return self.pacing.baseline

    @_baseline.setter
    def _baseline(self, baseline: AbandonFigures) -> None:
        # Set by the campaign service once it has read the period's figures so far.
        self.pacing.baseline = baseline

    @property
    def stats(self) -> PacingStats:
        return self.pacing.stats

    @property
    def observations(self) -> list[Observation]:
        return self.pacing.observations  # the policy's inputs (kept for the test)

    def period_figures(self) -> AbandonFigures:
        return self.pacing.period_figures()

    @property
    def guard(self) -> bool:
        return guard_tripped(self.period_figures(), self.spec.abandon_limit)

    def keep_observations(self) -> None:
        self.pacing.keep_observations()

    def view_now(self) -> Any:
        return self.pacing.view_now()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        await self.lease_loop.run()

    def wake(self) -> None:
        self.lease_loop.wake()

    def _follow(self) -> None:
        """Agents' finished talks and wrap-ups (the policy's AgentTaskDone), and hand-overs
        an agent has taken."""
        now = self._d.clock()
        self.pacing.follow_agents()
        self.tracker.follow_connects(now)

    async def _dial_turn(self) -> None:
        await self.dialer.turn()

    async def dial(self, n: int, at: datetime) -> int:
        """Pick, claim and originate up to ``n`` contacts; returns how many were claimed."""
        return await self.dialer.dial(n, at)

    # ------------------------------------------------------------------ preview mode

    async def _preview_turn(self) -> None:
        await self.preview_desk.turn()

    def accept(self, attempt_id: str) -> Flight:
        return self.preview_desk.accept(attempt_id)

    def skip(self, attempt_id: str, *, reason: str = "skipped") -> Flight:
        return self.preview_desk.skip(attempt_id, reason=reason)

    # ------------------------------------------------------------------ call events

    async def check_flights(self) -> int:
        """Catch up with what the calls did that no watcher told this runner (FlightCheck)."""
        return await self.flight_check.run()

    def on_call(self, before: Call, after: Call) -> None:
        """CallService watcher: one committed change of one of this runner's calls."""
        self.tracker.on_call(before, after)

    def await_verdict(self, flight: Flight) -> None:
        self.tracker.await_verdict(flight)

    # The tracker's timers fire these (see FlightTracker.__init__).

    def _verdict_overdue(self, call_id: str) -> None:
        self.tracker.verdict_overdue(call_id)

    def _safe_harbour_due(self, call_id: str) -> None:
        self.tracker.safe_harbour_due(call_id)

    # ------------------------------------------------------------------ restart

    async def recover(self) -> int:
        """Reconcile attempts left open by a crash (docs/campaigns.md "Crash safety")."""
        return await recover(self, self._d)
