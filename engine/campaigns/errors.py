"""Errors of the campaigns service, each with its HTTP mapping."""

from __future__ import annotations

from pydantic import ValidationError

from engine.core.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable


class CampaignNotFound(NotFound):
    error_id = "unknown-campaign"


class NotACampaignCall(NotFound):
    error_id = "not-a-campaign-call"


class CampaignExists(Conflict):
    error_id = "campaign-exists"


class CampaignStateConflict(Conflict):
    error_id = "campaign-state-conflict"


class InvalidCampaign(InvalidRequest):
    error_id = "invalid-campaign"

    @classmethod
    def from_validation(cls, err: ValidationError, prefix: str = "") -> InvalidCampaign:
        problems = []
        for e in err.errors():
            # Indexes as [i], like every other details.problems (engine/web/validation.py):
            # spec.window.days[0], not spec.window.days.0.
            loc = ""
            for part in e["loc"]:
                loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
            field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "(body)")
            problems.append(
                {"field": field, "problem": str(e["msg"]).removeprefix("Value error, ")}
            )
        return cls(
            "; ".join(f"{p['field']}: {p['problem']}" for p in problems),
            details={"problems": problems},
        )


class PreviewNotFound(NotFound):
    """No outstanding preview with that attempt id (accepted, skipped, timed out, or the
    campaign is not run by this engine)."""

    error_id = "unknown-preview"


class CampaignNotRunnable(Conflict):
    """The stored campaign names a queue or trunk group this engine's configuration lacks."""

    error_id = "campaign-not-runnable"


class CampaignLeaseLost(ServiceUnavailable):
    """The runner's lease expired, was taken over or handed back (several engines): it stops
    acting at once and stands by to take the lease again."""

    error_id = "campaign-lease-lost"
