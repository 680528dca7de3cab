"""One blocking reader of the event stream per engine, fanned out to subscribers.

A blocking ``XREAD`` holds a Redis connection for its whole wait. One per
WebSocket client would take a pool connection per client: a thousand idle
clients would starve the API of connections. So one task reads the stream
from its head and offers each event to every subscriber's bounded buffer.

A subscriber that cannot keep up does not make the engine buffer without
bound: once its buffer is full, newer events are dropped for it. The
subscriber sees the hole in the sequence numbers and refills it from the
stream's history (non-blocking reads), or, if the stream was trimmed past it,
tells its client with a ``gap`` notice. Every event carries a gapless seq, so
"a hole" is simply "the next seq is not last + 1".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from engine.store.errors import StoreError
from engine.store.redis.stream import EventStream
from engine.telemetry.logging import get_logger

log = get_logger("engine.store.redis.stream_fanout")


@dataclass(frozen=True)
class StreamReset:
    """The stream's head went below what was already read (Redis lost its data
    and nothing re-seeded the counter): sequence numbers up to ``head`` will be
    issued again and mean other events."""

    head: int


@dataclass(frozen=True)
class Overflowed:
    """Events were dropped from this buffer after everything it still held:
    the consumer must read them from the stream's history."""


Item = tuple[int, dict[str, Any]] | StreamReset | Overflowed


class Subscription:
    """A bounded buffer of stream items for one consumer."""

    def __init__(self, fanout: StreamFanout, maxsize: int) -> None:
        self._fanout = fanout
        # Every event after this seq will be offered to us (None: the reader
        # has not read the head yet, so no such promise).
        self.start = fanout.cursor
        self._items: deque[Item] = deque()
        self._maxsize = maxsize
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0
        self._overflowed = False

    def offer(self, item: Item) -> None:
        if self.closed:
            return
        if len(self._items) >= self._maxsize and not isinstance(item, StreamReset):
            # Drop the newest: the consumer finds the hole by seq and refills
            # it from the stream's history.
            self.dropped += 1
            self._fanout.dropped += 1
            if not self._overflowed:
                # Nothing newer will follow to reveal the hole if the stream
                # goes quiet now: report it once the buffer has drained.
                self._overflowed = True
                self._wake.set()
            return
        self._items.append(item)
        self._wake.set()

    def refill(self) -> None:
        """Tell the consumer to read from history what the buffer never held."""
        self._overflowed = True
        self._wake.set()

    async def get(self) -> Item | None:
        """The next item; None once closed."""
        while not self._items:
            if self.closed:
                return None
            if self._overflowed:
                self._overflowed = False
                return Overflowed()
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._wake.set()
        self._fanout.discard(self)


class StreamFanout:
    """Start with :meth:`start`, stop with :meth:`stop`; :meth:`subscribe` any time."""

    def __init__(
        self,
        stream: EventStream,
        *,
        block_ms: int = 1000,
        batch: int = 500,
        buffer: int = 1000,
        retry_max_s: float = 5.0,
    ) -> None:
        self.stream = stream
        self.block_ms = block_ms
        self.batch = batch
        self.buffer = buffer
        self.retry_max_s = retry_max_s
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wanted = asyncio.Event()  # set while anyone is subscribed
        self.cursor: int | None = None
        # Events dropped from full subscriber buffers, all subscribers, ever.
        self.dropped = 0

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self.buffer)
        self._subs.add(sub)
        self._wanted.set()
        return sub

    def discard(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        if not self._subs:
            self._wanted.clear()

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="event-stream-fanout")

    async def stop(self) -> None:
        self._stop.set()
        for sub in list(self._subs):
            sub.close()
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # redis-py may swallow a cancel that lands mid-command (see
        # docs/architecture.md); the loop also checks the stop flag after
        # every read, and a read blocks for block_ms at most.
        await asyncio.wait({task}, timeout=self.block_ms / 1000 + self.stream.command_timeout_s)
        if not task.done():
            log.warning("event stream reader did not stop in time")

    async def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                await self._step()
                delay = 0.1
            except asyncio.CancelledError:
                if self._stop.is_set():
                    return
                raise
            except StoreError as err:
                log.warning("event stream read failed; retrying", error=str(err), retry_s=delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
            except Exception:
                # One bad read must never end the loop that feeds every client.
                log.exception("event stream fan-out failed; retrying", retry_s=delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _step(self) -> None:
        if not self._subs:
            # Nobody listens: no blocking read, no idle head check (each a
            # Redis round trip). The cursor is forgotten, so the next
            # subscriber starts with no promise (``start`` None) and reads
            # what it missed from the stream's history.
            self.cursor = None
            stop = asyncio.ensure_future(self._stop.wait())
            wanted = asyncio.ensure_future(self._wanted.wait())
            try:
                await asyncio.wait({stop, wanted}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                wanted.cancel()
            return
        if self.cursor is None:
            self.cursor = await self.stream.last_seq()
            for sub in list(self._subs):
                if sub.start is None:
                    # It subscribed before we knew where the head was: what
                    # was published up to here comes from history.
                    sub.start = self.cursor
                    sub.refill()
        batch = await self.stream.read_after(self.cursor, count=self.batch, block_ms=self.block_ms)
        if self._stop.is_set():
            return
        if not batch:
            # XREAD after an id above every entry waits forever: notice a head
            # that went backwards (Redis data loss with no floor) on idle.
            head = await self.stream.last_seq()
            if head < self.cursor:
                log.warning("event stream head went back", head=head, cursor=self.cursor)
                self.cursor = head
                self._offer(StreamReset(head))
            return
        for seq, event in batch:
            self.stream.observe(seq)
            self._offer((seq, event))
            self.cursor = seq

    def _offer(self, item: Item) -> None:
        for sub in list(self._subs):
            sub.offer(item)
