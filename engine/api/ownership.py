"""Which lease each forwardable route's object falls under (engine/api/forward.py).

The policy (docs/architecture.md "Any engine serves the API"):

- **A call** belongs to the owner of its switch link, lease ``switch:<switch>``: that engine
  placed or adopted it, follows its events and holds its live state. Hangup, redirect, DTMF,
  recording control and disposition go there. An originate that names a switch (``switch``,
  or a ``trunk`` on one) goes to that switch's owner; one through a trunk group is placed by
  the engine that received it (a group may span switches).
- **A campaign** belongs to the engine whose runner holds ``campaign:<id>``. Its state
  commands (start, pause, stop, patch) would also work anywhere (they go through its
  PostgreSQL row), but at the owner they take effect on the runner at once; its live stats
  and its previews exist only there.
- **An agent** belongs to the owner of its *home queue*, lease ``queue:<name>``: the first
  queue, in name order, whose skills the agent meets (the queues it can serve follow from the
  config alone, as the live feed works them out). Its state machine has one writer, the ACD
  that offers it calls, so its commands (login, ready, pause, logout, supervisor actions) and
  its view go there. An agent that fits no queue has no owner and is served where asked.
  (The lease policy keeps the queues that share agents on one engine; see the docs.)
- **A queue** belongs to the holder of ``queue:<name>``: putting a call in it and its view.
- **A trunk's** drain and enable go to the owner of its switch, the engine that places calls
  on it: it stops using a drained trunk at once and answers with its own view. The admin
  state is also shared (engine/store/redis/trunk_admin.py), so every other engine follows it
  within a second, and an engine that takes the switch over later starts with it.
- **An agent token's read of a call** goes to the call's owner too: whether the call is the
  agent's is known by the ACD there (the check runs after forwarding). Other roles read the
  shared registry wherever they ask.

Each resolver answers None (serve here, no Redis read) when this engine has the object itself
or the request names nothing it can resolve (a malformed id: the handler answers 400/404 as
it always did).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from engine.acd.service import AcdService
from engine.api.forward import Claim, Resolver
from engine.auth.audit import IDENTITY
from engine.auth.roles import Role
from engine.calls.errors import CallNotFound
from engine.calls.schemas import CALL_ID
from engine.calls.service import CallService
from engine.campaigns.service import CampaignService
from engine.core.errors import InvalidRequest
from engine.trunks.service import TrunkService
from engine.web.validation import read_json

_CALL_ID = re.compile(CALL_ID)
CAMPAIGN_VAR = "ENGINE_CAMPAIGN"


def switch_lease(switch: str) -> str:
    return f"switch:{switch}"


def queue_lease(queue: str) -> str:
    return f"queue:{queue}"


def campaign_lease(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def home_queues(
    agents: Iterable[tuple[str, Mapping[str, int]]], queues: Mapping[str, Any]
) -> dict[str, str]:
    """agent id -> the first queue (by name) whose skills it meets."""
    out: dict[str, str] = {}
    for agent_id, skills in agents:
        for name in sorted(queues):
            needs: Mapping[str, int] = queues[name].skills
            if all(skills.get(s, 0) >= level for s, level in needs.items()):
                out[agent_id] = name
                break
    return out


class CallOwners:
    def __init__(self, calls: CallService, trunks: TrunkService | None) -> None:
        self._calls = calls
        self._trunks = trunks

    async def of_call(self, request: web.Request) -> Claim | None:
        call_id = request.match_info.get("call_id", "")
        if not _CALL_ID.fullmatch(call_id) or self._calls.is_tracked(call_id):
            return None
        try:
            call = await self._calls.get(call_id)  # the shared registry
        except CallNotFound:
            return None
        if call.is_ended:
            return None  # answered here: 409 call-ended, as anywhere
        return Claim(switch_lease(call.switch), local_ok=call.switch in self._calls.drivers)

    async def of_call_for_agent(self, request: web.Request) -> Claim | None:
        """A read of a call is served anywhere (the registry is shared), except for an agent
        token: whether the call is its agent's is known by the ACD of the engine that owns the
        call, so it is read there (engine/api/auth.py ``own_call_middleware``)."""
        identity = request.get(IDENTITY)
        if identity is None or identity.role is not Role.AGENT:
            return None
        return await self.of_call(request)

    async def of_originate(self, request: web.Request) -> Claim | None:
        try:
            body = read_json(await request.read())
        except InvalidRequest:
            return None  # the handler says what is wrong with it
        if not isinstance(body, dict):
            return None
        switch = body.get("switch")
        trunk = body.get("trunk")
        if not isinstance(switch, str) and isinstance(trunk, str) and self._trunks is not None:
            spec = self._trunks.fleet.trunks.get(trunk)
            switch = spec.switch if spec is not None else None
        if not isinstance(switch, str):
            return None
        # Nobody holding it: answered here (placed, or 400 unknown-switch for a name no
        # engine has; this engine cannot tell that from a switch between two owners).
        return Claim(switch_lease(switch))


class TrunkOwners:
    def __init__(self, trunks: TrunkService) -> None:
        self._trunks = trunks

    async def of_trunk(self, request: web.Request) -> Claim | None:
        spec = self._trunks.fleet.trunks.get(request.match_info.get("name", ""))
        return Claim(switch_lease(spec.switch)) if spec is not None else None


class CampaignOwners:
    def __init__(self, campaigns: CampaignService, calls: CallService) -> None:
        self._campaigns = campaigns
        self._calls = calls

    async def of_campaign(self, request: web.Request) -> Claim | None:
        campaign_id = request.match_info.get("id", "")
        runner = self._campaigns.runners.get(campaign_id)
        if runner is not None and runner.token is not None:
            return None  # our runner holds the lease
        return Claim(campaign_lease(campaign_id)) if campaign_id else None

    async def of_call(self, request: web.Request) -> Claim | None:
        call_id = request.match_info.get("call_id", "")
        if not _CALL_ID.fullmatch(call_id) or self._campaigns.runner_of_call(call_id) is not None:
            return None
        try:
            call = await self._calls.get(call_id)
        except CallNotFound:
            return None
        campaign_id = call.variables.get(CAMPAIGN_VAR)
        return Claim(campaign_lease(campaign_id)) if campaign_id else None


class AcdOwners:
    def __init__(self, acd: AcdService) -> None:
        self._acd = acd
        # From the config alone, once: no work on the request path.
        self._home = home_queues(((c.id, c.skills) for c in acd.agent_configs()), acd.queues)

    async def of_agent(self, request: web.Request) -> Claim | None:
        home = self._home.get(request.match_info.get("agent_id", ""))
        return Claim(queue_lease(home)) if home is not None else None

    async def of_queue(self, request: web.Request) -> Claim | None:
        name = request.match_info.get("name", "")
        return Claim(queue_lease(name)) if name in self._acd.queues else None


def forwarded_routes(
    calls: CallService,
    *,
    trunks: TrunkService | None = None,
    campaigns: CampaignService | None = None,
    acd: AcdService | None = None,
) -> dict[tuple[str, str], Resolver]:
    """The forwardable routes of this deployment's API and their resolvers.

    Reads of shared state (call lists, a call, CDRs, campaign rows, reports) are not in the
    table: every engine answers them from PostgreSQL and Redis. The one exception is an agent
    token's read of a call, whose "own call" check needs the owner's ACD."""
    c = CallOwners(calls, trunks)
    routes: dict[tuple[str, str], Resolver] = {
        ("POST", "/v1/calls"): c.of_originate,
        ("GET", "/v1/calls/{call_id}"): c.of_call_for_agent,
        ("DELETE", "/v1/calls/{call_id}"): c.of_call,
        ("POST", "/v1/calls/{call_id}/redirect"): c.of_call,
        ("POST", "/v1/calls/{call_id}/dtmf"): c.of_call,
        ("POST", "/v1/calls/{call_id}/recording"): c.of_call,
    }
    if trunks is not None:
        t = TrunkOwners(trunks)
        routes[("POST", "/v1/trunks/{name}/drain")] = t.of_trunk
        routes[("POST", "/v1/trunks/{name}/enable")] = t.of_trunk
    if campaigns is not None:
        k = CampaignOwners(campaigns, calls)
        routes[("POST", "/v1/calls/{call_id}/disposition")] = k.of_call
        for method, path in (
            ("PATCH", ""),
            ("POST", "/start"),
            ("POST", "/pause"),
            ("POST", "/stop"),
            ("GET", "/stats"),
            ("GET", "/previews"),
            ("POST", "/previews/{attempt_id}/accept"),
            ("POST", "/previews/{attempt_id}/skip"),
        ):
            routes[(method, "/v1/campaigns/{id}" + path)] = k.of_campaign
    if acd is not None:
        a = AcdOwners(acd)
        routes[("GET", "/v1/agents/{agent_id}")] = a.of_agent
        for action in ("login", "logout", "ready", "pause", "spy", "force-pause", "force-logout"):
            routes[("POST", f"/v1/agents/{{agent_id}}/{action}")] = a.of_agent
        routes[("POST", "/v1/agents/{agent_id}/move")] = a.of_agent
        routes[("DELETE", "/v1/agents/{agent_id}/spy")] = a.of_agent
        routes[("GET", "/v1/queues/{name}")] = a.of_queue
        routes[("POST", "/v1/queues/{name}/calls")] = a.of_queue
    return routes
