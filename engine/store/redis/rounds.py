"""One Redis pipeline per round, shared by every background writer.

Why: on this kind of host the engine's CPU per call goes mostly to round
trips (a socket send, a wakeup, a read and redis-py's bookkeeping for each),
not to the commands themselves (docs/bench-cpu.md). The event lane, the
registry mirror and the trunk counters each made their own round trips;
through :class:`RedisRounds` the commands they issue close together share one
pipeline (one send, one read).

How a round is started:

- ``urgent`` commands (a trunk channel asked for by an originate waiting on
  it) go out at once, and carry along whatever else is queued;
- other commands go out at once if no round began within ``interval_s``,
  else when the interval is over (a lone command is never held back on a
  quiet engine; under load there is at most one timed round per interval).

Each submitter gets its own replies, with a Redis error reply returned as an
exception value in the list (``raise_on_error=False``): one writer's error
reply is not another's failure. A failure of the round itself (connection
lost, timeout) is raised to every submitter of that round. Submitters keep
their own ordering (each awaits its round before it submits again), so
rounds may overlap: an urgent round never waits for a timed one in flight.

The pipeline is not a transaction: no writer here needs atomicity across
writers. A Lua script (the event publish, the trunk scripts) is atomic by
itself, and the registry's writes are ordered so a reader never sees a live
id without its hash (docs/architecture.md "Durability").

A submitter whose wait was cancelled before its round began is dropped from
the round. Once sent, commands may have run even if the reply is lost: the
same at-least-once contract as a direct command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript

from engine.core import clock
from engine.store.redis.errors import REDIS_ERRORS, translate

Command = tuple[Any, ...]


class _Entry:
    __slots__ = ("commands", "future", "urgent")

    def __init__(
        self, commands: Sequence[Command], future: asyncio.Future[list[Any]], urgent: bool
    ) -> None:
        self.commands = commands
        self.future = future
        self.urgent = urgent


class RedisRounds:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        interval_s: float = 0.1,
        timeout_s: float = 2.0,
    ) -> None:
        if interval_s < 0 or timeout_s <= 0:
            raise ValueError("interval_s: expected >= 0, timeout_s: expected > 0")
        self._r = redis
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._queue: list[_Entry] = []
        self._last_round = -float("inf")
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.rounds = 0  # for tests and the bench: pipelines sent

    async def execute(self, commands: Sequence[Command], *, urgent: bool = False) -> list[Any]:
        """Queue ``commands`` for a round; their replies, in order.

        Raises StoreUnavailable/StoreError when the round fails as a whole.
        An error reply of one command is returned in its place, not raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append(_Entry(commands, future, urgent))
        if urgent:
            self._start_round()
        elif self._timer is None:
            due = self._last_round + self.interval_s
            if clock.monotonic() >= due:
                self._start_round()
            else:
                self._timer = loop.call_at(
                    loop.time() + (due - clock.monotonic()), self._start_round
                )
        return await future

    async def load(self, script: AsyncScript) -> None:
        """Load ``script`` into Redis (after a NOSCRIPT reply)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._r.script_load(script.script)
        except REDIS_ERRORS as err:
            raise translate(err, "loading a script") from err

    def flush(self) -> None:
        """Send what is queued now (shutdown: do not wait out an interval)."""
        if self._queue:
            self._start_round()

    async def wait_sent(self) -> None:
        """Wait for the rounds in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _start_round(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Urgent writers first: their replies come back first and are handed
        # over before the rest of the round is read (see _round).
        batch = [e for e in self._queue if not e.future.done() and e.urgent]
        batch += [e for e in self._queue if not e.future.done() and not e.urgent]
        self._queue = []
        if not batch:
            return
        self._last_round = clock.monotonic()
        task = asyncio.get_running_loop().create_task(self._round(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, entries: list[_Entry]) -> None:
        """Write the entries' commands at once on one pooled connection, read
        every reply (an error reply as its exception) and hand each entry
        its replies. What redis-py's pipeline does, without its per-command
        bookkeeping (response callbacks, retry wrappers, the pipeline object
        itself), which was most of a round's CPU; the replies are the raw
        RESP values. The urgent entries (first in the round) get theirs as
        soon as they are read, and the loop runs once before the rest is
        read: an originate waiting on its trunk take does not wait for the
        round's whole batch to be parsed."""
        commands = [command for entry in entries for command in entry.commands]
        pool = self._r.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            for i, entry in enumerate(entries):
                replies: list[Any] = []
                for _ in entry.commands:
                    try:
                        replies.append(await conn.read_response())
                    except redis.exceptions.ResponseError as err:
                        replies.append(err)
                if not entry.future.done():
                    entry.future.set_result(replies)
                if entry.urgent and i + 1 < len(entries) and not entries[i + 1].urgent:
                    await asyncio.sleep(0)  # let the urgent writers go on first
        except BaseException:
            # Replies may be left unread on the socket: never reuse it.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def _round(self, batch: list[_Entry]) -> None:
        self.rounds += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    await self._send(batch)
                except redis.exceptions.ConnectionError:
                    # The client's own policy (engine/store/redis/client.py):
                    # once more on a connection error (a pooled connection a
                    # restarted Redis closed), never on a timeout; only the
                    # entries not answered yet.
                    await self._send([e for e in batch if not e.future.done()])
        except REDIS_ERRORS as err:
            failure = translate(err, f"sending a round of {len(batch)} writers")
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(failure)
            return
        except BaseException as err:  # cancelled, or a bug: no submitter waits forever
            for entry in batch:
                if entry.future.done():
                    continue
                if isinstance(err, asyncio.CancelledError):
                    entry.future.cancel()
                else:
                    entry.future.set_exception(err)
            raise


async def run_script(
    rounds: RedisRounds,
    script: AsyncScript,
    keys: Sequence[Any],
    args: Sequence[Any],
    *,
    urgent: bool = False,
    then: Sequence[Command] = (),
) -> Any:
    """``EVALSHA`` of a registered script through a round; its reply, or
    with ``then`` (commands sent right after it, in the same round, e.g.
    ``WAIT``) the list of the script's reply and theirs.

    A Redis that does not know the script (restarted, ``SCRIPT FLUSH``)
    answers NOSCRIPT without running it: the script is loaded and the call
    sent once more. Any other error reply is raised as it is."""
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    for attempt in (1, 2):
        reply, *more = await rounds.execute([command, *then], urgent=urgent)
        if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 1:
            await rounds.load(script)
            continue
        for value in (reply, *more):
            if isinstance(value, BaseException):
                raise value
        return [reply, *more] if then else reply
    raise AssertionError("unreachable")  # pragma: no cover
