"""Seeded discrete-event simulator for outbound campaign pacing."""

from __future__ import annotations

from engine.dialer.sim.metrics import Figures, ShiftTally, gates_hold
from engine.dialer.sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from engine.dialer.sim.simulator import CampaignSimulator, SimResult, simulate

__all__ = [
    "CampaignSimulator",
    "Figures",
    "Scenario",
    "ScenarioError",
    "ShiftTally",
    "SimResult",
    "gates_hold",
    "load_scenario",
    "parse_scenario",
    "simulate",
]
