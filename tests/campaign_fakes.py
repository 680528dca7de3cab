"""Fakes of the engine parts a campaign runner talks to (calls, ACD, leases), for runner tests
on a real PostgreSQL. The switch side is what the fakes script; storage is real."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from engine.acd.entries import Entry, Phase
from engine.acd.model import QueueSpec
from engine.agents.model import AgentConfig, AgentState, AgentStatus
from engine.calls.commands import OriginateCommand
from engine.calls.model import Call, CallState, then_to_dict
from engine.campaigns.history import AttemptRepository
from engine.campaigns.model import CampaignSpec
from engine.campaigns.runner import CampaignRunner, RunnerDeps
from engine.campaigns.store import CampaignStore
from engine.core.errors import EngineError
from engine.pbx.base import Amd, DialplanTarget, Then
from engine.store.outbox import Record


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class FakeCalls:
    clock: Clock
    placed: list[OriginateCommand] = field(default_factory=list)
    calls: dict[str, Call] = field(default_factory=dict)
    hung_up: list[str] = field(default_factory=list)
    redirected: list[tuple[str, Then]] = field(default_factory=list)
    watchers: list[Callable[[Call, Call], None]] = field(default_factory=list)
    fail_originate: bool = False
    #: Raised by every originate while set (e.g. the calls service's SwitchUnavailable).
    fail_with: EngineError | None = None
    adoptable: set[str] = field(default_factory=set)
    #: Calls another engine follows (its switch is not ours): readable, never watched here.
    elsewhere: set[str] = field(default_factory=set)

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]:
        if self.fail_originate:
            raise EngineError("no trunk free", status=503)
        if self.fail_with is not None:
            raise self.fail_with
        assert cmd.call_id is not None
        call = Call(
            call_id=cmd.call_id,
            switch="asterisk-1",
            state=CallState.DIALING,
            to=cmd.to,
            then=then_to_dict(cmd.then),
            created_at=self.clock(),
            trunk="self-trunk",
            variables=dict(cmd.variables),  # as the calls service keeps them (the registry)
        )
        self.placed.append(cmd)
        self.calls[call.call_id] = call
        return call, True

    def change(self, call_id: str, **changes: Any) -> Call:
        before = self.calls[call_id]
        after = before.evolve(**changes)
        self.calls[call_id] = after
        if call_id in self.elsewhere:
            return after  # folded by the other engine: no watcher here hears of it
        for watch in self.watchers:
            watch(before, after)
        return after

    def answer(self, call_id: str) -> Call:
        return self.change(call_id, state=CallState.ANSWERED, answered_at=self.clock())

    def amd(self, call_id: str, status: str) -> Call:
        return self.change(call_id, amd_status=status, amd_cause=f"{status}-X", amd_at=self.clock())

    def end(self, call_id: str, cause: int = 16, sip: int | None = None) -> Call:
        return self.change(
            call_id, state=CallState.ENDED, ended_at=self.clock(), cause=cause, sip_code=sip
        )

    async def hangup(self, call_id: str, cause: int = 16) -> Call:
        self.hung_up.append(call_id)
        return self.calls[call_id]

    async def redirect(self, call_id: str, then: Then) -> Call:
        self.redirected.append((call_id, then))
        return self.calls[call_id]

    async def get(self, call_id: str) -> Call:
        if call_id not in self.calls:
            raise EngineError(f"no call {call_id}", status=404)
        return self.calls[call_id]

    def tracked(self) -> list[Call]:
        return [
            c for c in self.calls.values() if not c.is_ended and c.call_id not in self.elsewhere
        ]

    def is_tracked(self, call_id: str) -> bool:
        call = self.calls.get(call_id)
        return call is not None and not call.is_ended and call_id not in self.elsewhere

    def watch(self, observer: Callable[[Call, Call], None]) -> None:
        self.watchers.append(observer)

    async def adopt_inbound(self, leg: str) -> Call | None:
        if leg not in self.adoptable:
            return None
        call = Call(
            call_id=leg,
            switch="asterisk-1",
            state=CallState.ANSWERED,
            to="",
            then={"kind": "park"},
            created_at=self.clock(),
            answered_at=self.clock(),
        )
        self.calls[leg] = call
        return call


@dataclass
class FakeAcd:
    clock: Clock
    agents: dict[str, AgentStatus] = field(default_factory=dict)
    configs: list[AgentConfig] = field(default_factory=list)
    entries: dict[str, Entry] = field(default_factory=dict)
    withdrawn: list[str] = field(default_factory=list)
    only_agent: dict[str, str | None] = field(default_factory=dict)
    #: Whether the queue is served here (several engines: its lease held and rebuilt).
    serving: bool = True
    serves_asked: int = 0

    @property
    def queues(self) -> Mapping[str, Any]:
        return {"sales": QueueSpec(name="sales")}

    def add_agent(self, agent_id: str, state: AgentState = AgentState.AVAILABLE) -> None:
        self.configs.append(AgentConfig(id=agent_id, name=agent_id))
        self.agents[agent_id] = AgentStatus(agent_id=agent_id, state=state, since=self.clock())

    def agent_configs(self) -> list[AgentConfig]:
        return list(self.configs)

    def status(self, agent_id: str) -> AgentStatus:
        return self.agents[agent_id]

    def entry_of(self, call_id: str) -> Entry | None:
        return self.entries.get(call_id)

    def serves(self, queue: str) -> bool:
        self.serves_asked += 1
        return self.serving

    def withdraw(self, call_id: str) -> bool:
        entry = self.entries.get(call_id)
        if entry is None or entry.phase not in (Phase.WAITING, Phase.RINGING):
            return False
        self.withdrawn.append(call_id)
        del self.entries[call_id]
        return True

    def connect(self, call_id: str, agent_id: str) -> None:
        entry = self.entries[call_id]
        entry.phase = Phase.CONNECTED
        entry.answered_at = self.clock()
        entry.agent_id = agent_id

    async def enter(
        self,
        call_id: str,
        *,
        queue: str | None = None,
        tags: Iterable[str] = (),
        intent: str | None = None,
        features: Sequence[float] | None = None,
        customer: Mapping[str, str] | None = None,
        priority: int | None = None,
        only_agent: str | None = None,
    ) -> Entry:
        self.only_agent[call_id] = only_agent
        entry = Entry(
            entry_id=f"e-{call_id}",
            call_id=call_id,
            leg=call_id,
            switch="asterisk-1",
            queue=queue or "sales",
            priority=priority or 5,
            entered_at=self.clock(),
            customer=dict(customer or {}),
        )
        self.entries[call_id] = entry
        return entry


class FakeLeases:
    def __init__(self) -> None:
        self.token = 0
        self.held = True

    async def acquire(self, name: str) -> int | None:
        self.token += 1
        return self.token

    async def renew(self, name: str, token: int) -> bool:
        return self.held

    async def release(self, name: str, token: int) -> None:
        return None

    async def refence(self, name: str, token: int, floor: int) -> None:
        self.token = max(self.token, floor)

    def valid(self, name: str) -> bool:
        return self.held


class ListSink:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put(self, payload: dict[str, Any]) -> None:
        self.items.append(payload)

    def kinds(self, key: str = "kind") -> list[str]:
        return [str(i.get(key)) for i in self.items]


class NoChannels:
    def __init__(self, channels: set[str] | None) -> None:
        self.channels = channels

    async def live_channels(self) -> set[str] | None:
        return self.channels


@dataclass
class Rig:
    pool: asyncpg.Pool
    store: CampaignStore
    clock: Clock
    calls: FakeCalls
    acd: FakeAcd
    records: ListSink
    events: ListSink
    deps: RunnerDeps
    campaign_id: str

    async def flush(self) -> None:
        """Deliver the runner's records to PostgreSQL, as the outbox lane would."""
        records = [Record(i + 1, 0.0, dict(p)) for i, p in enumerate(self.records.items)]
        self.records.items.clear()
        if records:
            await AttemptRepository(self.pool).write(records)

    async def contacts(self) -> dict[str, dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM contacts WHERE campaign_id = $1", self.campaign_id
        )
        return {r["phone"]: dict(r) for r in rows}

    async def attempts(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM campaign_attempts WHERE campaign_id = $1 ORDER BY created_at",
            self.campaign_id,
        )
        return [dict(r) for r in rows]

    def runner(self, spec: CampaignSpec) -> CampaignRunner:
        runner = CampaignRunner(self.campaign_id, spec, self.deps)
        self.calls.watch(runner.on_call)
        return runner


