"""Run the pure router and carry out its decision: offers, timed overflow, queue exits."""

from __future__ import annotations

from typing import Any

from engine.acd.actions import SwitchActions
from engine.acd.lifecycle import EntryLifecycle, overflowed_event
from engine.acd.offers import Offers
from engine.acd.records import AcdRecords
from engine.acd.routing import Decision, Router
from engine.acd.state import AcdState
from engine.pbx.base import IvrTarget


class Dispatcher:
    def __init__(
        self,
        *,
        state: AcdState,
        router: Router,
        offers: Offers,
        lifecycle: EntryLifecycle,
        records: AcdRecords,
        actions: SwitchActions,
    ) -> None:
        self._s = state
        self._router = router
        self._offers = offers
        self._life = lifecycle
        self._records = records
        self._actions = actions

    def decide(self) -> None:
        # An offer that could not be made (the agent has no phone on the
        # caller's switch) puts the caller back; route again. Bounded: each
        # such offer marks that agent as never offered that caller again.
        for _ in range(len(self._s.agents) + 1):
            self._s.retry = False
            now = self._s.now()
            decision: Decision = self._router.decide(now)
            for ov in decision.overflowed:
                self._overflowed(ov.call_id, ov.stage, ov.after_s, now)
            for ex in decision.exits:
                self._exit(ex.call_id, ex.reason, ex.flow, now)
            for a in decision.assignments:
                entry = self._s.entries[a.call_id]  # the router only holds live entries
                for agent_id in a.agent_ids:
                    self._offers.offer(entry, agent_id, a.expires_at, now)
            if not self._s.retry:
                return

    def _overflowed(self, entry_id: str, stage: int, after_s: float, now: float) -> None:
        entry = self._s.entries.get(entry_id)
        if entry is None:
            return
        entry.stage = stage
        rules = [r for r in self._s.queues[entry.queue].overflow if r.after_s == after_s]
        actions: list[dict[str, Any]] = []
        for r in rules:
            if r.relax_skills:
                actions.append({"relax_skills": dict(r.relax_skills)})
            elif r.add_queue:
                actions.append({"add_queue": r.add_queue})
        self._records.publish(
            {
                "type": "QueueCallOverflowed",
                "ts": now,
                "call_id": entry.call_id,
                "entry_id": entry.entry_id,
                "queue": entry.queue,
                "stage": stage,
                "after_s": after_s,
                "actions": actions,
                "exit": None,
                "flow": None,
            }
        )
        self._records.save_entry(entry)

    def _exit(self, entry_id: str, reason: str, flow: str | None, now: float) -> None:
        entry = self._s.entries.get(entry_id)
        if entry is None:
            return
        entry.exit_flow = flow
        self._records.publish(overflowed_event(entry, reason, flow, now))
        self._life.finish(entry, reason, now)
        driver = self._actions.drivers[entry.switch]
        if flow is not None:
            # The caller leaves the queue for the IVR flow (voicemail, callback...).
            self._actions.chain(entry.leg, driver.redirect(entry.leg, IvrTarget(flow)))
        else:
            # max-wait with no IVR to go to: the caller is hung up (normal clearing).
            self._actions.chain(entry.leg, self._actions.hangup_call(entry.call_id))
