"""Sans-IO codec for the FreeSWITCH event socket (mod_event_socket, FreeSWITCH 1.10).

Bytes go in through :meth:`EslParser.feed`; frozen message dataclasses come out.
Commands are built by the ``encode_*`` functions, which return bytes. Nothing
here touches a socket, a clock or a task, so the same code runs in the asyncio
client, in the outbound-socket server, in the fake FreeSWITCH and in benchmarks.

Wire format, as recorded from a real FreeSWITCH 1.10.12 (tests/fixtures/freeswitch-1.10):

* Every message is a block of ``Name: value`` header lines ended by an empty
  line. If the block has ``Content-Length`` the next that many bytes are its
  body. Lines end in a bare LF, never CRLF.
* ``Content-Type`` says what the message is: ``auth/request``,
  ``command/reply``, ``api/response``, ``text/event-plain``,
  ``text/event-json``, ``text/disconnect-notice``, ``text/rude-rejection``.
* A plain event is a *second* header block inside the body, its values
  URL-encoded; it may carry its own ``Content-Length`` and a nested body
  (BACKGROUND_JOB carries the job's result that way).

Errors: wire garbage raises :class:`engine.core.errors.ProtocolError` with
``remote=True`` and a message naming what was wrong and where; asking an
encoder for something that cannot be said on the wire (a newline inside a
command, which would let a caller inject a second command) raises it with
``remote=False``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

from engine.core.errors import ProtocolError

# A header block larger than this is not something FreeSWITCH sends (the
# largest real one in the fixtures, the outbound ``connect`` reply carrying
# all channel variables, is about 9 KiB). Refusing early keeps a peer that
# never sends the blank line from growing our buffer without bound.
MAX_HEADER_BYTES = 256 * 1024
# Bodies: ``show channels as json`` on a busy switch can be several MiB.
MAX_BODY_BYTES = 64 * 1024 * 1024

# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """FreeSWITCH greets every inbound connection with this and waits for ``auth``."""


@dataclass(frozen=True, slots=True)
class CommandReply:
    """Reply to ``auth``, ``event``, ``bgapi``, ``sendmsg``, ``connect``... .

    ``reply_text`` starts with ``+OK`` or ``-ERR``. For ``bgapi`` the reply
    carries ``Job-UUID``. For the outbound ``connect`` the reply also carries
    every channel header and variable (see :attr:`headers`).
    """

    reply_text: str
    headers: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.reply_text.startswith("+OK")

    @property
    def job_uuid(self) -> str | None:
        return self.headers.get("Job-UUID")


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """Reply to ``api``: the command's output as text.

    FreeSWITCH does not flag errors structurally here; by convention the text
    starts with ``-ERR`` (``-ERR No such channel!``, ``-ERR bogus_command
    Command not found!``) and ``-USAGE`` when a command was misused.
    """

    body: str

    @property
    def ok(self) -> bool:
        return not (self.body.startswith("-ERR") or self.body.startswith("-USAGE"))


@dataclass(frozen=True, slots=True)
class EslEvent:
    """One event, plain or json, with URL-decoded header values.

    ``body`` is the nested body (BACKGROUND_JOB's result, for example), empty
    when there is none.
    """

    name: str
    headers: Mapping[str, str] = field(compare=False, repr=False)
    body: str = ""
    format: Literal["plain", "json"] = "plain"

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)

    @property
    def subclass(self) -> str:
        """``Event-Subclass`` of CUSTOM events (``sofia::gateway_state``), else ``""``."""
        return self.headers.get("Event-Subclass", "")

    @property
    def unique_id(self) -> str:
        return self.headers.get("Unique-ID", "")


@dataclass(frozen=True, slots=True)
class DisconnectNotice:
    """The switch is about to close the socket (or, in outbound ``linger``
    mode, tells us the channel is gone and it will close after the linger)."""

    headers: Mapping[str, str] = field(compare=False)
    body: str = ""

    @property
    def lingering(self) -> bool:
        return self.headers.get("Content-Disposition") == "linger"


@dataclass(frozen=True, slots=True)
class RudeRejection:
    """The listener refused us by ACL before any auth; the socket closes next."""

    body: str


EslMessage = AuthRequest | CommandReply | ApiResponse | EslEvent | DisconnectNotice | RudeRejection


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------


def _decode(value: str) -> str:
    # unquote() already returns its argument untouched when there is no '%',
    # but testing first skips a Python-level call for most headers: only about
    # one value in five carries an escape.
    return unquote(value) if "%" in value else value


def _split_headers(text: str, where: str) -> dict[str, str]:
    """Split ``Name: value`` lines. Values keep any further ': ' they contain.

    A repeated name keeps its last value: FreeSWITCH writes ``Hangup-Cause``
    twice in every CHANNEL_HANGUP_COMPLETE (same value both times).
    """
    headers: dict[str, str] = {}
    for line in text.split("\n"):
        name, sep, value = line.partition(": ")
        if not sep:
            # FreeSWITCH writes an empty value as "Name: " (with the space);
            # accept "Name:" too, which other ESL peers send.
            if line.endswith(":") and line[:-1].strip():
                headers[line[:-1]] = ""
                continue
            raise ProtocolError(f"{where}: header line {line[:80]!r} has no ': ' separator")
        headers[name] = value
    return headers


class EventHeaders(Mapping[str, str]):
    """The headers of a plain event, split on first use and URL-decoded per key.

    Why lazy: a plain CHANNEL_* event carries 100-250 headers, most of them
    channel variables nobody reads. Splitting and percent-decoding all of them
    costs about 40 times the framing itself, and a busy switch sends thousands
    of events a second of which the engine reads five headers each. The
    framing (blank line, inner Content-Length, Event-Name) is checked when the
    event is parsed; a malformed inner line raises ProtocolError on first access.
    """

    __slots__ = ("_decoded", "_head", "_raw")

    def __init__(self, head: str) -> None:
        self._head = head
        self._raw: dict[str, str] | None = None
        self._decoded: dict[str, str] = {}

    def _split(self) -> dict[str, str]:
        raw = self._raw
        if raw is None:
            raw = self._raw = _split_headers(self._head, "text/event-plain body")
        return raw

    def __getitem__(self, key: str) -> str:
        try:
            return self._decoded[key]
        except KeyError:
            pass
        if self._raw is None:
            # Until someone iterates, look single headers up in place: a
            # substring search is ~20x cheaper than splitting 200 lines.
            raw_value = _find_header(self._head, key, last=True)
            if raw_value is None:
                raise KeyError(key)
        else:
            raw_value = self._raw[key]
        value = _decode(raw_value)
        self._decoded[key] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._split())

    def __len__(self) -> int:
        return len(self._split())

    def __contains__(self, key: object) -> bool:
        if self._raw is None and isinstance(key, str):
            return _find_header(self._head, key) is not None
        return key in self._split()

    def __repr__(self) -> str:
        return f"EventHeaders({len(self)} headers)"


def _find_header(head: str, name: str, *, last: bool = False) -> str | None:
    """Raw value of ``name`` in a header block without splitting all of it.

    ``last`` picks the last occurrence, which is what splitting into a dict
    keeps (see :func:`_split_headers` on repeated names).
    """
    prefix = name + ": "
    i = head.rfind("\n" + prefix) if last else head.find("\n" + prefix)
    if i >= 0:
        start = i + 1 + len(prefix)
    elif head.startswith(prefix):
        start = len(prefix)
    else:
        return None
    stop = head.find("\n", start)
    return head[start:] if stop < 0 else head[start:stop]


def parse_plain_event(body: bytes) -> EslEvent:
    """Parse the body of a ``text/event-plain`` message.

    The body is its own header block (URL-encoded values), an empty line, and,
    when the inner headers carry ``Content-Length``, a nested body of exactly
    that many bytes.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtocolError(f"text/event-plain body is not UTF-8 at byte {err.start}") from err
    head, sep, rest = text.partition("\n\n")
    if not sep:
        # An event whose inner block is not followed by a blank line is cut.
        raise ProtocolError(
            "text/event-plain body: inner header block does not end in a blank line"
        )
    # The inner lines are split on first access (EventHeaders); a malformed
    # line raises ProtocolError then. Checking every line here would cost more
    # than the rest of the parse together (see bench/esl_codec.py).
    nested = ""
    # FreeSWITCH appends the inner Content-Length as the very last header
    # when (and only when) the event has a body, so only the last line needs
    # looking at.
    last_line = head[head.rfind("\n") + 1 :]
    inner_len = last_line[16:] if last_line.startswith("Content-Length: ") else None
    if inner_len is not None:
        n = _parse_length(inner_len, "text/event-plain inner Content-Length")
        nested_bytes = rest.encode("utf-8")
        if len(nested_bytes) < n:
            raise ProtocolError(
                f"text/event-plain: nested body has {len(nested_bytes)} bytes, "
                f"inner Content-Length says {n}"
            )
        nested = nested_bytes[:n].decode("utf-8")
    name = _find_header(head, "Event-Name")
    if not name:
        raise ProtocolError("text/event-plain body has no Event-Name header")
    return EslEvent(name=_decode(name), headers=EventHeaders(head), body=nested, format="plain")


def _json_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # Multi-valued headers come as JSON arrays; the plain format writes the
        # same thing as "ARRAY::a|:b", so give callers one representation.
        return "ARRAY::" + "|:".join(str(v) for v in value)
    return str(value)


def parse_json_event(body: bytes) -> EslEvent:
    """Parse the body of a ``text/event-json`` message (values are not URL-encoded;
    a nested body appears as the ``_body`` key)."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"text/event-json body is not valid JSON: {err}") from err
    if not isinstance(obj, dict):
        raise ProtocolError(f"text/event-json body is a {type(obj).__name__}, expected an object")
    nested = obj.pop("_body", "")
    # Values are almost always strings already; only convert when one is not
    # (arrays for multi-valued headers), which keeps the common path in C.
    headers = (
        obj
        if set(map(type, obj.values())) <= {str}
        else {str(k): _json_value(v) for k, v in obj.items()}
    )
    name = headers.get("Event-Name")
    if not name:
        raise ProtocolError("text/event-json body has no Event-Name key")
    return EslEvent(name=name, headers=headers, body=str(nested), format="json")


def _parse_length(value: str, what: str) -> int:
    if not value.isdigit():
        raise ProtocolError(f"{what} is {value[:40]!r}, expected a non-negative integer")
    n = int(value)
    if n > MAX_BODY_BYTES:
        raise ProtocolError(f"{what} is {n}, larger than the {MAX_BODY_BYTES} byte limit")
    return n


class EslParser:
    """Incremental parser. Feed any chunking of the stream; get whole messages.

    After a :class:`ProtocolError` the stream position is unknown, so the
    parser refuses further input: the only safe recovery is a new connection.
    """

    __slots__ = ("_broken", "_buf", "_pos", "_scan_from", "offset")

    def __init__(self) -> None:
        # Unconsumed bytes are _buf[_pos:]. Advancing an index instead of
        # deleting each message from the front keeps a large read (a burst of
        # events) linear instead of quadratic.
        self._buf = b""
        self._pos = 0
        # Where to resume looking for the blank line; avoids rescanning a
        # partial header block on every small chunk.
        self._scan_from = 0
        self._broken: str | None = None
        #: Bytes consumed so far, for error messages ("at byte N").
        self.offset = 0

    def feed(self, data: bytes) -> list[EslMessage]:
        """Add bytes, return every message now complete (possibly none)."""
        if self._broken is not None:
            raise ProtocolError(f"parser already failed earlier: {self._broken}")
        if self._pos:
            self._scan_from -= self._pos
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf += data
        out: list[EslMessage] = []
        try:
            while True:
                msg = self._next()
                if msg is None:
                    return out
                out.append(msg)
        except ProtocolError as err:
            self._broken = str(err)
            raise

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf) - self._pos

    def _next(self) -> EslMessage | None:
        buf = self._buf
        pos = self._pos
        size = len(buf)
        # FreeSWITCH never sends blank lines between messages, but some ESL
        # proxies add one after a body; skipping stray LFs is harmless.
        while pos < size and buf[pos] == 0x0A:
            pos += 1
        if pos != self._pos:
            self.offset += pos - self._pos
            self._pos = pos
        end = buf.find(b"\n\n", max(self._scan_from - 1, pos))
        if end < 0:
            self._scan_from = size
            if size - pos > MAX_HEADER_BYTES:
                raise ProtocolError(
                    f"at byte {self.offset}: no blank line within {MAX_HEADER_BYTES} bytes; "
                    "not an event-socket header block"
                )
            return None
        try:
            head = buf[pos:end].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError(
                f"at byte {self.offset + err.start}: header block is not UTF-8"
            ) from err
        headers = _split_headers(head, f"at byte {self.offset}")
        length = 0
        cl = headers.get("Content-Length")
        if cl is not None:
            length = _parse_length(cl, f"at byte {self.offset}: Content-Length")
        total = end + 2 + length
        if size < total:
            self._scan_from = end  # the header is known; wait for the body
            return None
        body = buf[end + 2 : total]
        where = self.offset
        self.offset += total - pos
        self._pos = total
        self._scan_from = total
        return _build(headers, body, where)


def _build(headers: dict[str, str], body: bytes, where: int) -> EslMessage:
    ctype = headers.get("Content-Type")
    if ctype is None:
        raise ProtocolError(
            f"at byte {where}: header block without Content-Type "
            f"(headers: {', '.join(list(headers)[:5])})"
        )
    if ctype == "text/event-plain":
        return parse_plain_event(body)
    if ctype == "text/event-json":
        return parse_json_event(body)
    if ctype == "command/reply":
        if "Event-Name" in headers:
            # The outbound-socket ``connect`` reply is a whole serialized
            # channel event with Content-Type appended, and FreeSWITCH
            # URL-encodes every value in it, Reply-Text included
            # ("%2BOK%0A" in the fixture). Ordinary replies are written raw
            # and must not be decoded (a Reply-Text may legitimately hold '%').
            headers = {k: _decode(v) for k, v in headers.items()}
        reply = headers.get("Reply-Text")
        if reply is None:
            raise ProtocolError(f"at byte {where}: command/reply without Reply-Text")
        return CommandReply(reply_text=reply.rstrip("\n"), headers=headers)
    if ctype == "api/response":
        return ApiResponse(body=_text(body, where, ctype))
    if ctype == "auth/request":
        return AuthRequest()
    if ctype == "text/disconnect-notice":
        return DisconnectNotice(headers=headers, body=_text(body, where, ctype))
    if ctype == "text/rude-rejection":
        return RudeRejection(body=_text(body, where, ctype))
    raise ProtocolError(
        f"at byte {where}: unknown Content-Type {ctype[:60]!r}; expected one of auth/request, "
        "command/reply, api/response, text/event-plain, text/event-json, "
        "text/disconnect-notice, text/rude-rejection"
    )


def _text(body: bytes, where: int, ctype: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtocolError(f"at byte {where}: {ctype} body is not UTF-8") from err


# ---------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------


def _clean(part: str, what: str) -> str:
    # A newline would end the command early and start a second one written by
    # whoever controls ``part`` (a campaign's phone number, an IVR prompt...).
    if "\n" in part or "\r" in part:
        raise ProtocolError(f"{what} contains a newline: {part[:60]!r}", remote=False)
    return part


def encode_command(line: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """One command: its line, optional ``Name: value`` lines, and the blank line."""
    parts = [_clean(line, "command line")]
    for name, value in headers:
        _clean(name, "header name")
        if ":" in name or not name:
            raise ProtocolError(f"header name {name!r} is empty or holds ':'", remote=False)
        parts.append(f"{name}: {_clean(value, f'header {name}')}")
    if not line.strip():
        raise ProtocolError("empty command line", remote=False)
    return ("\n".join(parts) + "\n\n").encode("utf-8")


def encode_auth(password: str) -> bytes:
    return encode_command(f"auth {password}")


def encode_api(command: str) -> bytes:
    return encode_command(f"api {command}")


def encode_bgapi(command: str, job_uuid: str) -> bytes:
    """``bgapi`` with a client-chosen ``Job-UUID``: we know the job's id before
    FreeSWITCH answers, so its BACKGROUND_JOB can never arrive unmatched."""
    if not job_uuid or " " in job_uuid:
        raise ProtocolError(f"Job-UUID {job_uuid!r} must be a non-empty token", remote=False)
    return encode_command(f"bgapi {command}", [("Job-UUID", job_uuid)])


def encode_event_subscription(fmt: Literal["plain", "json"], events: Iterable[str]) -> bytes:
    names = list(events)
    if fmt not in ("plain", "json"):
        raise ProtocolError(f"event format {fmt!r}, expected plain or json", remote=False)
    if not names:
        raise ProtocolError("event subscription with no event names", remote=False)
    return encode_command(f"event {fmt} " + " ".join(names))


def encode_sendmsg(
    uuid: str | None, call_command: str, headers: Iterable[tuple[str, str]] = ()
) -> bytes:
    """``sendmsg [<uuid>]``; the uuid is omitted on an outbound socket, where
    the channel is implied by the connection."""
    line = "sendmsg" if not uuid else f"sendmsg {uuid}"
    return encode_command(line, [("call-command", call_command), *headers])


def encode_execute(
    app: str,
    arg: str = "",
    *,
    uuid: str | None = None,
    event_lock: bool = True,
    event_uuid: str | None = None,
) -> bytes:
    """Run a dialplan application on a channel.

    ``event-lock: true`` makes FreeSWITCH run queued applications one after the
    other instead of letting a later ``sendmsg`` pre-empt a running one.
    ``Event-UUID`` becomes the ``Application-UUID`` of the CHANNEL_EXECUTE and
    CHANNEL_EXECUTE_COMPLETE events, which is how we match the completion of
    this very step.
    """
    headers: list[tuple[str, str]] = [("execute-app-name", app)]
    if arg:
        headers.append(("execute-app-arg", arg))
    if event_lock:
        headers.append(("event-lock", "true"))
    if event_uuid:
        headers.append(("Event-UUID", event_uuid))
    return encode_sendmsg(uuid, "execute", headers)


def encode_hangup(cause: str = "NORMAL_CLEARING", *, uuid: str | None = None) -> bytes:
    return encode_sendmsg(uuid, "hangup", [("hangup-cause", cause)])


def encode_connect() -> bytes:
    return encode_command("connect")


def encode_myevents(uuid: str | None = None) -> bytes:
    return encode_command("myevents" if not uuid else f"myevents {uuid}")


def encode_linger(seconds: int | None = None) -> bytes:
    return encode_command("linger" if seconds is None else f"linger {int(seconds)}")


def encode_filter(header: str, value: str) -> bytes:
    if " " in header:
        raise ProtocolError(f"filter header {header!r} holds a space", remote=False)
    return encode_command(f"filter {header} {value}")


def encode_exit() -> bytes:
    return encode_command("exit")