async def make_rig(
    pool: asyncpg.Pool,
    campaign_id: str,
    spec: CampaignSpec,
    contacts: Sequence[tuple[str, str]],
    *,
    now: datetime,
    channels: set[str] | None = None,
) -> Rig:
    """A running campaign row with ``contacts`` ((E.164, tz) pairs) and fakes around it."""
    from engine.campaigns.hopper import Hopper

    await pool.execute(
        "INSERT INTO campaigns (campaign_id, spec, state) VALUES ($1, $2::jsonb, 'running')",
        campaign_id,
        spec.model_dump_json(),
    )
    await pool.executemany(
        "INSERT INTO contacts (campaign_id, phone, tz, fields) VALUES ($1, $2, $3, $4::jsonb)",
        [(campaign_id, phone, tz, json.dumps({"name": f"n{phone}"})) for phone, tz in contacts],
    )
    clock = Clock(now.timestamp())
    store = CampaignStore(pool)
    calls, acd = FakeCalls(clock), FakeAcd(clock)
    records, events = ListSink(), ListSink()
    deps = RunnerDeps(
        store=store,
        hopper=Hopper(pool),
        calls=calls,
        acd=acd,
        switches=NoChannels(channels),
        leases=FakeLeases(),
        records=records,
        events=events,
        translate=lambda group, phone: phone.lstrip("+"),
        amd_then=Amd,  # as engine/wiring/campaigns.py: the campaign's AMD parameters ride on it
        safe_harbour=lambda switch: DialplanTarget("engine-safe-harbour", "s", 1),
        clock=clock,
    )
    return Rig(pool, store, clock, calls, acd, records, events, deps, campaign_id)
