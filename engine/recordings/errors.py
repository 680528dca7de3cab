"""Errors of the recordings domain, each with its HTTP mapping."""

from __future__ import annotations

from engine.core.errors import Conflict, EngineError, NotFound, ServiceUnavailable


class RecordingNotFound(NotFound):
    error_id = "recording-not-found"


class RecordingGone(EngineError):
    """Deleted: the data key is destroyed, the audio can never be read again."""

    status = 410
    error_id = "recording-deleted"


class RecordingConflict(Conflict):
    error_id = "recording-state"


class RecordingNotAllowed(Conflict):
    """The call's policy is 'never', recording is off, or the switch has no path mapping."""

    error_id = "recording-not-allowed"


class RecordingUnavailable(ServiceUnavailable):
    error_id = "recording-unavailable"


class RecordingSwitchFailed(EngineError):
    status = 502
    error_id = "switch-action-failed"


class RecordingTampered(EngineError):
    """The encrypted file fails authentication (tampered, truncated, reordered, wrong key)
    or is missing. No audio is sent."""

    status = 500
    error_id = "recording-integrity-error"
