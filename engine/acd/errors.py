"""Errors of the ACD service, each with its HTTP mapping (the pure core's are in
engine/acd/routing.py and engine/agents/errors.py)."""

from __future__ import annotations

from engine.core.errors import Conflict, InvalidRequest, NotFound


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
