"""Errors of the agents domain, each with its HTTP mapping."""

from __future__ import annotations

from engine.core.errors import Conflict, InvalidRequest


class IllegalAgentTransition(Conflict):
    """The input is not allowed in the agent's current state (e.g. ``ready`` while on a call)."""

    error_id = "illegal-agent-transition"


class AgentCallMismatch(Conflict):
    """An offer/call input names a different call than the one the agent holds (a stale event)."""

    error_id = "agent-call-mismatch"


class UnknownPauseReason(InvalidRequest):
    error_id = "unknown-pause-reason"
