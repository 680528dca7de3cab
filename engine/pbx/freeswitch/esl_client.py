"""asyncio client for FreeSWITCH's inbound event socket.

One long-lived connection carries commands and events. The codec
(:mod:`.esl_codec`) does the bytes; this module does the I/O and the rules:

* Replies carry no id. FreeSWITCH handles one command at a time per socket
  and answers in order, so ``api`` and other commands are correlated first
  in, first out through one queue of pending futures.
* ``bgapi`` jobs carry a Job-UUID we choose; the job's future is registered
  before the command is written, so a BACKGROUND_JOB that races its own
  command/reply still finds it.
* Every command has a timeout, counted in time the engine was running (a stalled
  loop does not time out a reply that came meanwhile: :mod:`engine.core.running_time`).
  A timed-out slot stays in the FIFO (marked abandoned) so a late reply is
  swallowed by it instead of being handed to the next command.
* A watchdog expects HEARTBEAT events (FreeSWITCH sends one every 20 s by
  default); silence longer than ``heartbeat_timeout`` of running time drops the link.
* Lost link: every pending future fails with :class:`OutcomeUnknown`, then we
  reconnect with capped exponential backoff, authenticate, re-subscribe and
  run the ``on_connected`` hook (the driver's live-call resync) in state
  SYNCING before going UP. Wrong password: state REJECTED, no retry.
* A failed resync (timeout, ``-ERR``, a link drop, any exception of the hook)
  drops the connection and reconnects with the same capped backoff: the link
  never goes UP on a view of live calls it could not rebuild.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.core.clock import monotonic
from engine.core.errors import (
    ActionFailed,
    ActionTimeout,
    OutcomeUnknown,
    PbxUnavailable,
    ProtocolError,
)
from engine.core.lifecycle import AsyncResource
from engine.core.running_time import result_within
from engine.pbx.base import LinkState
from engine.pbx.freeswitch import esl_codec as codec

log = logging.getLogger(__name__)

DEFAULT_EVENTS: tuple[str, ...] = (
    "CHANNEL_CREATE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_PARK",
    "CHANNEL_EXECUTE_COMPLETE",
    "DTMF",
    "BACKGROUND_JOB",
    "RECORD_START",
    "RECORD_STOP",
    "PLAYBACK_START",
    "PLAYBACK_STOP",
    "HEARTBEAT",
    "CUSTOM",
    "sofia::gateway_state",
    "sofia::register",
)


class AuthRejected(PbxUnavailable):
    """FreeSWITCH refused the password (or rejected us by ACL)."""


class ResyncFailed(PbxUnavailable):
    """The post-(re)connect resync hook failed; the connection is dropped and retried."""


@dataclass(frozen=True, slots=True)
class BackgroundJob:
    """Outcome of a ``bgapi`` command: the BACKGROUND_JOB body (``+OK ...`` / ``-ERR ...``)."""

    job_uuid: str
    body: str
    event: codec.EslEvent

    @property
    def ok(self) -> bool:
        return self.body.startswith("+OK")


@dataclass(slots=True)
class _Pending:
    what: str  # the command line, for error messages
    expect: type[codec.CommandReply] | type[codec.ApiResponse]
    future: asyncio.Future[codec.CommandReply | codec.ApiResponse]
    abandoned: bool = False


EventCallback = Callable[[codec.EslEvent], None]
StateCallback = Callable[[LinkState, str], None]
ConnectedHook = Callable[["EslClient"], Coroutine[Any, Any, None]]


class EslClient(AsyncResource):
    """Inbound ESL connection with reconnect. Use ``await start()`` / ``await stop()``
    or ``async with``."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        events: Sequence[str] = DEFAULT_EVENTS,
        event_format: Literal["plain", "json"] = "plain",
        command_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        heartbeat_timeout: float = 45.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_event: EventCallback | None = None,
        on_state: StateCallback | None = None,
        on_connected: ConnectedHook | None = None,
        name: str = "freeswitch",
    ) -> None:
        self.name = name
        # Every log line of this client names its switch as a field (stdlib ``extra``).
        self._log_extra = {"switch": name}
        self.host = host
        self.port = port
        self._password = password
        names = list(events)
        # BACKGROUND_JOB resolves bgapi futures and HEARTBEAT feeds the
        # watchdog: without them the client cannot work, so always ask.
        for required in ("BACKGROUND_JOB", "HEARTBEAT"):
            if required not in names and "ALL" not in names:
                names.append(required)
        self._events = names
        self._format: Literal["plain", "json"] = event_format
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._on_event = on_event
        self._on_state = on_state
        self._on_connected = on_connected

        self._state = LinkState.STOPPED
        self._state_reason = ""
        self._state_changed = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._fifo: collections.deque[_Pending] = collections.deque()
        self._jobs: dict[str, asyncio.Future[BackgroundJob]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._last_rx = 0.0
        #: Number of successful connections (authenticated + subscribed).
        self.connections = 0
        #: Connection attempts, failed or not (tests check there is no retry storm).
        self.attempts = 0

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def state_reason(self) -> str:
        return self._state_reason

    def _set_state(self, state: LinkState, reason: str = "") -> None:
        if state == self._state and reason == self._state_reason:
            return
        self._state = state
        self._state_reason = reason
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        if self._on_state is not None:
            self._on_state(state, reason)

    async def wait_state(self, *states: LinkState, timeout_s: float | None = None) -> LinkState:
        """Wait until the link is in one of ``states``; returns it."""

        async def _wait() -> LinkState:
            while self._state not in states:
                await self._state_changed.wait()
            return self._state

        return await asyncio.wait_for(_wait(), timeout_s)

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._set_state(LinkState.CONNECTING)
        self._runner = asyncio.create_task(self._run(), name=f"esl-{self.host}:{self.port}")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await self._close("client stopped")
        self._set_state(LinkState.STOPPED, "stopped")

    def drop(self, reason: str = "dropped by caller") -> None:
        """Close the current connection as if the network failed (reconnect follows)."""
        if self._writer is not None:
            self._writer.transport.abort()

    async def _run(self) -> None:
        failures = 0
        while True:
            self.attempts += 1
            try:
                await self._session()
                reason = "connection closed by FreeSWITCH"
            except AuthRejected as err:
                # Retrying a wrong password only fills FreeSWITCH's log (and may
                # trip fail2ban on the switch); wait for reconfiguration.
                log.error(
                    "FreeSWITCH %s:%s rejected us: %s",
                    self.host,
                    self.port,
                    err,
                    extra=self._log_extra,
                )
                await self._close(str(err))
                self._set_state(LinkState.REJECTED, str(err))
                return
            except (OSError, ProtocolError, TimeoutError, EOFError) as err:
                reason = f"{type(err).__name__}: {err}"
            except ResyncFailed as err:
                reason = str(err)
            except Exception as err:
                # Anything else (a bug, an ActionFailed from a hook...) must not
                # end the connection manager: the link would stay SYNCING/UP
                # forever with nobody reconnecting. Log it and retry.
                log.exception(
                    "ESL session to %s:%s failed", self.host, self.port, extra=self._log_extra
                )
                reason = f"{type(err).__name__}: {err}"
            if self._state == LinkState.UP:
                failures = 0
            await self._close(reason)
            delay = min(self.backoff_max, self.backoff_initial * (2**failures))
            failures += 1
            self._set_state(LinkState.DOWN, f"{reason}; retrying in {delay:.1f}s")
            await asyncio.sleep(delay)
            self._set_state(LinkState.CONNECTING)

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.connect_timeout
        )
        self._writer = writer
        parser = codec.EslParser()
        self._last_rx = monotonic()
        pending_msgs: collections.deque[codec.EslMessage] = collections.deque()

        async def next_msg() -> codec.EslMessage:
            while not pending_msgs:
                data = await asyncio.wait_for(reader.read(65536), self.connect_timeout)
                if not data:
                    raise EOFError("connection closed during login")
                pending_msgs.extend(parser.feed(data))
            return pending_msgs.popleft()

        # Login is a strict exchange, done before the read loop starts.
        first = await next_msg()
        if isinstance(first, codec.RudeRejection):
            raise AuthRejected(f"rejected by the switch's ACL: {first.body.strip()}")
        if not isinstance(first, codec.AuthRequest):
            raise ProtocolError(f"expected auth/request first, got {type(first).__name__}")
        writer.write(codec.encode_auth(self._password))
        reply = await next_msg()
        if not isinstance(reply, codec.CommandReply):
            raise ProtocolError(f"expected command/reply to auth, got {type(reply).__name__}")
        if not reply.ok:
            raise AuthRejected(f"auth refused: {reply.reply_text} (check the ESL password)")
        writer.write(codec.encode_event_subscription(self._format, self._events))
        while True:
            reply = await next_msg()
            if isinstance(reply, codec.CommandReply):
                break
            # Nothing but the reply is expected here, but tolerate an early event.
            if isinstance(reply, codec.EslEvent):
                self._dispatch_event(reply)
        if not reply.ok:
            raise ProtocolError(f"event subscription refused: {reply.reply_text}")
        self.connections += 1
        self._set_state(LinkState.SYNCING, "resyncing live calls")
        reader_task = asyncio.create_task(self._read_loop(reader, parser, list(pending_msgs)))
        watchdog = asyncio.create_task(self._watchdog())
        try:
            if self._on_connected is not None:
                sync: asyncio.Task[None] = asyncio.create_task(self._on_connected(self))
                done, _ = await asyncio.wait(
                    {sync, reader_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if sync not in done:
                    sync.cancel()
                    with contextlib.suppress(BaseException):
                        await sync
                elif (sync_err := sync.exception()) is not None:
                    # Whatever the resync failed with (ActionTimeout is an
                    # OutcomeUnknown, not a TimeoutError; a "-ERR" reply is an
                    # ActionFailed), the view of live calls is not rebuilt, so
                    # the link must not go UP: drop it and reconnect with backoff.
                    raise ResyncFailed(
                        f"resync failed: {type(sync_err).__name__}: {sync_err}"
                    ) from sync_err
            if not reader_task.done():
                self._set_state(LinkState.UP)
            await asyncio.wait({reader_task, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            if reader_task.done():
                reader_task.result()
            else:
                watchdog.result()
        finally:
            for task in (reader_task, watchdog):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _read_loop(
        self,
        reader: asyncio.StreamReader,
        parser: codec.EslParser,
        backlog: list[codec.EslMessage],
    ) -> None:
        for msg in backlog:
            self._dispatch(msg)
        while True:
            data = await reader.read(65536)
            if not data:
                raise EOFError("connection closed by FreeSWITCH")
            self._last_rx = monotonic()
            for msg in parser.feed(data):
                self._dispatch(msg)

    async def _watchdog(self) -> None:
        # Silence is counted in time the loop was running (engine/core/running_time.py):
        # after a stall longer than the limit, this wakes before the beats waiting in the
        # socket are read (a stall in an I/O callback under uvloop, or a wake queued with
        # the stall) and dropped a healthy link, failing every command in flight. A turn
        # counts at most ``step`` (its overrun is a stall, nothing could be read), so a
        # silent switch is still dropped after at most ``heartbeat_timeout / step + 1``
        # turns, stalls or not.
        step = max(self.heartbeat_timeout / 4, 0.01)
        last = self._last_rx
        silent = 0.0  # running time since the last byte
        while True:
            before = monotonic()
            await asyncio.sleep(step)
            now = monotonic()
            if self._last_rx != last:
                # Data came during this turn: at most (now - last) of running time since.
                last = self._last_rx
                silent = min(now - last, step)
            else:
                silent += min(now - before, step)
            if silent > self.heartbeat_timeout:
                raise TimeoutError(
                    f"no data (HEARTBEAT) from FreeSWITCH for {silent:.1f}s of running time "
                    f"(limit {self.heartbeat_timeout}s)"
                )

    async def _close(self, reason: str) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()
        err_reason = f"ESL connection lost ({reason}); the command may or may not have run"
        while self._fifo:
            pending = self._fifo.popleft()
            if not pending.future.done():
                pending.future.set_exception(OutcomeUnknown(f"{pending.what}: {err_reason}"))
        jobs, self._jobs = self._jobs, {}
        for job_uuid, fut in jobs.items():
            if not fut.done():
                fut.set_exception(OutcomeUnknown(f"bgapi job {job_uuid}: {err_reason}"))

    # --------------------------------------------------------------- dispatch

    def _dispatch(self, msg: codec.EslMessage) -> None:
        if isinstance(msg, codec.EslEvent):
            self._dispatch_event(msg)
        elif isinstance(msg, codec.CommandReply | codec.ApiResponse):
            self._dispatch_reply(msg)
        elif isinstance(msg, codec.DisconnectNotice):
            log.warning("FreeSWITCH disconnect notice: %s", msg.body.strip(), extra=self._log_extra)
        elif isinstance(msg, codec.RudeRejection):
            raise AuthRejected(f"rejected by the switch's ACL: {msg.body.strip()}")
        else:
            raise ProtocolError(f"unexpected {type(msg).__name__} after login")

    def _dispatch_reply(self, msg: codec.CommandReply | codec.ApiResponse) -> None:
        if not self._fifo:
            raise ProtocolError(f"reply with no command waiting: {msg!r}"[:200])
        pending = self._fifo.popleft()
        if pending.abandoned or pending.future.done():
            log.warning(
                "late reply to %r after its timeout, discarded", pending.what, extra=self._log_extra
            )
            return
        if not isinstance(msg, pending.expect):
            pending.future.set_exception(
                ActionFailed(
                    f"{pending.what}: expected {pending.expect.__name__}, got {type(msg).__name__}"
                )
            )
            return
        pending.future.set_result(msg)

    def _dispatch_event(self, event: codec.EslEvent) -> None:
        self._last_rx = monotonic()
        if event.name == "BACKGROUND_JOB":
            job_uuid = event.get("Job-UUID")
            fut = self._jobs.pop(job_uuid, None)
            if fut is not None and not fut.done():
                fut.set_result(BackgroundJob(job_uuid=job_uuid, body=event.body, event=event))
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a consumer bug must not kill the link
                log.exception("ESL event callback failed on %s", event.name, extra=self._log_extra)

    # --------------------------------------------------------------- commands

    async def _send(
        self,
        data: bytes,
        what: str,
        expect: type[codec.CommandReply] | type[codec.ApiResponse],
        *,
        timeout_s: float | None,
        allow_syncing: bool,
    ) -> codec.CommandReply | codec.ApiResponse:
        allowed = (LinkState.UP, LinkState.SYNCING) if allow_syncing else (LinkState.UP,)
        writer = self._writer
        if self._state not in allowed or writer is None:
            raise PbxUnavailable(
                f"FreeSWITCH {self.host}:{self.port} link is {self._state.value}; {what} not sent"
            )
        loop = asyncio.get_running_loop()
        pending = _Pending(what=what, expect=expect, future=loop.create_future())
        # Enqueue and write with no await in between: FIFO order on the wire
        # and in the queue is then the same by construction.
        self._fifo.append(pending)
        writer.write(data)
        try:
            # Counted in running time (engine/core/running_time.py): wait_for counted a
            # stall, and its timer beat the reply that was already in the socket (the shield
            # put one more callback between them). The future is not cancelled on a timeout:
            # the abandoned slot must still swallow the late reply.
            deadline = loop.time() + (timeout_s or self.command_timeout)
            return await result_within(pending.future, deadline)
        except TimeoutError as err:
            pending.abandoned = True
            raise ActionTimeout(
                f"{what}: no reply from FreeSWITCH within {timeout_s or self.command_timeout}s"
            ) from err

    async def api(
        self, command: str, *, timeout_s: float | None = None, allow_syncing: bool = False
    ) -> str:
        """Run ``api <command>`` and return its text (``-ERR`` included; callers judge)."""
        reply = await self._send(
            codec.encode_api(command),
            f"api {command}",
            codec.ApiResponse,
            timeout_s=timeout_s,
            allow_syncing=allow_syncing,
        )
        assert isinstance(reply, codec.ApiResponse)
        return reply.body

    async def command(
        self,
        data: bytes,
        *,
        what: str = "",
        timeout_s: float | None = None,
        allow_syncing: bool = False,
    ) -> codec.CommandReply:
        """Send an encoded non-api command (``sendmsg``, ``filter``...) and return its reply."""
        reply = await self._send(
            data,
            what or data.split(b"\n", 1)[0].decode(),
            codec.CommandReply,
            timeout_s=timeout_s,
            allow_syncing=allow_syncing,
        )
        assert isinstance(reply, codec.CommandReply)
        return reply

    async def bgapi(
        self,
        command: str,
        *,
        job_uuid: str | None = None,
        timeout_s: float | None = None,
    ) -> tuple[str, asyncio.Future[BackgroundJob]]:
        """Start ``bgapi <command>``; return (job_uuid, future of its BACKGROUND_JOB).

        Returns once FreeSWITCH accepted the job. Raises ActionFailed if it
        refused it. The future fails with OutcomeUnknown if the link drops
        before the job reports.
        """
        job = job_uuid or str(uuid.uuid4())
        if job in self._jobs:
            raise ActionFailed(f"Job-UUID {job} is already in use")
        fut: asyncio.Future[BackgroundJob] = asyncio.get_running_loop().create_future()
        # Registered BEFORE the write: the job can finish (GATEWAY_DOWN does,
        # at once) before we have even read the command/reply.
        self._jobs[job] = fut
        try:
            reply = await self._send(
                codec.encode_bgapi(command, job),
                f"bgapi {command}",
                codec.CommandReply,
                timeout_s=timeout_s,
                allow_syncing=False,
            )
        except BaseException:
            if self._jobs.get(job) is fut:
                del self._jobs[job]
            raise
        assert isinstance(reply, codec.CommandReply)
        if not reply.ok:
            self._jobs.pop(job, None)
            raise ActionFailed(f"bgapi {command}: {reply.reply_text}", response=dict(reply.headers))
        return job, fut
