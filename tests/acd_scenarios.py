"""What the ACD integration scenarios share on both switches.

``tests/integration/test_acd_live.py`` runs them on the real Asterisk sandbox with SIPp agent
phones, ``tests/api/test_acd_freeswitch_scenarios.py`` on the fake FreeSWITCH. Scenario (a),
"3 agents, 8 callers of mixed priority and intent", is defined here once: its config text and
an oracle that says, from that config alone, which agent takes which caller in which order.

The oracle is written from the documented rules (docs/acd.md "Priorities and order",
"Strategies"), not from the engine's router: a brute-force scan of every waiting caller against
every free agent. A freed agent takes the best caller it fits across all its queues (highest
priority, then the earliest entry); a caller entering with free agents that fit goes to the one
the queue's strategy picks.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.harness import Client, event_log, wait_for


@dataclass(frozen=True)
class AgentDef:
    id: str
    phone: str  # agentN: the SIPp phone on Asterisk, user/agentN on FreeSWITCH
    skills: Mapping[str, int]


@dataclass(frozen=True)
class QueueDef:
    name: str
    skills: Mapping[str, int]
    strategy: str


@dataclass(frozen=True)
class CallerDef:
    label: str
    tags: tuple[str, ...]
    intent: str


PRIORITIES = {"vip": 3, "high_value": 2, "normal": 1}
DEFAULT_PRIORITY = 1
INTENTS = {"pre_sale": "sales", "tech_support": "tech"}

MIX_AGENTS = (
    AgentDef("a1", "agent1", {"sales": 9}),
    AgentDef("a2", "agent2", {"sales": 6, "tech": 7}),
    AgentDef("a3", "agent3", {"tech": 9}),
)
MIX_QUEUES = (
    QueueDef("sales", {"sales": 5}, "highest-skill-level"),
    QueueDef("tech", {"tech": 5}, "longest-idle"),
)
# In the order they enter, with every agent free at first.
MIX_CALLERS = (
    CallerDef("c1", ("normal",), "pre_sale"),
    CallerDef("c2", ("normal",), "tech_support"),
    CallerDef("c3", ("high_value",), "pre_sale"),
    CallerDef("c4", ("vip",), "tech_support"),
    CallerDef("c5", ("normal",), "pre_sale"),
    CallerDef("c6", ("vip",), "pre_sale"),
    CallerDef("c7", ("high_value",), "tech_support"),
    CallerDef("c8", ("VIP", "normal"), "tech_support"),  # tags match case-insensitively
)


def toml_map(values: Mapping[str, Any]) -> str:
    def one(v: Any) -> str:
        return f'"{v}"' if isinstance(v, str) else str(v)

    return "{ " + ", ".join(f"{k} = {one(v)}" for k, v in values.items()) + " }"


def overflow_queues(after_s: float) -> str:
    """Scenario (e)'s queues: one relaxes its skill minimum after ``after_s``, one
    adds the fallback queue ``help``."""
    return f"""
[[queues]]
name = "ovrelax"
skills = {{ ov = 8 }}
[[queues.overflow]]
after_s = {after_s}
relax_skills = {{ ov = 3 }}
[[queues]]
name = "ovfall"
skills = {{ ovf = 5 }}
[[queues.overflow]]
after_s = {after_s}
add_queue = "help"
[[queues]]
name = "help"
skills = {{ help = 5 }}
"""


def acd_section(pause_reasons: tuple[str, ...] = ("break",)) -> str:
    reasons = ", ".join(f'"{r}"' for r in pause_reasons)
    return f"""
[acd]
pause_reasons = [{reasons}]
priorities = {toml_map(PRIORITIES)}
default_priority = {DEFAULT_PRIORITY}
intents = {toml_map(INTENTS)}
"""


def mix_toml(switch: str, endpoint: Callable[[str], str]) -> str:
    """``[[agents]]`` and ``[[queues]]`` of scenario (a); ``endpoint(phone)`` is what is dialled."""
    out = []
    for a in MIX_AGENTS:
        out.append(
            f"""
[[agents]]
id = "{a.id}"
endpoints = {{ {switch} = "{endpoint(a.phone)}" }}
skills = {toml_map(a.skills)}
"""
        )
    for q in MIX_QUEUES:
        out.append(
            f"""
