"""Which agents may take a queue's calls, stage by stage of the queue's timed overflow.

A call's *stage* is how many of its queue's routing overflow rules (skill
relaxation, fallback queue) have come due: ``stage k`` starts once the call has
waited ``thresholds[k]`` seconds (``thresholds[0] == 0``). Stages only ever widen
who may answer (a relaxation can only lower a minimum, a fallback only adds
agents), so for each agent and queue one number says it all: the first stage
from which the agent fits, :meth:`QueuePlan.entry_stage`. That is what makes
overflow predictable (Asterisk #1561): a call that has waited ``w`` seconds may
go to exactly the agents whose entry stage is at most ``stage_at(w)``.

An IVR overflow rule and ``max_wait_s`` are not stages: they end the wait.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from engine.acd.model import QueueSpec


def fits(skills: Mapping[str, int], minimums: Mapping[str, int]) -> bool:
    return all(skills.get(s, 0) >= m for s, m in minimums.items() if m > 0)


@dataclass(frozen=True, slots=True)
class QueuePlan:
    name: str
    thresholds: tuple[float, ...]  # wait (s) at which each stage starts
    minimums: tuple[Mapping[str, int], ...]  # skill minimums per stage
    fallbacks: tuple[tuple[str, ...], ...]  # fallback queues per stage (cumulative)
    exit_after_s: float | None  # IVR rule or max wait, whichever comes first
    exit_reason: str | None  # "overflow-ivr" | "max-wait"
    exit_flow: str | None  # the IVR flow of an "overflow-ivr" exit

    @property
    def stages(self) -> int:
        return len(self.thresholds)

    def stage_at(self, wait_s: float) -> int:
        return max(0, bisect_right(self.thresholds, wait_s) - 1)

    def entry_stage(
        self,
        skills: Mapping[str, int],
        base_minimums: Mapping[str, Mapping[str, int]],
        member_of: AbstractSet[str] | None = None,
    ) -> int | None:
        """The first stage at which an agent with ``skills`` may take this queue's calls.

        ``base_minimums`` maps every queue to its own (stage 0) minimums, for fallbacks.
        ``member_of``: the queues the agent is rostered on (None: all). A rostered agent takes
        this queue's calls only if it is rostered on this queue, or on a fallback queue that
        overflow has added (then, as before, if it fits that queue).
        """
        own = member_of is None or self.name in member_of
        for stage in range(self.stages):
            if own and fits(skills, self.minimums[stage]):
                return stage
            for fallback in self.fallbacks[stage]:
                if (member_of is None or fallback in member_of) and fits(
                    skills, base_minimums[fallback]
                ):
                    return stage
        return None

    def skills_involved(self) -> set[str]:
        return {s for m in self.minimums for s, level in m.items() if level > 0}


def plan(queue: QueueSpec) -> QueuePlan:
    thresholds = [0.0]
    minimums: list[Mapping[str, int]] = [dict(queue.skills)]
    fallbacks: list[tuple[str, ...]] = [()]
    exit_after: float | None = queue.max_wait_s if queue.max_wait_s > 0 else None
    exit_reason = "max-wait" if exit_after is not None else None
    exit_flow: str | None = None
    for rule in queue.overflow:  # sorted by after_s
        if rule.ivr_flow:
            if exit_after is None or rule.after_s < exit_after:
                exit_after, exit_reason, exit_flow = rule.after_s, "overflow-ivr", rule.ivr_flow
            break  # nothing after leaving the queue matters
        mins = dict(minimums[-1])
        for skill, level in rule.relax_skills.items():
            # Only ever lower: stages must widen who fits, never narrow it.
            mins[skill] = min(mins.get(skill, 0), level)
        fb = fallbacks[-1]
        if rule.add_queue is not None and rule.add_queue not in fb:
            fb = (*fb, rule.add_queue)
        if rule.after_s == thresholds[-1]:
            minimums[-1], fallbacks[-1] = mins, fb  # several rules due at once: one stage
        else:
            thresholds.append(rule.after_s)
            minimums.append(mins)
            fallbacks.append(fb)
    return QueuePlan(
        name=queue.name,
        thresholds=tuple(thresholds),
        minimums=tuple(minimums),
        fallbacks=tuple(fallbacks),
        exit_after_s=exit_after,
        exit_reason=exit_reason,
        exit_flow=exit_flow,
    )
