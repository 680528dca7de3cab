"""What the IVR needs of a queueing service (the ACD) for its ``queue`` step.

The IVR does not import the ACD: the engine (engine/wiring/ivr.py) gives the runtime
an object with this interface (``engine.acd.ivr_entry.IvrQueueEntry``), and
the flow loader gets its :class:`QueueCatalog` to check, when a flow loads,
that every queue and intent a ``queue`` step names exists.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class QueueCatalog:
    """The configured queues and ``[acd] intents`` (intent -> queue)."""

    queues: frozenset[str] = frozenset()
    intents: Mapping[str, str] = field(default_factory=dict)
    # Lengths of the agents' capability vectors; a step's features must have one of them.
    feature_sizes: Collection[int] = frozenset()


@dataclass(frozen=True, slots=True)
class QueueRequest:
    leg: str  # the session's channel id (agi_uniqueid / the outbound socket's uuid)
    flow: str
    queue: str | None
    intent: str | None
    tags: tuple[str, ...] = ()
    priority: int | None = None
    features: tuple[float, ...] | None = None
    customer: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueTicket:
    call_id: str
    entry_id: str
    queue: str


class QueueRefused(Exception):
    """The call was not queued and nothing was done to it: the flow goes on."""


class QueueHandoffFailed(Exception):
    """The channel had left the IVR (parked) but the ACD did not take it: the call
    was hung up rather than left parked with no one in charge of it."""


class QueueEntry(Protocol):
    def catalog(self) -> QueueCatalog: ...

    async def enter(self, request: QueueRequest) -> QueueTicket:
        """Take the channel away from the IVR session and queue it.

        Returns once the channel no longer depends on the session (parked on its
        switch): the session may then end without hanging up. Raises
        :class:`QueueRefused` or :class:`QueueHandoffFailed`."""
        ...