[[queues]]
name = "{q.name}"
skills = {toml_map(q.skills)}
strategy = "{q.strategy}"
ring_timeout_s = 10.0
wrap_up_s = 0.0
"""
        )
    return "".join(out)


def priority_of(tags: tuple[str, ...]) -> int:
    named = [PRIORITIES[t.lower()] for t in tags if t.lower() in PRIORITIES]
    return max(named) if named else DEFAULT_PRIORITY


def queue_of(caller: CallerDef) -> str:
    return INTENTS[caller.intent]


@dataclass
class ServeOracle:
    """Who serves whom, replaying agent readiness, entries and releases (one at a time)."""

    agents: tuple[AgentDef, ...]
    queues: tuple[QueueDef, ...]
    free: dict[str, int] = field(default_factory=dict)  # agent -> when it became free (order)
    busy: dict[str, str] = field(default_factory=dict)  # agent -> caller label
    waiting: list[tuple[int, int, CallerDef]] = field(default_factory=list)
    served: list[tuple[str, str]] = field(default_factory=list)  # (caller, agent) in order
    _clock: Any = field(default_factory=itertools.count)

    def _agent(self, agent_id: str) -> AgentDef:
        return next(a for a in self.agents if a.id == agent_id)

    def _queue(self, name: str) -> QueueDef:
        return next(q for q in self.queues if q.name == name)

    @staticmethod
    def fits(agent: AgentDef, queue: QueueDef) -> bool:
        return all(agent.skills.get(s, 0) >= lvl for s, lvl in queue.skills.items())

    def ready(self, agent_id: str) -> None:
        self.free[agent_id] = next(self._clock)

    def _assign(self, caller: CallerDef, agent_id: str) -> str:
        self.free.pop(agent_id, None)
        self.busy[agent_id] = caller.label
        self.served.append((caller.label, agent_id))
        return agent_id

    def enter(self, caller: CallerDef) -> str | None:
        """The agent the caller goes to at once, or None (it waits)."""
        q = self._queue(queue_of(caller))
        fitting = [self._agent(a) for a in self.free if self.fits(self._agent(a), q)]
        order = next(self._clock)
        if not fitting:
            self.waiting.append((priority_of(caller.tags), order, caller))
            return None

        def key(a: AgentDef) -> tuple[Any, ...]:
            idle = (self.free[a.id], a.id)  # longest idle first, then the lower id
            if q.strategy == "highest-skill-level":
                return (-sum(a.skills.get(s, 0) for s in q.skills), *idle)
            if q.strategy == "longest-idle":
                return idle
            raise ValueError(f"the oracle knows no strategy {q.strategy!r}")

        return self._assign(caller, min(fitting, key=key).id)

    def release(self, agent_id: str) -> str | None:
        """The agent's caller hangs up; the caller label the agent takes next, or None."""
        del self.busy[agent_id]
        self.ready(agent_id)
        agent = self._agent(agent_id)
        candidates = [w for w in self.waiting if self.fits(agent, self._queue(queue_of(w[2])))]
        if not candidates:
            return None
        best = min(candidates, key=lambda w: (-w[0], w[1]))
        self.waiting.remove(best)
        self._assign(best[2], agent_id)
        return best[2].label


# ------------------------------------------------------------------------------ API helpers


