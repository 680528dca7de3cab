"""Fakes for the ACD service's unit tests: a switch that records what it is told,
a calls port that places legs on it, and collecting sinks. The test plays the
switch's side by feeding normalized events to ``AcdService.handle``."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.acd.history import AcdHistory
from engine.acd.live_store import LiveSnapshot
from engine.acd.model import QueueSpec
from engine.acd.reservations import Reservation
from engine.acd.service import AcdService, AcdSettings
from engine.agents.model import AgentConfig
from engine.calls.commands import OriginateCommand
from engine.calls.errors import CallNotFound
from engine.calls.model import Call, CallState
from engine.core.errors import PbxUnavailable
from engine.pbx.base import (
    Answered,
    HungUp,
    LinkState,
    LiveChannel,
    PbxEvent,
    SpyMode,
    SpyRequest,
    Then,
    TrunkReachability,
)


@dataclass
class FakeSwitch:
    name: str = "sw"
    kind: str = "asterisk"
    state: LinkState = LinkState.UP
    actions: list[tuple[str, ...]] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    fail_bridge: bool = False

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def events(self) -> AsyncIterator[PbxEvent]:  # pragma: no cover - unused
        await asyncio.Event().wait()
        yield Answered(switch=self.name, call_id="", ts=0.0)

    def check_up(self, what: str) -> None:
        """Like the real drivers: nothing is sent while the link is not up (e.g. syncing)."""
        if self.state is not LinkState.UP:
            raise PbxUnavailable(f"link {self.state.value}; {what} was not sent")

    async def moh_start(self, call_id: str, moh_class: str = "default") -> None:
        self.check_up("moh_start")
        self.actions.append(("moh_start", call_id, moh_class))

    async def moh_stop(self, call_id: str) -> None:
        self.actions.append(("moh_stop", call_id))

    async def bridge(self, call_id: str, other_call_id: str, *, keep_call: bool = False) -> None:
        self.actions.append(("bridge", call_id, other_call_id, str(keep_call)))
        if self.fail_bridge:
            raise PbxUnavailable("link down")

    async def redirect(self, call_id: str, target: Then) -> None:
        self.actions.append(("redirect", call_id, repr(target)))

    async def hangup(self, call_id: str, cause: int = 16) -> None:
        self.check_up("hangup")
        self.actions.append(("hangup", call_id))

    async def live_calls(self) -> list[LiveChannel]:
        return [LiveChannel(c, c, "answered") for c in sorted(self.live)]

    async def spy(self, request: SpyRequest) -> None:
        self.check_up("spy")
        self.actions.append(
            ("spy", request.call_id, request.target.name, request.spied_call_id, request.mode)
        )
        self.live.add(request.call_id)  # the supervisor's leg is a channel on the switch

    async def spy_mode(self, call_id: str, mode: SpyMode) -> None:
        self.actions.append(("spy_mode", call_id, mode))

    async def trunk_status(self) -> Mapping[str, TrunkReachability]:
        return {}

    def of(self, kind: str) -> list[tuple[str, ...]]:
        return [a for a in self.actions if a[0] == kind]


@dataclass
class FakeCalls:
    """The calls port: callers the test creates, agent legs the service places."""

    switch: FakeSwitch
    calls: dict[str, Call] = field(default_factory=dict)
    originates: list[tuple[str, OriginateCommand]] = field(default_factory=list)
    hangups: list[str] = field(default_factory=list)
    refuse: bool = False
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def caller(self, call_id: str, state: CallState = CallState.ANSWERED) -> str:
        self.calls[call_id] = Call(call_id, self.switch.name, state, "0100", {}, 0.0)
        self.switch.live.add(call_id)
        return call_id

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]:
        if self.refuse:
            raise PbxUnavailable("switch away")
        self.switch.check_up("originate")
        call_id = f"leg-{next(self._ids)}"
        call = Call(call_id, self.switch.name, CallState.CREATED, cmd.to, {}, 0.0)
        self.calls[call_id] = call
        self.originates.append((call_id, cmd))
        self.switch.live.add(call_id)
        return call, True

    async def get(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise CallNotFound(f"no call {call_id}")
        return call

    async def hangup(self, call_id: str, cause: int = 16) -> Call:
        self.switch.check_up("hangup")
        self.hangups.append(call_id)
        return self.calls[call_id]

    def driver(self, name: str) -> FakeSwitch:
        return self.switch

    def leg_of(self, agent_endpoint: str, nth: int = -1) -> str:
        legs = [cid for cid, cmd in self.originates if cmd.endpoint == agent_endpoint]
        return legs[nth]


@dataclass
class Collect:
    items: list[dict[str, Any]] = field(default_factory=list)

    def put(self, payload: dict[str, Any]) -> None:
        self.items.append(payload)

    def of(self, kind: str, key: str = "type") -> list[dict[str, Any]]:
        return [i for i in self.items if i.get(key) == kind]


@dataclass
class CollectLive:
    writes: dict[tuple[str, str], Any] = field(default_factory=dict)

    def put(self, kind: str, ident: str, value: Any) -> None:
        self.writes[(kind, ident)] = value


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class SnapshotStore:
    """The ACD's Redis store as a restart reads it: a fixed snapshot, no reservations."""

    def __init__(self, snap: LiveSnapshot) -> None:
        self.snap = snap

    async def snapshot(self) -> LiveSnapshot:
        return self.snap

    async def reservations(self) -> list[Reservation]:
        return []


@dataclass
class Rig:
    acd: AcdService
    switch: FakeSwitch
    calls: FakeCalls
    events: Collect
    history: Collect
    live: CollectLive
    clock: Clock

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await self.acd.settle()
        for _ in range(5):
            await asyncio.sleep(0)

    def answered(self, leg: str) -> None:
        self.acd.handle(Answered(switch=self.switch.name, call_id=leg, ts=self.clock.t))

    def hung_up(self, leg: str, cause: int = 16) -> None:
        self.switch.live.discard(leg)
        self.acd.handle(HungUp(switch=self.switch.name, call_id=leg, ts=self.clock.t, cause=cause))

    def states(self) -> dict[str, str]:
        return {a: self.acd.status(a).state.value for a in self.acd.agent_ids()}


def agent(
    agent_id: str, skills: Mapping[str, int], *, max_no_answer: int = 3, endpoint: str = ""
) -> AgentConfig:
    return AgentConfig(
        id=agent_id,
        name=agent_id,
        endpoints={"sw": endpoint or f"PJSIP/{agent_id}"},
        skills=dict(skills),
        max_no_answer=max_no_answer,
    )


def rig(
    agents: list[AgentConfig],
    queues: list[QueueSpec],
    *,
    intents: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    owns_queue: Callable[[str], bool] = lambda queue: True,
    settings: AcdSettings | None = None,
) -> Rig:
    switch = FakeSwitch()
    calls = FakeCalls(switch)
    events, history, live = Collect(), Collect(), CollectLive()
    clock = clock or Clock()
    acd = AcdService(
        agents=agents,
        queues=queues,
        settings=settings or AcdSettings(intents=dict(intents or {})),
        calls=calls,
        drivers={"sw": switch},  # type: ignore[dict-item]
        events=events,
        history=AcdHistory(history),
        mirror=live,
        now=clock,
        owns_queue=owns_queue,
    )
    return Rig(acd, switch, calls, events, history, live, clock)
