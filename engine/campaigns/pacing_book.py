"""A campaign runner's pacing book: the policies it dials by, what they are told (dial
resolutions, agents' finished talks and wrap-ups), the running statistics, the campaign
queue's agents and the pacing view built from them, and the period's abandon figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.campaigns.abandon import AbandonFigures, figures
from engine.campaigns.flights import build_view, serves
from engine.campaigns.model import CampaignSpec
from engine.dialer.pacing import make_policy
from engine.dialer.pacing.view import AgentTaskDone, Observation, PacingPolicy, PacingStats

if TYPE_CHECKING:
    from engine.campaigns.runner import CampaignRunner, RunnerDeps


class PacingBook:
    def __init__(
        self,
        runner: CampaignRunner,
        deps: RunnerDeps,
        spec: CampaignSpec,
        policy: PacingPolicy,
        *,
        baseline: AbandonFigures | None,
    ) -> None:
        self._r = runner
        self._d = deps
        self.policy = policy
        self.fallback = make_policy("progressive")
        self.stats = PacingStats(
            shift_start=deps.clock(),
            amd_false_positive_rate=spec.amd.false_positive_rate if spec.amd.enabled else 0.0,
        )
        self.baseline = baseline or AbandonFigures(0.0, 0.0, 0.0)
        self._agents_seen: dict[str, tuple[str, float]] = {}
        self.observations: list[Observation] = []  # the policy's inputs (kept for the test)
        self._keep_observations = False

    def period_figures(self) -> AbandonFigures:
        now = figures(self.stats)
        live = self.baseline.live + now.live
        ab = self.baseline.abandoned + now.abandoned
        return AbandonFigures(live, ab, ab / live if live > 0 else 0.0)

    def keep_observations(self) -> None:
        self._keep_observations = True

    def observe(self, obs: Observation) -> None:
        if self._keep_observations:
            self.observations.append(obs)
        for policy in (self.policy, self.fallback):
            observe = getattr(policy, "observe", None)
            if observe is not None:
                observe(obs)

    def count(self, **changes: int) -> None:
        s = self.stats
        self.stats = PacingStats(
            shift_start=s.shift_start,
            dials=s.dials + changes.get("dials", 0),
            handed_over=s.handed_over + changes.get("handed_over", 0),
            dropped=s.dropped + changes.get("dropped", 0),
            connects=s.connects + changes.get("connects", 0),
            amd_human=s.amd_human + changes.get("amd_human", 0),
            amd_false_positive_rate=s.amd_false_positive_rate,
        )

    def agents(self) -> list[tuple[Any, Any]]:
        acd = self._d.acd
        spec = self._r.spec
        q = acd.queues.get(spec.queue)
        required = dict(getattr(q, "skills", {}) or {})
        required.update(spec.skills)
        out = []
        for config in acd.agent_configs():
            if serves(config, required):
                out.append((config, acd.status(config.id)))
        return out

    def follow_agents(self) -> None:
        """Agents' finished talks and wrap-ups (the policy's AgentTaskDone)."""
        for config, status in self.agents():
            before = self._agents_seen.get(config.id)
            current = (status.state.value, status.since)
            if before is not None and before != current:
                state, since = before
                if state == "on_call":
                    self.observe(
                        AgentTaskDone("talk", max(0.0, status.since - since), status.since)
                    )
                elif state == "wrap_up":
                    self.observe(
                        AgentTaskDone("wrap", max(0.0, status.since - since), status.since)
                    )
            self._agents_seen[config.id] = current

    def view_now(self) -> Any:
        agents = self.agents()
        logged = len(agents)
        cap = self._r.spec.max_lines or max(1, 3 * logged)
        return build_view(agents, list(self._r.flights.values()), line_cap=cap, stats=self.stats)