class Events:
    """The engine events of WebSocket messages (``{"seq": n, "event": {...}}``), as they come."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    def mark(self) -> int:
        return len(self.messages)

    def since(self, mark: int = 0, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        out = []
        for m in list(self.messages)[mark:]:
            e = m.get("event")
            if not isinstance(e, dict) or (kind is not None and e.get("type") != kind):
                continue
            if all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    async def wait(
        self, kind: str, mark: int = 0, timeout_s: float = 20.0, count: int = 1, **match: Any
    ) -> dict[str, Any]:
        """The ``count``-th event of ``kind`` matching ``match`` after ``mark``."""
        what = f"{count} x {kind} {match}"
        await wait_for(lambda: len(self.since(mark, kind, **match)) >= count, timeout_s, what)
        return self.since(mark, kind, **match)[count - 1]

    def last_seq(self) -> int:
        seqs = [m["seq"] for m in list(self.messages) if isinstance(m.get("seq"), int)]
        return max(seqs) if seqs else 0


async def agent_view(client: Client, agent_id: str) -> dict[str, Any]:
    status, body, _ = await client.request("GET", f"/agents/{agent_id}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def agent_do(client: Client, agent_id: str, action: str, **body: Any) -> dict[str, Any]:
    path = f"/agents/{agent_id}/{action}"
    if body:
        status, data, _ = await client.request("POST", path, json=body)
    else:
        status, data, _ = await client.request("POST", path)
    assert status == 200, (agent_id, action, data)
    assert isinstance(data, dict)
    return data


async def fresh_ready(client: Client, agent_id: str) -> None:
    """A new session for the agent (logout if needed, login, ready): available, counters at 0."""
    view = await agent_view(client, agent_id)
    assert view["state"] not in ("reserved", "on_call"), f"{agent_id} still busy: {view}"
    if view["state"] != "logged_out":
        await agent_do(client, agent_id, "logout")
    await agent_do(client, agent_id, "login")
    assert (await agent_do(client, agent_id, "ready"))["state"] == "available"


async def log_out(client: Client, *agent_ids: str, timeout_s: float = 20.0) -> None:
    """Log the agents out once they are free (a test's last step, so the next starts clean)."""
    for agent_id in agent_ids:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (view := await agent_view(client, agent_id))["state"] in ("reserved", "on_call"):
            assert loop.time() < deadline, f"{agent_id} never freed: {view}"
            await asyncio.sleep(0.05)
        if view["state"] != "logged_out":
            await agent_do(client, agent_id, "logout")


async def wait_links_up(client: Client, timeout_s: float = 30.0) -> None:
    """Every switch link up (the API answers before the links are: a process just started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        _, body, _ = await client.request("GET", "/health/ready")
        if isinstance(body, dict) and body.get("switches_up") == body.get("switches_total"):
            return
        assert loop.time() < deadline, f"switch links not up: {body}"
        await asyncio.sleep(0.05)


async def enter(client: Client, queue: str, call_id: str, **extra: Any) -> dict[str, Any]:
    status, body, _ = await client.request(
        "POST", f"/queues/{queue}/calls", json={"call_id": call_id, **extra}
    )
    assert status == 201, body
    assert isinstance(body, dict)
    return body


async def hang_up(client: Client, call_id: str) -> None:
    status, body, _ = await client.request("DELETE", f"/calls/{call_id}")
    assert status in (202, 409), body  # 409: it ended meanwhile


# ------------------------------------------------------------------------- scenario (a)


async def run_mix(client: Client, place_caller: Callable[[int], Awaitable[str]]) -> list[str]:
    """Scenario (a) through the API: 3 agents, 8 callers; every choice checked against the
    oracle as it happens. ``place_caller(n)`` returns the call id of an answered caller.
    Returns the labels in the order served."""
    oracle = ServeOracle(MIX_AGENTS, MIX_QUEUES)
    for a in MIX_AGENTS:  # in this order: a1 is the longest idle, then a2, then a3
        await fresh_ready(client, a.id)
        oracle.ready(a.id)
    call_ids = list(await asyncio.gather(*(place_caller(n) for n in range(len(MIX_CALLERS)))))
    label_of = dict(zip(call_ids, (c.label for c in MIX_CALLERS), strict=True))

    async with event_log(client) as messages:
        ev = Events(messages)

        def pairs(kind: str) -> list[tuple[str, str]]:
            return [
                (label_of[e["call_id"]], e["agent_id"])
                for e in ev.since(0, kind)
                if e["call_id"] in label_of
            ]

        def observed() -> list[tuple[str, str]]:
            # Offers are decided (and published) in order; answers race each other, so the
            # order is the offers' and the connections must be the same pairs.
            return pairs("QueueCallOffered")

        def all_connected() -> bool:
            return sorted(pairs("QueueCallConnected")) == sorted(oracle.served)

        for caller, call_id in zip(MIX_CALLERS, call_ids, strict=True):
            expected = oracle.enter(caller)
            body = await enter(
                client,
                queue_of(caller),
                call_id,
                tags=list(caller.tags),
                intent=caller.intent,
                customer={"label": caller.label},
            )
            assert body["priority"] == priority_of(caller.tags), (caller, body)
            assert body["state"] == ("waiting" if expected is None else "ringing"), (caller, body)
            if expected is not None:
                offered = await ev.wait("QueueCallOffered", call_id=call_id)
                assert offered["agent_id"] == expected, (caller, offered)
                assert offered["customer"] == {"label": caller.label}
        await wait_for(all_connected, 30, f"connected: {oracle.served}")
        assert observed() == oracle.served

        ids = sorted(a.id for a in MIX_AGENTS)
        for _ in range(len(MIX_CALLERS)):
            if not oracle.busy:
                break
            for agent_id in ids:
                if agent_id not in oracle.busy:
                    continue
                current = [c for c, a in observed() if a == agent_id][-1]
                assert current == oracle.busy[agent_id]
                mark = ev.mark()
                expected_next = oracle.release(agent_id)
                await hang_up(client, call_ids[[c.label for c in MIX_CALLERS].index(current)])
                await ev.wait("AgentStateChanged", mark, agent_id=agent_id, state="available")
                view = await agent_view(client, agent_id)
                if expected_next is None:
                    assert view["state"] == "available", (agent_id, view, oracle.served)
                else:
                    await wait_for(all_connected, 20, f"{agent_id} connected to {expected_next}")
                assert observed() == oracle.served, (observed(), oracle.served)
        assert not oracle.busy and not oracle.waiting, oracle
        for a in MIX_AGENTS:
            assert (await agent_view(client, a.id))["state"] == "available"
    await log_out(client, *(a.id for a in MIX_AGENTS))
    return [label for label, _ in oracle.served]


# ------------------------------------------------------------------------- scenario (e)


async def run_overflow(
    client: Client,
    place_caller: Callable[[int], Awaitable[str]],
    *,
    queue: str,
    agent_id: str,
    action: dict[str, Any],
    after_s: float,
    tolerance_s: float,
) -> float:
    """Scenario (e): ``agent_id`` is free all along but only fits ``queue``'s caller once
    the overflow rule ``action`` fires after ``after_s``. Returns the measured wait."""
    await fresh_ready(client, agent_id)
    caller = await place_caller(0)
    async with event_log(client) as messages:
        ev = Events(messages)
        body = await enter(client, queue, caller, tags=["normal"])
        assert body["state"] == "waiting", body
        entered = await ev.wait("QueueCallEntered", call_id=caller)
        over = await ev.wait("QueueCallOverflowed", call_id=caller, timeout_s=after_s + 10)
        offered = await ev.wait("QueueCallOffered", call_id=caller)
        await ev.wait("QueueCallConnected", call_id=caller, agent_id=agent_id)
        await hang_up(client, caller)
    waited = float(over["ts"] - entered["ts"])
    assert after_s <= waited <= after_s + tolerance_s, (entered, over)
    assert (over["stage"], over["after_s"], over["actions"], over["exit"]) == (
        1,
        after_s,
        [action],
        None,
    )
    assert offered["agent_id"] == agent_id and offered["ts"] >= over["ts"], (over, offered)
    assert len(ev.since(0, "QueueCallOffered", call_id=caller)) == 1
    await log_out(client, agent_id)
    return waited


# ------------------------------------------------------------------------- scenario (f)


class Restartable(Protocol):
    """The engine as a process (tests/integration/engine_process.py)."""

    def kill(self) -> None: ...

    async def start(self, timeout_s: float = 60.0) -> None: ...


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


async def run_restart(
    client: Client,
    engine: Restartable,
    place_caller: Callable[[int], Awaitable[str]],
    *,
    stored_state: Callable[[str], Awaitable[str]],
    leave_while_down: Callable[[dict[str, Any], str], Awaitable[None]],
    queue: str,
    agents: tuple[str, str],
    all_agents: list[str],
    wrap_s: float,
    tolerance_s: float,
    ringing: tuple[str, str] | None = None,
    ringing_withdrawn: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Scenario (f): two agents on calls, the engine SIGKILLed; while it is down one caller
    hangs up (``leave_while_down(caller_call_view, its_agent_id)``). After the restart: the
    agents are rebuilt, the one without a call wraps up and is freed, the other stays on
    its live call, nobody is reserved or on a call without a live call, and the remaining
    call's end gives wrap-up, then available.

    ``ringing`` = (agent, queue): a third agent's phone rings (never answers) at the crash.
    After the restart that offer is withdrawn (``ringing_withdrawn()`` checks the phone saw
    it go), the agent is freed, and the caller keeps its place and is offered again."""
    await wait_links_up(client)
    for agent_id in (*agents, *([ringing[0]] if ringing else [])):
        await fresh_ready(client, agent_id)
    stays, leaves, *more = await asyncio.gather(
        *(place_caller(n) for n in range(3 if ringing else 2))
    )
    async with event_log(client) as messages:
        ev = Events(messages)
        await enter(client, queue, stays, tags=["normal"])
        await enter(client, queue, leaves, tags=["normal"])
        on = {
            e["call_id"]: e["agent_id"]
            for e in [
                await ev.wait("QueueCallConnected", call_id=stays),
                await ev.wait("QueueCallConnected", call_id=leaves),
            ]
        }
        keeper, leaver = on[stays], on[leaves]
        assert {keeper, leaver} == set(agents)
        if ringing:
            await enter(client, ringing[1], more[0], tags=["vip"])
            await ev.wait("QueueCallOffered", call_id=more[0], agent_id=ringing[0])

        async def stored() -> bool:
            busy = all([await stored_state(a) == "on_call" for a in agents])
            return busy and (not ringing or await stored_state(ringing[0]) == "reserved")

        # Live state reaches Redis in the background: kill only once it is there.
        await _until(stored, "Redis holds both agents on_call (and the ringing one reserved)")
        last_seq = ev.last_seq()
    status, leaving, _ = await client.request("GET", f"/calls/{leaves}")
    assert status == 200 and leaving["state"] == "bridged", leaving

    engine.kill()
    await leave_while_down(leaving, leaver)
    await engine.start()
    await wait_links_up(client)

    async with event_log(client, since=last_seq) as messages:
        ev = Events(messages)
        # The leaver's agent is rebuilt on_call, found without a live call, and wraps up.
        wrap = await ev.wait("AgentStateChanged", agent_id=leaver, state="wrap_up")
        free = await ev.wait(
            "AgentStateChanged", agent_id=leaver, state="available", timeout_s=wrap_s + 10
        )
        assert wrap["previous"] == "on_call", wrap
        assert abs((free["ts"] - wrap["ts"]) - wrap_s) <= tolerance_s, (wrap, free)
        if ringing and ringing_withdrawn:
            # The offer in flight at the crash is withdrawn, the agent freed (not a miss);
            # the caller, still up, keeps its place and is offered again.
            freed = await ev.wait(
                "AgentStateChanged", agent_id=ringing[0], state="available", previous="reserved"
            )
            assert freed["call_id"] == more[0], freed
            await ringing_withdrawn()
            again = await ev.wait("QueueCallOffered", call_id=more[0], agent_id=ringing[0])
            assert again["entry_id"] == freed.get("entry_id", again["entry_id"])
        # The keeper is rebuilt on its live call.
        kept = await agent_view(client, keeper)
        assert (kept["state"], kept["call_id"]) == ("on_call", stays), kept
        # No agent is reserved or on a call without a live call.
        for agent_id in all_agents:
            view = await agent_view(client, agent_id)
            if view["state"] in ("reserved", "on_call"):
                status, call, _ = await client.request("GET", f"/calls/{view['call_id']}")
                assert status == 200 and call["ended_at"] is None, (view, call)
        # The call still up ends normally: wrap-up, then available.
        mark = ev.mark()
        await hang_up(client, stays)
        wrap2 = await ev.wait("AgentStateChanged", mark, agent_id=keeper, state="wrap_up")
        free2 = await ev.wait(
            "AgentStateChanged", mark, agent_id=keeper, state="available", timeout_s=wrap_s + 10
        )
        assert abs((free2["ts"] - wrap2["ts"]) - wrap_s) <= tolerance_s, (wrap2, free2)
        if ringing:
            mark = ev.mark()
            await hang_up(client, more[0])
            gone = await ev.wait("QueueCallAbandoned", mark, call_id=more[0])
            assert gone["while"] == "ringing", gone
            await ev.wait("AgentStateChanged", mark, agent_id=ringing[0], state="available")
    await log_out(client, *agents, *([ringing[0]] if ringing else []))
