"""Errors of the ACD service, each with its HTTP mapping (the pure core's are in
engine/acd/routing.py and engine/agents/errors.py)."""

from __future__ import annotations

from engine.core.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable


class UnknownAgent(NotFound):
    error_id = "unknown-agent"


class QueueNotFound(NotFound):
    error_id = "unknown-queue"


class NoQueueForIntent(InvalidRequest):
    error_id = "no-queue-for-intent"


class InvalidQueueCall(InvalidRequest):
    """Tags, features or customer data that cannot be used (names, lengths, unsafe values)."""

    error_id = "invalid-queue-call"


class CallNotAnswered(Conflict):
    """Only an answered, live call can wait in a queue (hold music needs media)."""

    error_id = "call-not-answered"


class AgentNotOnCall(Conflict):
    """Listen / whisper / barge needs an agent talking to a caller."""

    error_id = "agent-not-on-call"


class UnknownSupervisorEndpoint(InvalidRequest):
    """The endpoint to ring is neither a configured supervisor endpoint nor an agent's phone
    on the switch that carries the agent's call."""

    error_id = "unknown-supervisor-endpoint"


class SupervisorEndpointBusy(Conflict):
    """The supervisor's phone is already in a listen / whisper / barge session (ringing or
    connected) on another agent's call: ringing it again would ring a busy phone."""

    error_id = "supervisor-endpoint-busy"


class SpyNotFound(NotFound):
    error_id = "no-spy-session"


class InvalidQueueMove(Conflict):
    """A move whose source is not one of the agent's queues, or whose target the agent cannot
    serve (skills), or a move to the queue it comes from."""

    error_id = "invalid-queue-move"


class QueueNotOwned(ServiceUnavailable):
    """Another engine owns this queue (lease ``queue:<name>``), or nobody does during a
    takeover: only the owner dispatches its callers to agents."""

    error_id = "queue-not-owned"
    retry_after_s = 1.0
