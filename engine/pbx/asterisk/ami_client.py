"""asyncio AMI client: one supervised connection to one Asterisk.

Why not panoramisk's ``Manager``: a reply without an ``ActionID`` raises inside
``data_received`` and kills the connection; a refused password makes it
reconnect forever; it never checks that a ping was answered; and on reconnect it
re-sends actions whose reply was lost, which for ``Originate`` means a second
real phone call. This client does none of that:

* **Login failure is final.** ``Response: Error`` to ``Login`` puts the link in
  :attr:`LinkState.REJECTED` and the supervisor stops. Nothing reconnects until
  :meth:`AmiClient.start` is called again (e.g. after the config was fixed).
  One exception: credentials that already worked on this client are retried a
  few times at the capped backoff, because a restarting Asterisk refuses
  logins for a moment (see ``MAX_REJECTED_RETRIES``).
* **Nothing is ever re-sent.** An action written on a connection that then
  drops fails with :class:`LinkLost` (an :class:`OutcomeUnknown`: Asterisk may
  or may not have run it). An action asked for while the link is not UP fails
  with :class:`PbxUnavailable` and is not written at all.
* **Every action has a timeout** (:class:`ActionTimeout`, also OutcomeUnknown),
  counted in time the engine was running (a starved process does not time out a
  reply that came meanwhile: :mod:`engine.core.running_time`).
* **A ping watchdog** sends ``Ping`` every ``ping_interval_s``; no successful
  reply within ``ping_timeout_s`` closes the connection, which then reconnects
  (while Asterisk is still sending other bytes, up to two such pings in a row are
  forgiven: the Pong is queued behind its events).
  TCP keepalive alone would take minutes to notice a hung Asterisk.
* **Resync before work.** After each login the state is SYNCING and the resync
  hook runs (the driver's CoreShowChannels); only actions issued *by the hook*
  are allowed in that state. Then the state becomes UP.
* **Reconnect** with capped exponential backoff and jitter, so a fleet of
  engines does not hammer a restarting Asterisk in lockstep.
* **Event filters at the source.** With ``event_filters`` the client sends one
  ``Filter`` action per filter right after Login, before the resync, so
  Asterisk writes only the events the reader uses (most of a call's AMI
  traffic is Newexten/VarSet/Dial* nobody here reads). If Asterisk refuses
  one (e.g. a user without the ``system`` write permission), the session
  may hold only *some* of the filters, which would hide events the reader
  needs, and filters cannot be removed; so the connection is closed and
  every later session of this client logs in without filters.

The secret is sent in the Login action and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

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

from .ami_codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
    AmiParser,
    Banner,
    Event,
    EventFilter,
    Response,
    encode_action,
)

__all__ = [
    "AmiClient",
    "EventListener",
    "LinkLost",
    "ListResult",
    "ResyncHook",
    "StateListener",
]

log = logging.getLogger("engine.pbx.asterisk.ami")

# Login refusals tolerated (at the capped backoff) from credentials that worked
# before on this client, e.g. while Asterisk restarts. See _supervise.
MAX_REJECTED_RETRIES = 5
# Unanswered Pings in a row forgiven while Asterisk keeps sending (see _watchdog).
MAX_PINGS_UNANSWERED_WHILE_TALKING = 2


class LinkLost(OutcomeUnknown):
    """The action was written, then the connection closed before its reply.

    It is an :class:`OutcomeUnknown`, deliberately *not* a
    :class:`PbxUnavailable`: PbxUnavailable promises "nothing was sent", and a
    caller that trusts that promise may place the call again. After the
    reconnect the resync (CoreShowChannels) tells whether the call exists.
    """


@dataclass(frozen=True, slots=True)
class ListResult:
    """Reply of a list action: the Response, the items, the ``...Complete`` event."""

    response: Response
    events: tuple[Event, ...]
    complete: Event | None = None


ResyncHook = Callable[["AmiClient"], Awaitable[None]]
StateListener = Callable[[LinkState, str], None]
EventListener = Callable[[Event], None]

# True inside the task that runs the resync hook: those actions may be sent
# while the link is SYNCING. A context variable follows the hook into any
# coroutine it awaits without threading a flag through every call.
_IN_RESYNC: contextvars.ContextVar[bool] = contextvars.ContextVar("ami_in_resync", default=False)


@dataclass(slots=True)
class _Pending:
    action: str
    future: asyncio.Future[Response | ListResult]
    is_list: bool
    response: Response | None = None
    items: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class _Conn:
    """One TCP connection. Pending actions belong to it, so a late reply on a
    new connection can never resolve an action sent on an old one."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: AmiParser
    banner: asyncio.Future[Banner]
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str = ""
    pending: dict[str, _Pending] = field(default_factory=dict)
    # Loop time of the last bytes read from Asterisk (the ping watchdog's liveness sign).
    last_rx: float = 0.0


