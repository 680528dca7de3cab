"""The one backpressure policy for every driver's normalized event stream.

A driver's event callbacks are synchronous (they run inside the protocol
reader), so a producer cannot wait for a slow consumer without stalling the
link itself, heartbeats and command replies included. The policy is therefore:

* Each subscriber has its own :class:`EventQueue`, bounded by ``maxsize``.
* When it is full, a *sheddable* event (:data:`SHEDDABLE`) is dropped and
  counted (``shed`` per event type, plus the ``on_shed`` hook the composition
  root points at the Prometheus counter ``engine_pbx_events_shed``).
* Every other event is essential and is always queued, even above
  ``maxsize``: the queue grows for those only. Losing one would leave state
  wrong for good (a ``HungUp`` lost is a call that never ends and has no CDR;
  a lost ``LinkChanged``/``Resynced`` hides an outage; a lost ``TrunkStatus``
  keeps a dead trunk "up"), while their rate is bounded by the calls and
  trunks that exist, not by a chatty far end.

Sheddable, because losing one leaves no state wrong: ``Ringing`` (progress;
``Answered`` or ``HungUp`` follows and the call FSM accepts either from
dialing) and ``Dtmf`` (informational on the control link; an IVR collects its
digits on its own channel, FastAGI or the outbound socket). Everything else,
including event types added later, is essential unless listed here: a new
type is kept until someone decides it may be lost.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from collections.abc import AsyncIterator, Callable

from engine.pbx.base import Dtmf, PbxEvent, Ringing

log = logging.getLogger(__name__)

#: Event types dropped when a subscriber's queue is full (see the module docstring).
SHEDDABLE: frozenset[type[PbxEvent]] = frozenset({Ringing, Dtmf})

DEFAULT_MAXSIZE = 10_000

ShedHook = Callable[[PbxEvent], None]


def is_essential(event: PbxEvent) -> bool:
    """True when ``event`` must never be dropped."""
    return type(event) not in SHEDDABLE


class EventQueue:
    """One subscriber's bounded FIFO of events, with the shedding policy above."""

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE, *, name: str = "") -> None:
        if maxsize < 1:
            raise ValueError(f"event queue maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.name = name
        # Unbounded underneath: the bound is applied in put(), per event kind.
        self._queue: asyncio.Queue[PbxEvent] = asyncio.Queue()
        #: Events dropped, by event type name.
        self.shed: collections.Counter[str] = collections.Counter()
        #: Essential events queued while the queue was at or above maxsize.
        self.overflowed = 0

    def qsize(self) -> int:
        return self._queue.qsize()

    def put(self, event: PbxEvent) -> bool:
        """Queue ``event``; False when it was shed."""
        if self._queue.qsize() >= self.maxsize:
            if not is_essential(event):
                self.shed[event.type] += 1
                return False
            if self.overflowed == 0:
                log.warning(
                    "event queue %s is full (%d); queueing essential events above the bound",
                    self.name,
                    self.maxsize,
                )
            self.overflowed += 1
        self._queue.put_nowait(event)
        return True

    async def get(self) -> PbxEvent:
        return await self._queue.get()

    def get_nowait(self) -> PbxEvent:
        return self._queue.get_nowait()


class EventFanout:
    """Every subscriber sees every event, each through its own :class:`EventQueue`.

    With ``keep_backlog`` the first subscriber adopts a queue that existed from
    construction, so events emitted before anyone subscribed (the first
    ``LinkChanged``/``Resynced``/``TrunkStatus``) are not lost.
    """

    def __init__(
        self,
        name: str,
        maxsize: int = DEFAULT_MAXSIZE,
        *,
        keep_backlog: bool = False,
        on_shed: ShedHook | None = None,
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        #: Called once per shed event (the composition root increments a metric here).
        self.on_shed = on_shed
        #: Events shed on any subscriber, by type name (a subscriber that sheds
        #: the same event as another counts once more).
        self.shed: collections.Counter[str] = collections.Counter()
        self._queues: list[EventQueue] = []
        self._backlog: EventQueue | None = None
        if keep_backlog:
            self._backlog = EventQueue(maxsize, name=f"{name}/backlog")
            self._queues.append(self._backlog)

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def subscribe(self) -> AsyncIterator[PbxEvent]:
        """A new stream of every event from now on. Registered here, not at the first
        ``__anext__``, so nothing emitted in between is lost."""
        if self._backlog is not None:
            queue, self._backlog = self._backlog, None
        else:
            queue = EventQueue(self.maxsize, name=f"{self.name}/{len(self._queues)}")
            self._queues.append(queue)
        return _Stream(self, queue)

    def publish(self, event: PbxEvent) -> None:
        for queue in list(self._queues):
            if not queue.put(event):
                self.shed[event.type] += 1
                if self.on_shed is not None:
                    try:
                        self.on_shed(event)
                    except Exception:  # a metrics bug must not stop the event flow
                        log.exception("on_shed hook failed")

    def _remove(self, queue: EventQueue) -> None:
        if queue in self._queues:
            self._queues.remove(queue)


class _Stream:
    """Async iterator over one subscriber queue; ``aclose()`` unsubscribes."""

    def __init__(self, fanout: EventFanout, queue: EventQueue) -> None:
        self._fanout = fanout
        self._queue = queue
        # A subscriber dropped without aclose() must not keep a queue that grows
        # with every essential event for the life of the driver.
        weakref.finalize(self, fanout._remove, queue)

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> PbxEvent:
        if self._queue not in self._fanout._queues:
            raise StopAsyncIteration
        return await self._queue.get()

    async def aclose(self) -> None:
        self._fanout._remove(self._queue)
