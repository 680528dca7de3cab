"""A fake Asterisk AMI server on a loopback port that speaks recorded bytes.

Everything it sends is cut from the real Asterisk 22 transcripts in
``tests/fixtures/asterisk-22/transcripts`` (``*.ami``): the banner line, the
login reply with the FullyBooted/SuccessfulAuth events that follow it, and for
each scripted action the reply *plus every event Asterisk sent after it* up to
the next reply, byte for byte. Only two things are rewritten, the same way
Asterisk itself would have produced them:

* ``ActionID`` values become the ones the client chose;
* when the client's Originate carries ``ChannelId: X``, the Uniqueid of the
  channel that Originate created (the first ``Newchannel`` after the reply)
  becomes ``X`` everywhere, as Asterisk does for ChannelId.

Two replies are not in the recordings and come from Asterisk's manager.c
(checked against the real sandbox by tests/integration/test_asterisk_driver.py):
the login refusal (``Message: Authentication failed``, then the connection is
closed) and ``Logoff`` (``Response: Goodbye``).

Knobs: ``reject_login``, ``swallow`` (action names never answered),
``answer_pings``, ``drop_on`` (close the connection when one of these actions
arrives, without replying), :meth:`FakeAmiServer.drop_all`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from engine.pbx.asterisk.ami_codec import Action, AmiParser

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk-22" / "transcripts"


@dataclass(frozen=True)
class Segment:
    """Reply to one recorded action, plus the events that followed it."""

    action: str
    action_id: str
    reply: bytes  # just the Response block (with its blank line)
    data: bytes  # reply + following events, exactly as recorded


@dataclass(frozen=True)
class Transcript:
    name: str
    banner: bytes
    login: Segment
    actions: tuple[Action, ...]  # what the recorded client sent after Login
    segments: dict[str, Segment]  # by recorded ActionID


def _blocks(data: bytes) -> list[bytes]:
    out = []
    for part in data.split(b"\r\n\r\n"):
        if part:
            out.append(part + b"\r\n\r\n")
    return out


def load_transcript(name: str) -> Transcript:
    raw = (TRANSCRIPTS / name).read_bytes()
    sent = (TRANSCRIPTS / f"{name}.sent").read_bytes()
    nl = raw.index(b"\r\n") + 2
    banner, body = raw[:nl], raw[nl:]
    parser = AmiParser(role="server")
    actions = parser.feed_actions(sent)
    names = {a.action_id: a.name for a in actions if a.action_id}
    segments: dict[str, Segment] = {}
    current: str | None = None
    parts: dict[str, list[bytes]] = {}
    for block in _blocks(body):
        if block.startswith(b"Response:"):
            m = re.search(rb"\r\nActionID: ([^\r]*)\r\n", block)
            if m is not None:
                current = m.group(1).decode()
                parts[current] = [block]
                continue
        if current is not None:
            parts[current].append(block)
    for aid, blocks in parts.items():
        segments[aid] = Segment(names.get(aid, ""), aid, blocks[0], b"".join(blocks))
    login = segments.pop(actions[0].action_id or "")
    rest = tuple(a for a in actions[1:])
    return Transcript(name, banner, login, rest, segments)


def _rewrite_action_id(data: bytes, old: str, new: str) -> bytes:
    return data.replace(f"ActionID: {old}\r\n".encode(), f"ActionID: {new}\r\n".encode())


def _rewrite_uniqueid(data: bytes, old: str, new: str) -> bytes:
    # Whole values only: "1795318530.1" must not touch "1795318530.10". The
    # MixMonitor file name is built from ${UNIQUEID} in the dialplan, so
    # "/<uid>.wav" follows the rename too.
    pattern = re.compile(rb"(?:(?<=: )|(?<=/))" + re.escape(old.encode()) + rb"(?=\r\n|\.wav)")
    return pattern.sub(new.encode(), data)


def _first_newchannel_uid(segment: bytes) -> str | None:
    m = re.search(rb"Event: Newchannel\r\n(?:[^\r]*\r\n)*?Uniqueid: ([^\r]*)\r\n", segment)
    return m.group(1).decode() if m else None


_STATUS = "status-lists.ami"
_AUTH_FAILED = b"Response: Error\r\nActionID: {aid}\r\nMessage: Authentication failed\r\n\r\n"
# What manager.c answers to any action while Asterisk stops (seen on the
# sandbox during `core restart`: "login as 'engine' refused: Asterisk is shutting down").
_SHUTTING_DOWN = b"Response: Error\r\nActionID: {aid}\r\nMessage: Asterisk is shutting down\r\n\r\n"
# Replies to ``Action: Filter`` seen live on the sandbox (Asterisk 22.10.1): an
# accepted filter, and the refusal of a malformed MatchCriteria.
_FILTER_ADDED = b"Response: Success\r\nActionID: {aid}\r\nMessage: Success\r\n\r\n"
_FILTER_REFUSED = (
    b"Response: Error\r\nActionID: {aid}\r\nMessage: Filter was formatted incorrectly.  "
    b"Check the syntax of the filter given.\r\n\r\n"
)
_GOODBYE = b"Response: Goodbye\r\nActionID: {aid}\r\nMessage: Thanks for all the fish.\r\n\r\n"


@dataclass
class _Client:
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None


@dataclass
class FakeAmiServer:
    """``async with FakeAmiServer("originate-busy.ami") as fake:`` then connect
    an AmiClient to ``fake.port`` with user ``engine`` / ``enginesecret``."""

    scenario: str | None = None
    username: str = "engine"
    secret: str = "enginesecret"
    reject_login: bool = False
    shutting_down: bool = False  # answer Login as a stopping Asterisk does
    answer_pings: bool = True
    refuse_filters: bool = False  # answer Action: Filter with the real refusal
    swallow: set[str] = field(default_factory=set)
    drop_on: set[str] = field(default_factory=set)

    port: int = 0
    received: list[Action] = field(default_factory=list)
    connections: int = 0
    login_attempts: int = 0

    def __post_init__(self) -> None:
        self._status = load_transcript(_STATUS)
        self._script = load_transcript(self.scenario) if self.scenario else None
        self._used: set[str] = set()
        self._server: asyncio.Server | None = None
        self._clients: list[_Client] = []
        self.logged_in = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_all()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def drop_all(self) -> None:
        """Close every client connection now (Asterisk restart / network cut)."""
        for client in list(self._clients):
            client.writer.close()
            if client.task is not None and client.task is not asyncio.current_task():
                client.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await client.task
        self._clients.clear()

    def actions_named(self, name: str) -> list[Action]:
        return [a for a in self.received if a.name.lower() == name.lower()]

    async def push(self, data: bytes) -> None:
        """Send raw bytes (e.g. recorded events) to every connected client."""
        for client in self._clients:
            client.writer.write(data)
            await client.writer.drain()

    # ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer, asyncio.current_task())
        self._clients.append(client)
        self.connections += 1
        parser = AmiParser(role="server")
        authed = False
        banner = (self._script or self._status).banner
        try:
            writer.write(banner)
            await writer.drain()
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for action in parser.feed_actions(data):
                    self.received.append(action)
                    if not authed:
                        authed = await self._login(writer, action)
                        if not authed:
                            return
                        continue
                    if not await self._handle(writer, action):
                        return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            if client in self._clients:
                self._clients.remove(client)

    async def _login(self, writer: asyncio.StreamWriter, action: Action) -> bool:
        aid = action.action_id or ""
        if action.name.lower() != "login":
            # Asterisk answers anything before Login with an error and keeps going.
            writer.write(
                b"Response: Error\r\nActionID: %s\r\nMessage: Permission denied\r\n\r\n"
                % aid.encode()
            )
            await writer.drain()
            return False
        self.login_attempts += 1
        if self.shutting_down:
            writer.write(_SHUTTING_DOWN.replace(b"{aid}", aid.encode()))
            await writer.drain()
            return False
        ok = (
            not self.reject_login
            and action.headers.get("Username") == self.username
            and action.headers.get("Secret") == self.secret
        )
        if not ok:
            writer.write(_AUTH_FAILED.replace(b"{aid}", aid.encode()))
            await writer.drain()
            return False
        login = (self._script or self._status).login
        writer.write(_rewrite_action_id(login.data, login.action_id, aid))
        await writer.drain()
        self.logged_in.set()
        return True

    def _scripted(self, action: Action) -> Segment | None:
        if self._script is None:
            return None
        for recorded in self._script.actions:
            rid = recorded.action_id or ""
            if rid in self._used or recorded.name.lower() != action.name.lower():
                continue
            self._used.add(rid)
            return self._script.segments.get(rid)
        return None

    async def _handle(self, writer: asyncio.StreamWriter, action: Action) -> bool:
        name = action.name.lower()
        aid = action.action_id or ""
        if action.name in self.drop_on or name in {d.lower() for d in self.drop_on}:
            return False
        if name in {s.lower() for s in self.swallow}:
            return True
        if name == "ping" and not self.answer_pings:
            return True
        if name == "filter":
            reply = _FILTER_REFUSED if self.refuse_filters else _FILTER_ADDED
            writer.write(reply.replace(b"{aid}", aid.encode()))
            await writer.drain()
            return True
        if name == "logoff":
            writer.write(_GOODBYE.replace(b"{aid}", aid.encode()))
            await writer.drain()
            return False
        seg = self._scripted(action)
        if seg is not None:
            data = _rewrite_action_id(seg.data, seg.action_id, aid)
            channel_id = action.headers.get("ChannelId")
            if channel_id:
                uid = _first_newchannel_uid(seg.data)
                if uid:
                    data = _rewrite_uniqueid(data, uid, channel_id)
        else:
            data = self._builtin(name, aid)
        await self._emit(writer, action, data)
        return True

    async def _emit(self, writer: asyncio.StreamWriter, action: Action, data: bytes) -> None:
        """Send the reply (and events) to one action; subclasses may stage it."""
        writer.write(data)
        await writer.drain()

    def _builtin(self, name: str, aid: str) -> bytes:
        # Replies recorded in status-lists.ami, reused for any session.
        seg = self._status.segments
        if name == "ping":
            return _rewrite_action_id(seg["ping-1"].reply, "ping-1", aid)
        if name == "coreshowchannels":
            return _rewrite_action_id(seg["csc-1"].data, "csc-1", aid)
        if name == "hangup":
            return _rewrite_action_id(seg["hup-404"].reply, "hup-404", aid)
        if name == "queuesummary":
            return _rewrite_action_id(seg["qsum-1"].data, "qsum-1", aid)
        # Unknown to the fake: the real "Invalid/unknown command" error (its
        # text names the recorded action, Bogus, which tests do not rely on).
        return _rewrite_action_id(seg["bad-1"].reply, "bad-1", aid)