class _Rejected(Exception):
    pass


class AmiClient(AsyncResource):
    """Supervised AMI connection. Use as ``async with AmiClient(...) as ami:``
    or call :meth:`start` / :meth:`stop` (both idempotent)."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        name: str = "asterisk",
        action_timeout_s: float = 10.0,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float | None = None,
        connect_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        resync: ResyncHook | None = None,
        rng: random.Random | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        event_filters: Sequence[EventFilter] = (),
    ) -> None:
        self.name = name
        # Every log line of this client names its switch as a field (stdlib ``extra``).
        self._log_extra = {"switch": name}
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.action_timeout_s = action_timeout_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s if ping_timeout_s is not None else action_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._resync = resync
        self._rng = rng or random.Random()
        self._max_message_bytes = max_message_bytes
        self._event_filters = tuple(event_filters)
        #: False once Asterisk refused a Filter action (see the module docs).
        self.filters_enabled = bool(self._event_filters)

        self._state = LinkState.STOPPED
        self._reason = ""
        self._conn: _Conn | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ever_up = False  # logged in and reached UP at least once
        # A random per-client prefix keeps our ActionIDs unique across
        # reconnects and across engine instances sharing one Asterisk.
        self._id_prefix = f"eng-{secrets.token_hex(3)}"
        self._ids = itertools.count(1)
        self._state_listeners: list[StateListener] = []
        self._event_listeners: list[EventListener] = []
        self._subscribers: list[asyncio.Queue[Event]] = []
        self._state_waiters: list[tuple[frozenset[LinkState], asyncio.Future[LinkState]]] = []
        #: Number of TCP connect attempts so far (tests assert "no retry storm").
        self.connect_attempts = 0

    # ------------------------------------------------------------ public API

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def reason(self) -> str:
        """Why the link is in its current state (empty when UP)."""
        return self._reason

    def add_state_listener(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)

    def add_event_listener(self, listener: EventListener) -> None:
        """``listener(event)`` runs synchronously for every unsolicited Event."""
        self._event_listeners.append(listener)

    async def events(self) -> AsyncIterator[Event]:
        """Every unsolicited Event from now on (list items are not included)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    def new_action_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    async def start(self) -> None:
        """Start (or restart after REJECTED/stop) the connection supervisor."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        # Visible at once, so nobody mistakes a stale REJECTED/STOPPED for the
        # outcome of this start.
        self._set_state(LinkState.CONNECTING, f"connecting to {self.host}:{self.port}")
        self._task = asyncio.create_task(self._supervise(), name=f"ami-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        conn = self._conn
        if conn is not None:
            self._close(conn, "stopped")
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._set_state(LinkState.STOPPED, "stopped")

    async def wait_for_state(self, *states: LinkState, timeout_s: float | None = None) -> LinkState:
        """Wait until the link is in one of ``states``; return that state."""
        wanted = frozenset(states)
        if self._state in wanted:
            return self._state
        fut: asyncio.Future[LinkState] = asyncio.get_running_loop().create_future()
        entry = (wanted, fut)
        self._state_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)

    async def send_action(
        self,
        action: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        timeout_s: float | None = None,
        action_id: str | None = None,
    ) -> Response:
        """Send one action and return its ``Response: Success``.

        Raises :class:`PbxUnavailable` (not sent: link not UP), :class:`ActionFailed`
        (``Response: Error``, the reply headers are in ``.response``),
        :class:`ActionTimeout` or :class:`LinkLost` (sent, outcome unknown).
        """
        conn = self._gate(action)
        result = await self._request(conn, action, headers, timeout_s, action_id, is_list=False)
        assert isinstance(result, Response)
        return result

    async def send_list_action(
        self,
        action: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        timeout_s: float | None = None,
        action_id: str | None = None,
    ) -> ListResult:
        """Send a list action (``EventList: start`` ... ``...Complete``) and
        return the collected item events. The timeout covers the whole list."""
        conn = self._gate(action)
        result = await self._request(conn, action, headers, timeout_s, action_id, is_list=True)
        assert isinstance(result, ListResult)
        return result

    # ------------------------------------------------------------ internals

    def _gate(self, action: str) -> _Conn:
        conn = self._conn
        allowed = self._state is LinkState.UP or (
            self._state is LinkState.SYNCING and _IN_RESYNC.get()
        )
        if conn is None or conn.closed.is_set() or not allowed:
            why = f" ({self._reason})" if self._reason else ""
            raise PbxUnavailable(
                f"AMI link to {self.name} is {self._state.value}{why}; {action} was not sent"
            )
        return conn

    async def _request(
        self,
        conn: _Conn,
        action: str,
        headers: Sequence[tuple[str, str]],
        timeout_s: float | None,
        action_id: str | None,
        *,
        is_list: bool,
    ) -> Response | ListResult:
        aid = action_id or self.new_action_id()
        # Encode first: a local ProtocolError must not leave a pending entry.
        data = encode_action(action, aid, headers)
        if aid in conn.pending:
            raise ProtocolError(f"ActionID {aid!r} is already pending", remote=False)
        fut: asyncio.Future[Response | ListResult] = asyncio.get_running_loop().create_future()
        conn.pending[aid] = _Pending(action, fut, is_list)
        limit = self.action_timeout_s if timeout_s is None else timeout_s
        log.debug("ami %s -> %s ActionID=%s", self.name, action, aid, extra=self._log_extra)
        try:
            conn.writer.write(data)
            deadline = asyncio.get_running_loop().time() + limit
            async with asyncio.timeout(limit):
                await conn.writer.drain()
            return await result_within(fut, deadline)
        except TimeoutError as err:
            raise ActionTimeout(
                f"{self.name}: no reply to {action} (ActionID {aid}) within {limit:g} s; "
                "it may or may not have run"
            ) from err
        except (ConnectionError, OSError) as err:
            self._close(conn, f"write failed: {err}")
            raise LinkLost(
                f"{self.name}: link lost while sending {action} (ActionID {aid}); outcome unknown"
            ) from err
        finally:
            conn.pending.pop(aid, None)
            if not fut.done():
                fut.cancel()

    def _set_state(self, state: LinkState, reason: str = "") -> None:
        if state is self._state and reason == self._reason:
            return
        self._state = state
        self._reason = reason
        log.info(
            "ami %s link %s%s",
            self.name,
            state.value,
            f": {reason}" if reason else "",
            extra=self._log_extra,
        )
        for wanted, fut in list(self._state_waiters):
            if state in wanted and not fut.done():
                fut.set_result(state)
        for listener in list(self._state_listeners):
            try:
                listener(state, reason)
            except Exception:
                log.exception("ami %s state listener failed", self.name, extra=self._log_extra)

    def _backoff(self, attempt: int) -> float:
        # Capped exponential with "equal jitter": half fixed, half random, so
        # the delay still grows but N engines spread out after a restart.
        base = min(self.backoff_max_s, self.backoff_initial_s * float(2 ** min(attempt, 30)))
        return base / 2 + self._rng.random() * base / 2

    async def _supervise(self) -> None:
        attempt = 0
        rejections = 0
        while not self._stopping:
            self._set_state(LinkState.CONNECTING, f"connecting to {self.host}:{self.port}")
            self.connect_attempts += 1
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError) as err:
                reason = f"connect to {self.host}:{self.port} failed: {err or type(err).__name__}"
                self._set_state(LinkState.DOWN, reason)
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            loop = asyncio.get_running_loop()
            conn = _Conn(
                reader,
                writer,
                AmiParser(max_message_bytes=self._max_message_bytes),
                loop.create_future(),
            )
            self._conn = conn
            reader_task = asyncio.create_task(self._read_loop(conn), name=f"ami-read-{self.name}")
            try:
                reached_up = await self._session(conn)
            except _Rejected as err:
                self._close(conn, str(err))
                await _finish(reader_task)
                self._conn = None
                self._set_state(LinkState.REJECTED, str(err))
                # Credentials that never worked: no reconnect. The same login
                # would be refused again and every attempt is a security event
                # (and a log line) on Asterisk.
                # Credentials that DID work on this client: a restarting
                # Asterisk refuses logins while it shuts down or before
                # manager.conf is loaded (seen on the sandbox during
                # `core restart`), so retry a few times at the capped backoff,
                # never faster, while the state stays REJECTED and visible.
                if not self._ever_up or rejections >= MAX_REJECTED_RETRIES:
                    return
                rejections += 1
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            finally:
                if not conn.closed.is_set() and self._stopping:
                    self._close(conn, "stopped")
            await _finish(reader_task)
            self._conn = None
            if self._stopping:
                return
            if reached_up:
                attempt = 0
                rejections = 0
                self._ever_up = True
            self._set_state(LinkState.DOWN, conn.close_reason)
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def _session(self, conn: _Conn) -> bool:
        """Login, resync, UP, ping watchdog. Returns when ``conn`` closed;
        True if the link had reached UP."""
        limit = self.action_timeout_s
        try:
            async with asyncio.timeout(limit):
                await _first(conn.banner, conn.closed)
        except TimeoutError:
            self._close(conn, f"no AMI banner within {limit:g} s")
            return False
        if conn.closed.is_set():
            return False
        try:
            # Never log these headers: they carry the secret.
            await self._request(
                conn,
                "Login",
                [("Username", self.username), ("Secret", self._secret)],
                limit,
                None,
                is_list=False,
            )
        except ActionFailed as err:
            if isinstance(err, OutcomeUnknown):
                self._close(conn, f"login: {err}")
                return False
            msg = err.response.get("Message", "") or str(err)
            if msg.startswith("Asterisk is shutting down"):
                # Not about our credentials: manager.c answers every action
                # so while it stops. Reconnect with backoff like any drop.
                self._close(conn, f"login: {msg}")
                return False
            raise _Rejected(f"login as {self.username!r} refused: {msg}") from err

        if self.filters_enabled and not await self._add_filters(conn):
            return False

        self._set_state(LinkState.SYNCING, "rebuilding live-call view")
        if self._resync is not None:
            hook = self._resync
            ctx = contextvars.copy_context()
            ctx.run(_IN_RESYNC.set, True)
            task = asyncio.create_task(_call_hook(hook, self), context=ctx)
            closed_wait = asyncio.create_task(conn.closed.wait())
            try:
                await asyncio.wait({task, closed_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed_wait.cancel()
            if not task.done():
                task.cancel()
                await _finish(task)
                return False
            exc = task.exception()
            if exc is not None:
                log.warning("ami %s resync failed: %s", self.name, exc, extra=self._log_extra)
                self._close(conn, f"resync failed: {exc}")
                return False
        if conn.closed.is_set():
            return False
        self._set_state(LinkState.UP)
        await self._watchdog(conn)
        return True

    async def _add_filters(self, conn: _Conn) -> bool:
        """Send every Filter action at once (Asterisk answers them in order);
        False when the connection was closed instead."""
        limit = self.action_timeout_s
        replies = await asyncio.gather(
            *(
                self._request(conn, "Filter", f.action_headers(), limit, None, is_list=False)
                for f in self._event_filters
            ),
            return_exceptions=True,
        )
        for flt, reply in zip(self._event_filters, replies, strict=True):
            if not isinstance(reply, BaseException):
                continue
            if isinstance(reply, ActionFailed) and not isinstance(reply, OutcomeUnknown):
                self.filters_enabled = False
                msg = reply.response.get("Message", "") or str(reply)
                log.warning(
                    "ami %s: Asterisk refused event filter %s (%s); "
                    "reconnecting without event filters",
                    self.name,
                    flt.criteria(),
                    msg,
                    extra=self._log_extra,
                )
                self._close(conn, f"event filter refused: {msg}")
                return False
            if isinstance(reply, ActionFailed):  # timeout or link lost
                self._close(conn, f"adding event filters: {reply}")
                return False
            raise reply
        return not conn.closed.is_set()

    async def _watchdog(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        # Pings in a row left unanswered while Asterisk kept writing to us. A busy
        # Asterisk (or an engine reading a backlog of events on a starved host) queues
        # the Pong behind the events it is sending: bytes still arriving say the peer
        # is alive, so such a ping is forgiven, MAX_PINGS_UNANSWERED_WHILE_TALKING times
        # in a row at most (a manager session that streams events but no longer answers
        # actions is still dropped). A silent peer is dropped at the first timeout.
        unanswered = 0
        while not conn.closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ping_interval_s):
                    await conn.closed.wait()
            if conn.closed.is_set():
                return
            sent_at = loop.time()
            try:
                reply = await self._request(
                    conn, "Ping", (), self.ping_timeout_s, None, is_list=False
                )
            except ActionTimeout:
                if conn.last_rx > sent_at and unanswered < MAX_PINGS_UNANSWERED_WHILE_TALKING:
                    unanswered += 1
                    log.warning(
                        "ami %s: no reply to Ping within %g s, but Asterisk is still sending"
                        " (%d in a row); link kept",
                        self.name,
                        self.ping_timeout_s,
                        unanswered,
                        extra=self._log_extra,
                    )
                    continue
                self._close(conn, f"no reply to Ping within {self.ping_timeout_s:g} s")
                return
            except ActionFailed as err:
                # A closed link also lands here (LinkLost); anything else means
                # Asterisk is answering but unwell. Either way, start over.
                self._close(conn, f"Ping failed: {err}")
                return
            assert isinstance(reply, Response)
            unanswered = 0

    async def _read_loop(self, conn: _Conn) -> None:
        reason = "connection closed by Asterisk"
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await conn.reader.read(65536)
                if not data:
                    break
                conn.last_rx = loop.time()
                for msg in self._parse(conn, data):
                    self._dispatch(conn, msg)
        except (ConnectionError, OSError) as err:
            reason = f"read failed: {err}"
        finally:
            self._close(conn, reason)

    def _parse(self, conn: _Conn, data: bytes) -> list[Banner | Response | Event]:
        out: list[Banner | Response | Event] = []
        chunk = data
        # After a ProtocolError the parser keeps what it completed and skips
        # only the broken message, so feed(b"") until it stops complaining.
        while True:
            try:
                out.extend(conn.parser.feed(chunk))
                return out
            except ProtocolError as err:
                log.warning(
                    "ami %s: garbage from Asterisk skipped: %s",
                    self.name,
                    err,
                    extra=self._log_extra,
                )
                chunk = b""

    def _dispatch(self, conn: _Conn, msg: Banner | Response | Event) -> None:
        if isinstance(msg, Banner):
            if not conn.banner.done():
                conn.banner.set_result(msg)
            return
        if isinstance(msg, Response):
            self._on_response(conn, msg)
            return
        aid = msg.action_id
        if aid is not None:
            pending = conn.pending.get(aid)
            if pending is not None and pending.is_list:
                self._on_list_item(conn, aid, pending, msg)
                return
        for listener in list(self._event_listeners):
            try:
                listener(msg)
            except Exception:
                log.exception(
                    "ami %s event listener failed on %s", self.name, msg.name, extra=self._log_extra
                )
        for queue in list(self._subscribers):
            queue.put_nowait(msg)

    def _on_response(self, conn: _Conn, msg: Response) -> None:
        aid = msg.action_id
        pending = conn.pending.get(aid) if aid is not None else None
        if pending is None or pending.future.done():
            # A reply after its timeout, or without ActionID (Asterisk omits it
            # when the action had none). Never fatal: panoramisk dropped the
            # whole connection here.
            log.debug(
                "ami %s: reply for unknown ActionID %r ignored",
                self.name,
                aid,
                extra=self._log_extra,
            )
            return
        if not msg.ok:
            conn.pending.pop(aid or "", None)
            pending.future.set_exception(
                ActionFailed(
                    f"{self.name}: {pending.action} failed: {msg.message or msg.status}",
                    response=msg.headers.to_dict(),
                )
            )
            return
        if pending.is_list and (msg.headers.get("EventList") or "").lower() == "start":
            pending.response = msg
            return
        conn.pending.pop(aid or "", None)
        if pending.is_list:
            # Success without "EventList: start": nothing will follow.
            pending.future.set_result(ListResult(msg, ()))
        else:
            pending.future.set_result(msg)

    def _on_list_item(self, conn: _Conn, aid: str, pending: _Pending, ev: Event) -> None:
        # The list ends with "<Something>Complete" carrying "EventList: Complete"
        # and ListItems; items in between carry the same ActionID.
        if (ev.get("EventList") or "").lower() == "complete":
            conn.pending.pop(aid, None)
            response = pending.response or Response(ev.headers)
            if not pending.future.done():
                pending.future.set_result(ListResult(response, tuple(pending.items), ev))
            return
        pending.items.append(ev)

    def _close(self, conn: _Conn, reason: str) -> None:
        if conn.closed.is_set():
            return
        conn.close_reason = reason
        conn.closed.set()
        with contextlib.suppress(Exception):
            conn.writer.close()
        if not conn.banner.done():
            conn.banner.cancel()
        for aid, pending in list(conn.pending.items()):
            if not pending.future.done():
                pending.future.set_exception(
                    LinkLost(
                        f"{self.name}: link lost before the reply to {pending.action} "
                        f"(ActionID {aid}): {reason}; outcome unknown, not re-sent"
                    )
                )
        conn.pending.clear()


async def _call_hook(hook: ResyncHook, client: AmiClient) -> None:
    await hook(client)


async def _first(banner: asyncio.Future[Banner], closed: asyncio.Event) -> None:
    closed_wait = asyncio.create_task(closed.wait())
    waits: set[asyncio.Future[object]] = {banner, closed_wait}  # type: ignore[arg-type]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed_wait.cancel()


async def _finish(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
