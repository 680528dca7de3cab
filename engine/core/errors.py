"""Error base classes, one family per layer.

Each layer raises its own errors and the next layer up translates them with
``raise ... from err``. Only :class:`EngineError` (and subclasses) may reach the
API layer, where one middleware turns it into JSON with ``error_id`` and
``details``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProtocolError(Exception):
    """A wire codec received bytes it cannot make sense of.

    ``remote`` is True when the peer broke the protocol (garbage on the wire),
    False when we were asked to encode something invalid (our bug).
    """

    def __init__(self, message: str, *, remote: bool = True) -> None:
        super().__init__(message)
        self.remote = remote


class PbxError(Exception):
    """Base for driver-level failures."""


class PbxUnavailable(PbxError):
    """The switch link is down, rejected or not yet resynced; nothing was sent.

    If an action was already written when the link dropped, raise
    :class:`OutcomeUnknown` instead: the difference decides whether the engine
    may safely report "not placed" to the client.
    """


class ActionFailed(PbxError):
    """The switch answered an action with an error, or did not answer in time."""

    def __init__(self, message: str, *, response: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.response: Mapping[str, str] = dict(response or {})


class UnsafeValue(ActionFailed):
    """Refused by the driver before anything was sent: a value (variable,
    caller id, target, flow name...) the switch could misread as syntax.
    Nothing reached the switch; the caller's input is what must change."""


class OutcomeUnknown(ActionFailed):
    """The action was written but its reply never came (link lost, timeout).

    The switch may or may not have run it. Callers must NOT re-send an
    originate on this error; the post-reconnect resync tells what happened.
    """


class ActionTimeout(OutcomeUnknown):
    """No reply within the action timeout. The action may or may not have run."""


class EngineError(Exception):
    """A domain error that carries its HTTP mapping.

    ``error_id`` is a stable kebab-case identifier clients can switch on;
    ``details`` is a JSON-serialisable mapping with whatever helps the caller fix
    the request.
    """

    status: int = 500
    error_id: str = "internal-error"

    def __init__(
        self,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        status: int | None = None,
        error_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        if status is not None:
            self.status = status
        if error_id is not None:
            self.error_id = error_id


class NotFound(EngineError):
    status = 404
    error_id = "not-found"


class InvalidRequest(EngineError):
    status = 400
    error_id = "invalid-request"


class Conflict(EngineError):
    status = 409
    error_id = "conflict"


class ServiceUnavailable(EngineError):
    status = 503
    error_id = "service-unavailable"


class StartupError(Exception):
    """The engine cannot start for a reason its operator fixes (a listen address already in
    use): ``python -m engine run`` prints it on one line, with no traceback, and exits 1."""


class ConfigError(Exception):
    """Configuration is invalid. ``problems`` lists ``file: key.path: expectation`` lines."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One ``where: key.path: expectation`` line per problem: what every tool prints and
        what a reload reports (``where`` is the file, or the environment variable)."""
        return [f"{self.path}: {p}" for p in self.problems]
