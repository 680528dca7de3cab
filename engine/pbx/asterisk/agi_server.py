"""FastAGI server: Asterisk's ``AGI(agi://host:port/script?k=v)`` connects here.

Built on ``panoramisk.fast_agi.Application`` (panoramisk==1.4) as the card asks, but only as
the per-connection shell: it reads the environment block and calls our endpoint. Everything
it does unsafely is wrapped (each point is a why-comment below and a line in
docs/fastagi.md):

* its environment loop ``while b'\\n\\n' not in buffer: buffer += await reader.read(100)``
  never yields once the peer closes before the blank line (a TCP health check does exactly
  that): ``read()`` at EOF returns ``b''`` without suspending, so the whole event loop
  freezes. It also has no timeout and may swallow bytes that follow the blank line. It
  gets a guarded reader (:class:`_EnvironmentFeed`) that hands it one line per ``read()``,
  raises on EOF, timeout and oversize, and keeps the raw bytes so our strict codec can
  re-parse them (panoramisk silently drops lines without ``": "``).
* it decodes with its ``default_encoding`` and a ``UnicodeDecodeError`` (a Latin-1 caller
  name) escapes its handler before it closes the socket: we give it ``latin-1``, which
  decodes any byte, and decode properly in our codec.
* it routes on ``agi_network_script`` verbatim, which includes the query string
  (``ivr?flow=main``), so a fixed route never matches: we install a catch-all route table.
* its ``send_command`` is not used at all: the command/reply exchange goes through
  :class:`~engine.pbx.asterisk.agi_session.AgiCallSession` and our codec.
* it catches ``BaseException`` around the route, swallowing cancellation and logging it as
  an error; our endpoint handles cancellation itself so a shutdown is quiet and clean.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from panoramisk.fast_agi import Application

from engine.core.errors import ProtocolError
from engine.core.lifecycle import AsyncResource
from engine.pbx.asterisk.agi_codec import MAX_ENV_LINES, parse_environment
from engine.pbx.asterisk.agi_session import AgiCallSession
from engine.pbx.base import CallSession, HangupDuringSession

__all__ = ["AgiHandler", "FastAgiServer"]

AgiHandler = Callable[[CallSession], Awaitable[None]]

_log = structlog.get_logger("engine.pbx.asterisk.agi_server")


class _EnvironmentFeed:
    """The ``reader`` panoramisk's ``Application.handler`` sees while it reads the env.

    ``read(n)`` returns exactly one line (never more than the blank terminator line), so
    nothing after the environment -- e.g. an early ``HANGUP`` notice -- is consumed and lost:
    it stays in ``stream`` for the session. EOF, a deadline and a line budget turn
    panoramisk's unbounded loop into a bounded one.
    """

    def __init__(self, stream: asyncio.StreamReader, timeout_s: float, max_lines: int) -> None:
        self.stream = stream
        self.raw = bytearray()
        self.complete = False
        self.dispatched = False  # set when panoramisk handed the call to our endpoint
        self._lines = 0
        self._max_lines = max_lines
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self._timeout_s = timeout_s

    async def read(self, n: int = -1) -> bytes:
        if self.complete:
            # Only happens when the block was empty (panoramisk waits for "\n\n").
            raise ProtocolError("AGI environment: empty block (blank line first)")
        remaining = self._deadline - asyncio.get_running_loop().time()
        try:
            line = await asyncio.wait_for(self.stream.readuntil(b"\n"), max(remaining, 0.0))
        except TimeoutError as err:
            raise ProtocolError(
                f"AGI environment: incomplete after {self._timeout_s:g}s "
                f"({self._lines} lines, no blank line yet)"
            ) from err
        except asyncio.IncompleteReadError as err:
            raise ProtocolError(
                f"AGI environment: connection closed after {self._lines} lines, before the "
                f"blank line (trailing bytes {err.partial[:80]!r})"
            ) from err
        except asyncio.LimitOverrunError as err:
            raise ProtocolError(
                f"AGI environment: line {self._lines + 1} longer than {err.consumed} bytes"
            ) from err
        self.raw += line
        self._lines += 1
        if line in (b"\n", b"\r\n"):
            self.complete = True
            # Normalise a CRLF terminator so panoramisk's b"\n\n" test sees the end.
            return b"\n"
        if self._lines > self._max_lines:
            raise ProtocolError(f"AGI environment: more than {self._max_lines} lines")
        return line


class _AnyScript(OrderedDict[str, Any]):
    """Route table that sends every ``agi_network_script`` to one endpoint.

    panoramisk 1.4 looks routes up with ``self._route.get(agi_network_script)``; the value
    carries the URL's query string, so exact routes cannot work for ``ivr?flow=...``.
    Routing by script/flow is the IVR domain's job, from ``session.variables``.
    """

    def __init__(self, endpoint: Callable[[Any], Awaitable[None]]) -> None:
        super().__init__()
        self._endpoint = endpoint

    def get(self, key: Any, default: Any = None) -> Any:
        return self._endpoint


class FastAgiServer(AsyncResource):
    """Async context manager serving FastAGI on ``host:port`` with one async ``handler``.

    ``handler(session)`` runs once per call with an :class:`AgiCallSession`. When it returns,
    the connection is closed and Asterisk continues the dialplan after ``AGI()``. When it
    raises, the error is logged with the call id and the channel is hung up, then closed.
    ``HangupDuringSession`` escaping the handler is the normal end of an abandoned call.
    ``port=0`` binds an ephemeral port; read the real one from :attr:`port`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: AgiHandler,
        *,
        env_timeout_s: float = 5.0,
        step_timeout_s: float = 10.0,
        prompt_timeout_s: float = 300.0,
    ) -> None:
        if not callable(handler) or not asyncio.iscoroutinefunction(handler):
            # panoramisk would wrap a plain function with asyncio.coroutine, which no longer
            # exists on Python 3.11; sync handlers would also block the loop. Refuse early.
            raise TypeError("FastAgiServer: handler must be an async function (async def)")
        self._host = host
        self._port = port
        self._handler = handler
        self._env_timeout_s = env_timeout_s
        self._step_timeout_s = step_timeout_s
        self._prompt_timeout_s = prompt_timeout_s
        self._server: asyncio.Server | None = None
        self._app: Application | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sessions: dict[str, AgiCallSession] = {}

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("FastAgiServer is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_calls(self) -> int:
        """Calls whose handler is running."""
        return len(self._sessions)

    @property
    def open_connections(self) -> int:
        """Accepted sockets not yet closed (including ones still sending the environment)."""
        return len(self._tasks)

    async def start(self) -> None:
        if self._server is not None:
            return
        # Passing the running loop avoids panoramisk's asyncio.get_event_loop() call.
        app = Application(default_encoding="latin-1", loop=asyncio.get_running_loop())
        if not isinstance(getattr(app, "_route", None), dict):
            raise RuntimeError(
                "panoramisk.fast_agi.Application has no _route table; this wrapper was written "
                "for panoramisk==1.4"
            )
        app._route = _AnyScript(self._endpoint)
        self._app = app
        self._server = await asyncio.start_server(self._on_connection, self._host, self._port)
        _log.info("agi.listening", host=self._host, port=self.port)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, give running calls ``grace_s`` to finish, then cancel them.

        A cancelled call's socket is closed, so Asterisk continues its dialplan.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._tasks:
            pending = set(self._tasks)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining > 0:
                await asyncio.wait(pending, timeout=remaining)
                continue
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()
        _log.info("agi.stopped")

    # ------------------------------------------------------------------ per connection

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        feed = _EnvironmentFeed(reader, self._env_timeout_s, MAX_ENV_LINES)
        try:
            assert self._app is not None
            await self._app.handler(feed, writer)
            if not feed.dispatched:
                self._explain_refusal(feed, peer)
        except ProtocolError as err:
            _log.warning("agi.bad_connection", peer=str(peer), error=str(err))
        except asyncio.CancelledError:
            # Shutdown while still reading the environment: nothing to clean but the socket.
            pass
        except Exception:
            _log.exception("agi.connection_failed", peer=str(peer))
        finally:
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    def _explain_refusal(feed: _EnvironmentFeed, peer: Any) -> None:
        # panoramisk returns without calling any route when agi_network_script is missing
        # (an AGI URL without a path, or not Asterisk at all) and only says so through stdlib
        # logging. Say why in our log, with the strict parser's reading of the block.
        try:
            env = parse_environment(bytes(feed.raw))
        except ProtocolError as err:
            _log.warning("agi.bad_environment", peer=str(peer), error=str(err))
            return
        _log.warning(
            "agi.no_script",
            peer=str(peer),
            call_id=env.uniqueid,
            channel=env.channel,
            error="AGI URL has no path (agi://host:port/<script>); call not served",
        )

    async def _endpoint(self, request: Any) -> None:
        """panoramisk's route callback: one call, start to end. Never raises."""
        feed: _EnvironmentFeed = request.reader
        writer: asyncio.StreamWriter = request.writer
        feed.dispatched = True
        try:
            env = parse_environment(bytes(feed.raw))
        except ProtocolError as err:
            _log.warning(
                "agi.bad_environment", peer=str(writer.get_extra_info("peername")), error=str(err)
            )
            return
        log = _log.bind(call_id=env.uniqueid, channel=env.channel, script=env.script)
        session = AgiCallSession(
            env,
            feed.stream,
            writer,
            step_timeout_s=self._step_timeout_s,
            prompt_timeout_s=self._prompt_timeout_s,
            logger=log,
        )
        self._sessions[env.uniqueid] = session
        log.info("agi.session_start", query=dict(env.query), arguments=list(env.arguments))
        outcome = "returned"
        try:
            await self._handler(session)
        except HangupDuringSession:
            outcome = "caller_hung_up"
        except asyncio.CancelledError:
            # Server shutdown. Swallowed on purpose: this task belongs to the server and ends
            # here anyway, and panoramisk would log a CancelledError as an application error.
            outcome = "cancelled"
        except Exception as err:
            outcome = "handler_failed"
            log.exception("agi.handler_failed", error=str(err))
            # The flow is broken: do not leave the caller in silence or hand a half-run
            # IVR back to the dialplan. Best effort; the caller may already be gone.
            with contextlib.suppress(Exception):
                await session.hangup()
        finally:
            await session.close()
            self._sessions.pop(env.uniqueid, None)
            log.info("agi.session_end", outcome=outcome, hung_up=session.hung_up)
