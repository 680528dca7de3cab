"""Implementation of scripts/demo-acd: callers queued to agents on real SIP phones.

Against the engine `make run` started (telephony-config/engine.toml): starts
SIPp phones for the example agents' endpoints (agent1..agent3), logs the
agents in and makes them ready, places callers through the loopback carrier
(01XX answers and stays up), hands each answered caller to a queue with tags,
intent and customer data, and prints the ACD's events until every caller was
connected to an agent and has hung up (the agents' phones hang up after --talk).
The agents it logged in are logged out again when it ends, also on an error or
Ctrl-C (force-logout, at the end of its call, for one still on a call).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from engine.config import load_config
from tests.sip_agents import AgentPhones, AgentSpec

SHOWN = {
    "AgentStateChanged",
    "QueueCallEntered",
    "QueueCallOffered",
    "QueueCallConnected",
    "QueueCallAbandoned",
    "QueueCallOverflowed",
}


@dataclass(frozen=True)
class Caller:
    to: str  # a loopback-carrier number: 01XX answers and stays up 60 s
    name: str
    intent: str
    tags: tuple[str, ...] = ()


CALLERS = (
    Caller("0101", "Wang Fang", "pre_sale", ("vip",)),
    Caller("0102", "Ana Lima", "pre_sale"),
    Caller("0103", "Li Wei", "tech_support", ("high_value",)),
)


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.base}{path}", json=body) as resp:
            data = await resp.json()
            if resp.status >= 300:
                raise SystemExit(f"{method} {path}: {resp.status} {json.dumps(data)}")
            return data

    async def post_status(self, path: str, body: Any = None) -> int:
        """POST and return the HTTP status, never raising on an error answer."""
        async with self.http.request("POST", f"{self.base}{path}", json=body) as resp:
            await resp.read()
            return resp.status


class AgentApi(Protocol):
    async def call(self, method: str, path: str, body: Any = None) -> Any: ...

    async def post_status(self, path: str, body: Any = None) -> int: ...


FORCE_LOGOUT_REASON = "demo-acd finished"


@asynccontextmanager
async def agents_ready(api: AgentApi, agents: list[dict[str, Any]]) -> AsyncIterator[list[str]]:
    """Log in (and make ready) the agents that are logged out or paused; on the way out,
    however the demo ended (done, an error, Ctrl-C's cancellation), log out again the ones it
    logged in. Agents someone else had logged in stay as they were."""
    ours: list[str] = []
    try:
        for agent in agents:
            if agent["state"] == "logged_out":
                agent = await api.call("POST", f"/agents/{agent['id']}/login")
                ours.append(agent["id"])
            if agent["state"] == "paused":
                await api.call("POST", f"/agents/{agent['id']}/ready")
        yield ours
    finally:
        await log_out(api, ours)


async def log_out(api: AgentApi, agent_ids: list[str]) -> None:
    """Each agent logged out; one still reserved or on a call (409) is force-logged out,
    which takes effect when its call is over. A failure is reported, never raised: the
    others are still logged out."""
    for agent_id in agent_ids:
        try:
            status = await api.post_status(f"/agents/{agent_id}/logout")
            if status == 409:
                status = await api.post_status(
                    f"/agents/{agent_id}/force-logout", {"reason": FORCE_LOGOUT_REASON}
                )
            if status >= 300:
                print(f"agent {agent_id} not logged out: HTTP {status}", file=sys.stderr)
        except (aiohttp.ClientError, TimeoutError) as err:
            print(f"agent {agent_id} not logged out: {err}", file=sys.stderr)


@asynccontextmanager
async def phones_for(agents: list[dict[str, Any]], hold_s: float) -> AsyncIterator[AgentPhones]:
    specs = [
        AgentSpec(endpoint.split("/", 1)[-1], "answer-hangup", hold_s)
        for agent in agents
        for endpoint in agent["endpoints"].values()
    ]
    async with AgentPhones(specs) as phones:
        yield phones


def show(data: dict[str, Any]) -> str:
    event = data["event"]
    kind = event["type"]
    if kind == "AgentStateChanged":
        return f"agent {event.get('agent_id')}: {event.get('previous')} -> {event.get('state')}"
    keep = {k: v for k, v in event.items() if k not in {"type", "ts", "switch"}}
    return f"{kind} {json.dumps(keep, ensure_ascii=False)}"


async def answered(api: Api, call_id: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        call = await api.call("GET", f"/calls/{call_id}")
        if call["state"] in ("answered", "bridged"):
            return
        if call["state"] == "ended":
            raise SystemExit(f"caller {call_id} ended before answering: {call['cause_text']}")
        await asyncio.sleep(0.2)  # polling the API for a state, with a deadline
    raise SystemExit(f"caller {call_id} not answered within {timeout_s:.0f} s")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="telephony-config/engine.toml")
    parser.add_argument("--queue", default="sales", help="queue for callers with no intent match")
    parser.add_argument("--talk", type=float, default=6.0, help="seconds each agent talks")
    args = parser.parse_args()

    cfg = load_config(args.config)
    base = f"http://{cfg.api.host}:{cfg.api.port}/v1"
    headers = {"Authorization": f"Bearer {cfg.api.tokens[0].get_secret_value()}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        api = Api(http, base)
        agents = (await api.call("GET", "/agents"))["agents"]
        if not agents:
            print("no [[agents]] in the config: nothing to demonstrate", file=sys.stderr)
            return 1
        async with (
            phones_for(agents, args.talk),
            http.ws_connect(f"{base}/events") as ws,
            agents_ready(api, agents),
        ):
            connected: set[str] = set()
            entered: list[str] = []
            for caller in CALLERS:
                call = await api.call(
                    "POST",
                    "/calls",
                    {"to": caller.to, "trunk": "self-trunk", "then": {"kind": "park"}},
                )
                await answered(api, call["call_id"])
                body = {
                    "call_id": call["call_id"],
                    "tags": list(caller.tags),
                    "intent": caller.intent,
                    "customer": {"name": caller.name},
                }
                queue = cfg.acd.intents.get(caller.intent, args.queue)
                await api.call("POST", f"/queues/{queue}/calls", body)
                entered.append(call["call_id"])
                print(f"caller {caller.to} ({caller.name}) queued in {queue}")
            # Until every caller was connected and has hung up (the agents' phones hang up
            # after --talk): leaving earlier would stop the phones mid-call and leave the
            # callers up on the switch (a later SIGTERM would wait its grace for them).
            ended: set[str] = set()
            async with asyncio.timeout(args.talk * len(CALLERS) + 120):
                async for msg in ws:
                    data = json.loads(msg.data)
                    event = data.get("event", {})
                    call_id = str(event.get("call_id"))
                    if (
                        event.get("type") == "CallStateChanged"
                        and event.get("state") == "ended"
                        and call_id in entered
                    ):
                        ended.add(call_id)
                        print(f"  #{data['seq']:<6} caller {call_id} hung up")
                    if event.get("type") not in SHOWN:
                        if ended >= set(entered):
                            break
                        continue
                    print(f"  #{data['seq']:<6} {show(data)}")
                    if event["type"] == "QueueCallConnected":
                        connected.add(call_id)
                    if ended >= set(entered):
                        break
            if connected < set(entered):
                print("some callers hung up before reaching an agent", file=sys.stderr)
            for name in sorted({q["name"] for q in (await api.call("GET", "/queues"))["queues"]}):
                print(json.dumps(await api.call("GET", f"/queues/{name}"), indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        # asyncio.run cancelled main(): its agents were logged out on the way (agents_ready).
        print("interrupted", file=sys.stderr)
        sys.exit(130)
