"""Roles and the identity a request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    # Bound to one agent id: acts only on that agent and on its own calls.
    AGENT = "agent"
    # CRM and dialer integrations: calls, campaigns, contacts, CDRs, webhooks.
    INTEGRATION = "integration"
    # Read-only: the audit trail and reports.
    AUDITOR = "auditor"


ROLES: tuple[Role, ...] = tuple(Role)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts as: one API token (bootstrap or created)."""

    token_id: str  # "bootstrap-N" for engine.toml tokens, the row id for created ones
    label: str
    role: Role
    agent_id: str | None = None  # set for (and only for) the agent role
    rate_per_s: float = 0.0  # 0: unlimited
    rate_burst: int = 1
    expires_at: float | None = None  # wall clock; None: never

    @property
    def actor(self) -> str:
        """How the audit trail names this identity."""
        return f"token:{self.token_id}"

    def to_json(self) -> dict[str, object]:
        return {
            "token_id": self.token_id,
            "label": self.label,
            "role": self.role.value,
            "agent_id": self.agent_id,
        }
