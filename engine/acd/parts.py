"""The ACD service's shared collaborators, handed around in one piece.

The restart, reconcile and timer parts each need the same set (the live state,
the router, the agent desk, offers, the entry lifecycle, the writers, the
switch actions and "route again"); passing them one by one repeated the same
eight-argument constructor in every module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.acd.actions import SwitchActions
from engine.acd.agent_desk import AgentDesk
from engine.acd.lifecycle import EntryLifecycle
from engine.acd.offers import Offers
from engine.acd.records import AcdRecords
from engine.acd.routing import Router
from engine.acd.state import AcdState


@dataclass(frozen=True, slots=True)
class AcdParts:
    state: AcdState
    router: Router
    desk: AgentDesk
    offers: Offers
    lifecycle: EntryLifecycle
    records: AcdRecords
    actions: SwitchActions
    decide: Callable[[], None]  # route again (the dispatcher)
