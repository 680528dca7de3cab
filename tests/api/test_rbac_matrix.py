"""Every route the server has, called with every role, decided as engine.auth.matrix says;
and the table, the server's routes and the OpenAPI document agree."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.api.openapi import openapi_document
from engine.auth.matrix import RULES, Rule, Scope, normalize, render, rule_for
from engine.auth.roles import Role
from scripts.openapi_security import apply
from tests.api.openapi_check import check
from tests.api.security_rig import Rig, security_engine

# Values for path parameters: nothing with these names exists, so an allowed request is
# answered by its handler (404, 409, 415...) and never changes anything that matters.
PARAMS = {
    "call_id": "00000000-0000-4000-8000-00000000c0de",
    "name": "no-such-name",
    "id": "00000000-0000-4000-8000-0000000000aa",
    "recording_id": "00000000-0000-4000-8000-0000000000cc",
    "attempt_id": "00000000-0000-4000-8000-0000000000bb",
    "token_id": "tok_0000000000000000",
    "subscription_id": "whs_0000000000000000",
    "delivery_id": "999999999",
    "asset": "no-such-asset.js",
}
OWN_AGENT, OTHER_AGENT = "alice", "bob"


@pytest.fixture(scope="module")
async def rig(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Rig]:
    async with security_engine(
        store_data_dir / "engine-rbac", pg_dsn=pg_dsn, redis_url=redis_url
    ) as rig:
        yield rig


def served(rig: Rig) -> list[tuple[str, str]]:
    assert rig.engine.app is not None
    routes = set()
    for route in rig.engine.app.router.routes():
        info = route.resource.canonical if route.resource is not None else None
        if info and route.method not in ("HEAD", "*"):
            routes.add((route.method, info))
    return sorted(routes)


def fill(path: str, agent: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        return agent if name == "agent_id" else PARAMS[name]

    return re.sub(r"\{([^}]+)\}", value, path)


async def test_every_route_is_in_the_table_and_every_rule_is_served(rig: Rig) -> None:
    routes = served(rig)
    missing = [f"{m} {p}" for m, p in routes if rule_for(m, p) is None]
    assert not missing, f"routes without a rule in engine/auth/matrix.py: {missing}"
    keys = {(m, normalize(p)) for m, p in routes}
    unserved = [f"{r.method} {r.path}" for r in RULES if r.key not in keys]
    assert not unserved, f"rules for routes the server does not have: {unserved}"


async def test_every_route_with_every_role(rig: Rig) -> None:
    checked = 0
    for method, path in served(rig):
        rule = rule_for(method, path)
        assert rule is not None
        for role in Role:
            await _check(rig, rule, method, path, role)
            checked += 1
        if not rule.public:
            status, body, _ = await rig.client.request(method, fill(path, OWN_AGENT), token=None)
            assert status == 401, (method, path, body)
    assert checked >= 5 * 60


async def _check(rig: Rig, rule: Rule, method: str, path: str, role: Role) -> None:
    scope = rule.scope(role)
    url = fill(path, OWN_AGENT).removeprefix("/v1")
    status, body, _ = await rig.as_role(role, method, url)
    where = f"{method} {path} as {role.value}"
    if scope is Scope.OWN and "{call_id}" in path:
        # The call is nobody's: an agent may not touch it (its own calls:
        # test_agent_acts_on_its_own_call_only).
        assert (status, body["error_id"]) == (403, "not-own-resource"), (where, body)
        check(path, method, 403, body)
    elif rule.public or scope is not None:
        assert status not in (401, 403, 429), (where, status, body)
    else:
        assert (status, body["error_id"]) == (403, "forbidden"), (where, body)
        assert body["details"]["allowed_roles"] == sorted(r.value for r in rule.roles)
        check(path, method, 403, body)
    if scope is Scope.OWN and "{agent_id}" in path:
        other = fill(path, OTHER_AGENT).removeprefix("/v1")
        status, body, _ = await rig.as_role(role, method, other)
        assert (status, body["error_id"]) == (403, "not-own-resource"), (where, body)


async def test_agent_acts_on_its_own_call_only(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    acd = rig.engine.acd
    assert acd is not None
    mine, theirs = "11111111-0000-4000-8000-000000000001", "22222222-0000-4000-8000-000000000002"
    owners = {mine: "alice", theirs: "bob"}
    # The ACD's own answer is unit-tested (tests/unit/test_acd_agent_of_call.py); here the
    # middleware's use of it.
    monkeypatch.setattr(acd, "agent_of_call", owners.get)
    status, body, _ = await rig.as_role(Role.AGENT, "GET", f"/calls/{mine}")
    assert status == 404, body  # allowed through; the calls service does not know it
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/dtmf"), ("POST", "/redirect")):
        status, body, _ = await rig.as_role(Role.AGENT, method, f"/calls/{theirs}{suffix}")
        assert (status, body["error_id"]) == (403, "not-own-resource"), (method, suffix, body)


def test_openapi_document_is_written_from_the_table() -> None:
    doc = openapi_document()
    assert apply(json.loads(json.dumps(doc))) == doc, (
        "engine/api/openapi.json is not what scripts/openapi_security.py writes: run it"
    )
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            rule = rule_for(method.upper(), path)
            assert rule is not None, f"{method} {path} is documented but not in the table"
            if rule.public:
                assert "x-roles" not in op
            else:
                assert op["x-roles"] == {r.value: s.value for r, s in rule.roles.items()}
                assert {"401", "403", "429"} <= set(op["responses"]), (method, path)


def test_matrix_renders_every_rule() -> None:
    text = render()
    assert text.count("\n") == len(RULES) + 1
    assert "| GET | `/v1/audit` | yes | - | - | - | yes |" in text
