"""What a campaign runner needs of the rest of the engine (the real services satisfy these;
tests give fakes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from engine.acd.entries import Entry
from engine.agents.model import AgentConfig, AgentStatus
from engine.calls.commands import OriginateCommand
from engine.calls.model import Call
from engine.pbx.base import Then


class CallsPort(Protocol):
    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]: ...

    async def hangup(self, call_id: str, cause: int = 16) -> Call: ...

    async def redirect(self, call_id: str, then: Then) -> Call: ...

    async def get(self, call_id: str) -> Call: ...

    def tracked(self) -> list[Call]: ...

    def is_tracked(self, call_id: str) -> bool:
        """Whether this engine follows ``call_id`` (memory only: its switch is ours)."""
        ...

    def watch(self, observer: Callable[[Call, Call], None]) -> None: ...

    async def adopt_inbound(self, leg: str) -> Call | None: ...


class SwitchPort(Protocol):
    """The switches' own view of live channels (crash recovery)."""

    async def live_channels(self) -> set[str] | None:
        """Every live channel id on every switch, or None if a switch could not be asked."""
        ...


class AcdPort(Protocol):
    @property
    def queues(self) -> Mapping[str, Any]: ...

    def agent_configs(self) -> list[AgentConfig]: ...

    def status(self, agent_id: str) -> AgentStatus: ...

    def entry_of(self, call_id: str) -> Entry | None: ...

    def serves(self, queue: str) -> bool: ...

    def withdraw(self, call_id: str) -> bool: ...

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
    ) -> Entry: ...


class Picked(Protocol):
    @property
    def contact_id(self) -> int: ...

    @property
    def phone(self) -> str: ...

    @property
    def callback_agent(self) -> str | None: ...


class HopperPort(Protocol):
    """engine/campaigns/hopper.py ``Hopper``."""

    async def distinct_timezones(self, campaign_id: str, *, refresh: bool = False) -> list[str]: ...

    async def pick(
        self,
        campaign_id: str,
        *,
        limit: int,
        now: datetime,
        open_tzs: Sequence[str],
        max_attempts: int,
        max_per_day: int,
    ) -> Sequence[Picked]:
        """The contacts to dial next, best first (nothing claimed)."""
        ...


class LeasePort(Protocol):
    async def acquire(self, name: str) -> int | None: ...

    async def renew(self, name: str, token: int) -> bool: ...

    async def release(self, name: str, token: int) -> None: ...

    async def refence(self, name: str, token: int, floor: int) -> None:
        """A store holds ``floor`` > ``token``: raise the lease's token counter to at least
        ``floor`` and drop our hold with ``token`` (``Leases.refence``)."""
        ...

    def valid(self, name: str) -> bool:
        """Whether the lease may still be acted on, by local state only (its deadline)."""
        ...


class Sink(Protocol):
    def put(self, payload: dict[str, Any]) -> None: ...
