"""The route x role table: the one source of truth for who may call what.

Each :class:`Rule` names one operation (method + path template as routed) and, per role, its
scope: ``ANY`` (the role may call it on anything) or ``OWN`` (the agent role, on its own agent
id or its own calls only; the API middleware checks the ownership). A role absent from a rule
is refused (403). Public rules need no token at all.

The API middleware enforces this table; tests/api/test_rbac_matrix.py calls every route with
every role and compares with it; tests/api/test_openapi_contract.py checks that the OpenAPI
document lists exactly these operations and names the same roles (``x-roles``); docs/security.md
prints it (``python -m engine auth matrix``). Routes the server has that are not in the table
are admin-only (and the matrix test fails until they are added).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from engine.auth.roles import ROLES, Role


class Scope(StrEnum):
    ANY = "any"
    # The agent role only: the path's agent id is the token's, or the path's call is one of
    # the token's agent's calls (its queued caller or its own leg).
    OWN = "own"


@dataclass(frozen=True, slots=True)
class Rule:
    method: str
    path: str
    roles: Mapping[Role, Scope] = field(default_factory=dict)
    public: bool = False
    # Non-mutating operations that still get an audit row (recording listen/download);
    # every POST/PUT/PATCH/DELETE gets one anyway.
    audited: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, normalize(self.path))

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING

    def scope(self, role: Role) -> Scope | None:
        return self.roles.get(role)


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PARAM = re.compile(r"\{[^}]*\}")


def normalize(path: str) -> str:
    """A path template with its parameter names erased: ``/v1/calls/{}``. Two modules may name
    one parameter differently (``{id}``, ``{recording_id}``); the table still matches."""
    return _PARAM.sub("{}", path)


A, S, G, N, U = Role.ADMIN, Role.SUPERVISOR, Role.AGENT, Role.INTEGRATION, Role.AUDITOR


def _r(method: str, path: str, *roles: Role, own: Iterable[Role] = (), **kw: bool) -> Rule:
    grants = {role: Scope.ANY for role in roles}
    grants.update({role: Scope.OWN for role in own})
    # Admin may do everything; listed anyway so the table reads complete.
    grants[A] = Scope.ANY
    return Rule(method, path, MappingProxyType(grants), **kw)


def _public(method: str, path: str) -> Rule:
    return Rule(method, path, MappingProxyType({}), public=True)


RULES: tuple[Rule, ...] = (
    # -- public: probes and the API reference
    _public("GET", "/v1/health/live"),
    _public("GET", "/v1/health/ready"),
    _public("GET", "/v1/health"),
    _public("GET", "/v1/openapi.json"),
    _public("GET", "/v1/docs"),
    _public("GET", "/v1/docs/{asset}"),
    # the wallboard's page and files hold no data: what it shows needs a supervisor token
    _public("GET", "/wallboard"),
    _public("GET", "/wallboard/{asset}"),
    # -- operations
    _r("GET", "/v1/metrics", S),
    _r("POST", "/v1/admin/reload"),
    # -- event stream (agents have no stream: it carries every call's events)
    _r("GET", "/v1/events", S, N),
    _r("POST", "/v1/events/ticket", S, N),
    # -- calls
    _r("POST", "/v1/calls", S, N),
    _r("GET", "/v1/calls", S, N),
    _r("GET", "/v1/calls/{call_id}", S, N, own=[G]),
    _r("DELETE", "/v1/calls/{call_id}", S, N, own=[G]),
    _r("POST", "/v1/calls/{call_id}/redirect", S, N, own=[G]),
    _r("POST", "/v1/calls/{call_id}/dtmf", S, N, own=[G]),
    _r("POST", "/v1/calls/{call_id}/disposition", S, N, own=[G]),
    _r("GET", "/v1/cdrs", S, N, U),
    # -- trunks
    _r("GET", "/v1/trunks", S),
    _r("GET", "/v1/trunks/{name}", S),
    _r("POST", "/v1/trunks/{name}/drain"),
    _r("POST", "/v1/trunks/{name}/enable"),
    # -- agents and queues
    _r("GET", "/v1/agents", S),
    _r("GET", "/v1/agents/{agent_id}", S, own=[G]),
    _r("POST", "/v1/agents/{agent_id}/login", S, own=[G]),
    _r("POST", "/v1/agents/{agent_id}/logout", S, own=[G]),
    _r("POST", "/v1/agents/{agent_id}/ready", S, own=[G]),
    _r("POST", "/v1/agents/{agent_id}/pause", S, own=[G]),
    # supervisor controls (issue 14 item 4, docs/supervisor.md): supervisors and admins only
    _r("POST", "/v1/agents/{agent_id}/spy", S),
    _r("DELETE", "/v1/agents/{agent_id}/spy", S),
    _r("POST", "/v1/agents/{agent_id}/force-pause", S),
    _r("POST", "/v1/agents/{agent_id}/force-logout", S),
    _r("POST", "/v1/agents/{agent_id}/move", S),
    _r("GET", "/v1/queues", S, U),
    _r("GET", "/v1/queues/{name}", S, U),
    _r("POST", "/v1/queues/{name}/calls", S, N),
    # -- campaigns, contacts, DNC
    _r("GET", "/v1/campaigns", S, N, U),
    _r("POST", "/v1/campaigns", S, N),
    _r("GET", "/v1/campaigns/{id}", S, N, U),
    _r("PATCH", "/v1/campaigns/{id}", S, N),
    _r("POST", "/v1/campaigns/{id}/start", S, N),
    _r("POST", "/v1/campaigns/{id}/pause", S, N),
    _r("POST", "/v1/campaigns/{id}/stop", S, N),
    _r("GET", "/v1/campaigns/{id}/stats", S, N, U),
    _r("GET", "/v1/campaigns/{id}/attempts", S, N, U),
    _r("GET", "/v1/campaigns/{id}/previews", S, N),
    _r("POST", "/v1/campaigns/{id}/previews/{attempt_id}/accept", S, N),
    _r("POST", "/v1/campaigns/{id}/previews/{attempt_id}/skip", S, N),
    _r("POST", "/v1/campaigns/{id}/contacts", S, N),
    _r("GET", "/v1/campaigns/{id}/contacts", S, N),
    _r("POST", "/v1/dnc", S, N),
    _r("DELETE", "/v1/dnc", S, N),
    _r("GET", "/v1/dnc", S, N, U),
    _r("POST", "/v1/campaigns/{id}/dnc", S, N),
    _r("DELETE", "/v1/campaigns/{id}/dnc", S, N),
    _r("GET", "/v1/campaigns/{id}/dnc", S, N, U),
    # -- recordings (issue 13 items 1-3): supervisors review; auditors see the index but not
    # the audio; only admin deletes; an agent may pause/resume recording of its own call (PCI)
    _r("GET", "/v1/recordings", S, U),
    _r("GET", "/v1/recordings/{id}", S, U),
    _r("GET", "/v1/recordings/{id}/audio", S, audited=True),
    _r("DELETE", "/v1/recordings/{id}"),
    # legal hold on or off: a compliance decision, admin only like delete
    _r("PATCH", "/v1/recordings/{id}"),
    _r("POST", "/v1/calls/{call_id}/recording", S, N, own=[G]),
    # -- data-subject rights (GDPR/PIPL): everything about one person, or its erasure; admin
    # only (the export holds the audio, the erase cannot be undone)
    _r("POST", "/v1/data-subjects/export"),
    _r("POST", "/v1/data-subjects/erase"),
    # -- KPI reports and A/B results (docs/reports.md): supervisors and admins, and auditors
    # (issue 13: "read-only audit and reports")
    _r("GET", "/v1/reports/queues", S, U),
    _r("GET", "/v1/reports/agents", S, U),
    _r("GET", "/v1/reports/campaigns", S, U),
    _r("GET", "/v1/reports/trunks", S, U),
    _r("GET", "/v1/reports/experiments/splits/{name}", S, U),
    _r("GET", "/v1/reports/experiments/queues/{name}", S, U),
    # -- tokens, audit
    _r("POST", "/v1/tokens"),
    _r("GET", "/v1/tokens"),
    _r("DELETE", "/v1/tokens/{token_id}"),
    _r("GET", "/v1/audit", U),
    # -- webhooks (CRM sync)
    _r("POST", "/v1/webhooks", N),
    _r("GET", "/v1/webhooks", N),
    _r("GET", "/v1/webhooks/{subscription_id}", N),
    _r("DELETE", "/v1/webhooks/{subscription_id}", N),
    _r("GET", "/v1/webhooks/{subscription_id}/deliveries", N),
    _r("POST", "/v1/webhooks/{subscription_id}/replay", N),
    _r("POST", "/v1/webhooks/deliveries/{delivery_id}/replay", N),
)

_BY_KEY: dict[tuple[str, str], Rule] = {}
for _rule in RULES:
    if _rule.key in _BY_KEY:  # pragma: no cover - a typo in the table above
        raise RuntimeError(f"route {_rule.method} {_rule.path} is in the table twice")
    _BY_KEY[_rule.key] = _rule


def rule_for(method: str, path_template: str) -> Rule | None:
    """The rule of a routed request (``HEAD`` is answered as ``GET``)."""
    method = "GET" if method == "HEAD" else method
    return _BY_KEY.get((method, normalize(path_template)))


def render(rules: Iterable[Rule] = RULES) -> str:
    """The table as Markdown (docs/security.md and the closing note)."""
    header = "| method | path | " + " | ".join(r.value for r in ROLES) + " |"
    lines = [header, "|" + "---|" * (2 + len(ROLES))]
    for rule in rules:
        cells = []
        for role in ROLES:
            if rule.public:
                cells.append("public")
                continue
            scope = rule.scope(role)
            cells.append("yes" if scope is Scope.ANY else "own" if scope is Scope.OWN else "-")
        note = " (audited read)" if rule.audited else ""
        lines.append(f"| {rule.method} | `{rule.path}`{note} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
