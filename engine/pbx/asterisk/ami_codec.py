"""Sans-IO codec for the Asterisk Manager Interface (AMI) wire format.

No sockets, no asyncio, no clocks: bytes go in, frozen dataclasses come out, and
bytes come out of :func:`encode_action`. The asyncio transport lives in
``ami_client.py``. The design follows python-hyper/h11: explicit parser states,
errors that say whose fault they are (``ProtocolError.remote``), and comments
that explain *why* each wire quirk is handled the way it is.

The AMI wire format (as spoken by Asterisk 22, see the recorded transcripts in
``tests/fixtures/asterisk-22/transcripts``):

* On connect the server sends ONE line without a colon, the banner
  ``Asterisk Call Manager/11.0.0`` (the version is the *AMI* version, not the
  Asterisk version: Asterisk 22 still says 11.0.0).
* After that everything is a message: ``Name: value`` lines ended by CRLF, and
  an empty line ends the message. A message whose first header is ``Response``
  answers an action; one whose first header is ``Event`` is an event. Events
  and responses interleave freely on the same connection.
* Header names repeat (``Variable`` in actions, ``Output`` in Command replies),
  so headers are kept as an ordered tuple of pairs, never a plain dict.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from engine.core.errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Action",
    "AmiMessage",
    "AmiParser",
    "Banner",
    "Event",
    "EventFilter",
    "Headers",
    "ParserState",
    "ProtocolError",
    "Response",
    "encode_action",
]

#: Biggest single message we accept. Real AMI messages are a few hundred bytes;
#: the largest legitimate ones are ``Command`` replies (one ``Output`` header per
#: CLI line) and events with many ``ChanVariable`` headers. A peer that sends a
#: megabyte without a blank line is broken or hostile, and without a cap the
#: buffer would grow without bound.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024

_BANNER_PREFIX = "Asterisk Call Manager/"


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Headers:
    """Ordered AMI headers, duplicates kept, with case-insensitive lookup.

    AMI header names are case-insensitive on input to Asterisk (manager.c uses
    ``strncasecmp``), and Asterisk itself is not consistent about case across
    modules (``Uniqueid`` vs ``UniqueID``), so lookups fold case. ``items``
    keeps the exact bytes-as-text the peer sent, for logs and round-trips.
    """

    items: tuple[tuple[str, str], ...] = ()
    # First value per lower-cased name, built once so ``get`` is O(1) on hot paths.
    _first: dict[str, str] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @classmethod
    def of(cls, pairs: Sequence[tuple[str, str]]) -> Headers:
        first: dict[str, str] = {}
        for name, value in pairs:
            first.setdefault(name.lower(), value)
        return cls(tuple(pairs), first)

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name`` (case-insensitive), or ``default``."""
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in wire order (e.g. repeated ``Output``)."""
        key = name.lower()
        return [v for n, v in self.items if n.lower() == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_dict(self) -> dict[str, str]:
        """First value per name, original case of the first occurrence."""
        out: dict[str, str] = {}
        for name, value in self.items:
            out.setdefault(name, value)
        return out


@dataclass(frozen=True, slots=True)
class Banner:
    """The greeting line; ``version`` is the AMI protocol version (``11.0.0``)."""

    version: str


@dataclass(frozen=True, slots=True)
class Response:
    """The reply to one action (``Response: Success|Error|Goodbye|Follows``)."""

    headers: Headers

    @property
    def status(self) -> str:
        return self.headers.get("Response", "") or ""

    @property
    def ok(self) -> bool:
        # "Goodbye" answers Logoff and is a success too.
        return self.status.lower() in ("success", "goodbye")

    @property
    def action_id(self) -> str | None:
        return self.headers.get("ActionID")

    @property
    def message(self) -> str:
        return self.headers.get("Message", "") or ""


@dataclass(frozen=True, slots=True)
class Event:
    """An event. ``name`` is the value of the ``Event`` header."""

    name: str
    headers: Headers

    @property
    def action_id(self) -> str | None:
        # Events that belong to an action (list items, ``...Complete``,
        # ``OriginateResponse``) carry the action's ActionID.
        return self.headers.get("ActionID")

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


@dataclass(frozen=True, slots=True)
class Action:
    """An action as a *server* sees it (used by fakes and for round-trip tests)."""

    name: str
    action_id: str | None
    headers: Headers


AmiMessage = Banner | Response | Event


# --------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------


class ParserState(enum.Enum):
    #: Waiting for the banner line (client role, fresh connection only).
    BANNER = "banner"
    #: Between messages: blank lines are skipped here.
    IDLE = "idle"
    #: Inside a message, collecting header lines until the blank line.
    HEADERS = "headers"
    #: A ProtocolError was raised for the current message; its remaining lines
    #: are discarded up to and including the next blank line, which is the only
    #: way to find the next message boundary again.
    SKIPPING = "skipping"


class AmiParser:
    """Incremental AMI parser. Feed it any chunks; it returns whole messages.

    ``role="client"`` (default) parses what Asterisk sends: a banner first, then
    ``Response``/``Event`` messages. ``role="server"`` parses what a client
    sends: no banner, ``Action`` messages (used by the fake AMI server and by
    round-trip tests of recorded client bytes).

    Errors: wire garbage (a header line without a colon, a message with neither
    ``Event`` nor ``Response``, a message over ``max_message_bytes``) raises
    :class:`ProtocolError` with ``remote=True`` naming the line number and the
    offending line. The parser is NOT lost afterwards: the broken message is
    skipped up to its terminating blank line, messages completed earlier in the
    same chunk are kept, and the next :meth:`feed` call (``feed(b"")`` is fine)
    returns them together with whatever follows. No reset is needed.

    Byte-level chunking never changes the result: splitting the same stream
    anywhere (even byte by byte) yields the same messages and the same errors.
    """

    def __init__(
        self,
        *,
        role: Literal["client", "server"] = "client",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._role = role
        self._max = max_message_bytes
        self._buf = bytearray()
        self._state = ParserState.BANNER if role == "client" else ParserState.IDLE
        self._pairs: list[tuple[str, str]] = []
        self._msg_bytes = 0
        self._msg_first_line = 0
        self._line_no = 0
        # Messages completed before an error was raised, returned by the next feed().
        self._ready: list[AmiMessage | Action] = []

    @property
    def state(self) -> ParserState:
        return self._state

    def feed(self, data: bytes) -> list[AmiMessage]:
        """Consume ``data``; return every message it completes (client role)."""
        if self._role != "client":
            raise ProtocolError("feed() is for the client role; use feed_actions()", remote=False)
        return self._feed(data)  # type: ignore[return-value]

    def feed_actions(self, data: bytes) -> list[Action]:
        """Consume ``data``; return every action it completes (server role)."""
        if self._role != "server":
            raise ProtocolError("feed_actions() is for the server role", remote=False)
        return self._feed(data)  # type: ignore[return-value]

    # The loop below is the hot path of the whole AMI stack (the bench parses
    # every transcript with it), so it works on one bytearray with an offset and
    # compacts it once per call instead of slicing per line.
    def _feed(self, data: bytes) -> list[AmiMessage | Action]:
        out = self._ready
        self._ready = []
        buf = self._buf
        buf += data
        pos = 0
        try:
            while True:
                if self._state is ParserState.IDLE:
                    # Fast path: a whole CRLF message is in the buffer. Decode
                    # it once and split, instead of line by line. Anything
                    # unusual (bare LF, garbage, oversize) falls through to the
                    # line-by-line path below, which owns all error handling.
                    fast = self._fast_message(buf, pos)
                    if fast is not None:
                        msg, pos = fast
                        if msg is not None:
                            out.append(msg)
                        continue
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    break
                raw = bytes(buf[pos:nl])
                line_len = nl + 1 - pos
                pos = nl + 1
                self._line_no += 1
                msg = self._line(raw, line_len)
                if msg is not None:
                    out.append(msg)
            # An unterminated line also counts against the cap, otherwise a
            # peer could stream an endless line and we would buffer it all.
            pending = len(buf) - pos
            if self._state is not ParserState.SKIPPING and self._msg_bytes + pending > self._max:
                in_message = self._state is ParserState.HEADERS
                start = self._msg_first_line if in_message else self._line_no + 1
                self._enter_skip()
                # Drop the partial line now: the whole message is being skipped.
                pos = len(buf)
                raise ProtocolError(
                    f"AMI message starting at line {start} exceeds {self._max} bytes "
                    "without an end-of-message blank line"
                )
        except ProtocolError:
            self._ready = out
            del buf[:pos]
            raise
        if self._state is ParserState.SKIPPING and len(buf) - pos > self._max:
            # While skipping we keep nothing but the unterminated tail; bound it too.
            pos = len(buf)
        del buf[:pos]
        return out

    def _fast_message(
        self, buf: bytearray, pos: int
    ) -> tuple[AmiMessage | Action | None, int] | None:
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0 or end + 4 - pos > self._max:
            return None
        if buf.startswith(b"\r\n", pos):
            return None  # leading blank line: let the line path skip it
        text = buf[pos:end].decode("utf-8", "replace")
        lines = text.split("\r\n")
        if text.count("\n") != len(lines) - 1:
            return None  # bare LF inside: line path
        pairs: list[tuple[str, str]] = []
        append = pairs.append
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep or not name:
                return None  # garbage: the line path reports it with its line number
            append((name, value[1:] if value[:1] == " " else value))
        wanted = ("action",) if self._role == "server" else ("event", "response")
        # The first header classifies a message (Asterisk sends Event/Response
        # first); only an odd one needs the scan of every header.
        if pairs[0][0].lower() not in wanted and not any(n.lower() in wanted for n, _ in pairs):
            return None  # unclassifiable: the line path raises after consuming it
        self._msg_first_line = self._line_no + 1
        self._line_no += len(pairs) + 1
        self._pairs = pairs
        return self._finish(), end + 4

    def _enter_skip(self) -> None:
        self._state = ParserState.SKIPPING
        self._pairs = []
        self._msg_bytes = 0

    def _line(self, raw: bytes, line_len: int) -> AmiMessage | Action | None:
        # Asterisk always sends CRLF, but netcat-style peers and some proxies
        # send bare LF; accept both by stripping one trailing CR.
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        state = self._state

        if state is ParserState.SKIPPING:
            if not raw:
                self._state = ParserState.IDLE
            return None

        if state is ParserState.BANNER:
            # Decode leniently: the banner is ASCII in practice.
            text = raw.decode("utf-8", "replace")
            self._state = ParserState.IDLE
            if text.startswith(_BANNER_PREFIX):
                return Banner(text[len(_BANNER_PREFIX) :].strip())
            if not text:
                # Tolerate a stray blank line before the banner; keep waiting.
                self._state = ParserState.BANNER
                return None
            # Not a banner. If it looks like a header, the peer skipped the
            # banner (some AMI proxies do); parse it as the first header line.
            if ":" not in text:
                self._state = ParserState.SKIPPING
                raise ProtocolError(
                    f"AMI line {self._line_no}: expected the banner "
                    f"'{_BANNER_PREFIX}<version>', got {text!r}"
                )
            state = ParserState.IDLE

        if not raw:
            if state is ParserState.IDLE:
                # Extra blank lines between messages carry no meaning.
                return None
            return self._finish()

        if state is ParserState.IDLE:
            self._state = ParserState.HEADERS
            self._msg_first_line = self._line_no
            self._msg_bytes = 0

        self._msg_bytes += line_len
        if self._msg_bytes > self._max:
            first = self._msg_first_line
            self._enter_skip()
            raise ProtocolError(f"AMI message starting at line {first} exceeds {self._max} bytes")

        # Values are mostly ASCII but caller names and channel variables can be
        # anything; "replace" guarantees wire bytes can never crash the parser.
        text = raw.decode("utf-8", "replace")
        colon = text.find(":")
        if colon <= 0:
            first = self._msg_first_line
            self._enter_skip()
            what = "a header name before ':'" if colon == 0 else "'Name: value'"
            raise ProtocolError(
                f"AMI line {self._line_no} (message starting at line {first}): "
                f"expected {what}, got {text!r}; the rest of this message is skipped"
            )
        name = text[:colon]
        # Split at the FIRST colon only: values legitimately contain ': '
        # (e.g. ``Message: Invalid/unknown command: Bogus. ...``). Exactly one
        # space follows the colon on the wire; an empty value is sent as
        # ``AccountCode: `` (trailing space), so strip one leading space and
        # keep the rest of the value verbatim.
        value = text[colon + 1 :]
        if value.startswith(" "):
            value = value[1:]
        self._pairs.append((name, value))
        return None

    def _finish(self) -> AmiMessage | Action:
        pairs = self._pairs
        first_line = self._msg_first_line
        self._pairs = []
        self._state = ParserState.IDLE
        headers = Headers.of(pairs)
        first = pairs[0][0].lower()
        if self._role == "server":
            action = headers.get("Action")
            if action is None:
                raise ProtocolError(
                    f"AMI message at line {first_line}: expected an 'Action' header, "
                    f"got {pairs[0][0]}: {pairs[0][1]!r}"
                )
            return Action(action, headers.get("ActionID"), headers)
        # Classify by the FIRST header, which is what Asterisk always sends
        # first. ``OriginateResponse`` is an Event that also carries a
        # ``Response: Failure`` header further down, so "has a Response header"
        # would be the wrong test.
        if first == "event":
            return Event(pairs[0][1], headers)
        if first == "response":
            return Response(headers)
        # Be lenient with peers that reorder headers, but never guess when both exist.
        name = headers.get("Event")
        if name is not None:
            return Event(name, headers)
        if "Response" in headers:
            return Response(headers)
        raise ProtocolError(
            f"AMI message at line {first_line}: expected an 'Event' or 'Response' header, "
            f"first header was {pairs[0][0]}: {pairs[0][1]!r}"
        )


# --------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------


def _check(kind: str, text: str, *, is_name: bool) -> None:
    # A CR or LF inside a header would let a value smuggle extra headers or a
    # whole extra action into the stream (header injection): refuse, it is our
    # bug (remote=False), never the peer's.
    if "\r" in text or "\n" in text:
        raise ProtocolError(f"AMI {kind} {text!r} contains CR or LF", remote=False)
    if is_name:
        if not text:
            raise ProtocolError(f"AMI {kind} is empty", remote=False)
        if ":" in text or text != text.strip():
            raise ProtocolError(
                f"AMI {kind} {text!r} must not contain ':' or surrounding spaces", remote=False
            )


def encode_action(action: str, action_id: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """Encode one action.

    ``headers`` is a sequence of pairs so a name may repeat (Originate takes
    one ``Variable: NAME=value`` header per variable). ``ActionID`` is written
    last, after the other headers, which is byte-for-byte what the recorded
    client sent (``*.ami.sent``); Asterisk does not care about order.

    Raises :class:`ProtocolError` (``remote=False``) for CR/LF anywhere, an
    empty or colon-bearing header name, or ``Action``/``ActionID`` passed in
    ``headers`` (they have their own parameters).
    """
    _check("action name", action, is_name=True)
    _check("ActionID", action_id, is_name=False)
    if not action_id:
        raise ProtocolError("AMI ActionID is empty", remote=False)
    parts = [f"Action: {action}\r\n"]
    for name, value in headers:
        _check("header name", name, is_name=True)
        _check(f"value of header {name!r}", value, is_name=False)
        if name.lower() in ("action", "actionid"):
            raise ProtocolError(
                f"AMI header {name!r} must be given as a parameter, not in headers", remote=False
            )
        parts.append(f"{name}: {value}\r\n")
    parts.append(f"ActionID: {action_id}\r\n\r\n")
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------
# Event filters
# --------------------------------------------------------------------------

# Names inside the advanced criteria syntax end at ',' or ')', so only plain
# identifiers are allowed there (every AMI event and header name is one).
_FILTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True, slots=True)
class EventFilter:
    """One *include* filter in Asterisk's advanced filter syntax (Asterisk 20.11+/22).

    ``EventFilter("Hangup")`` lets every ``Hangup`` event through;
    ``EventFilter("VarSet", "Variable", "AMDSTATUS")`` only the ``VarSet``
    events whose ``Variable`` header is exactly ``AMDSTATUS``. Once a session
    has one include filter, Asterisk sends it only the events some include
    filter matches, so the set must name every event the reader needs.

    Two spellings of the same filter: :meth:`action_headers` for the
    ``Filter`` action sent after Login (per session, gone at disconnect) and
    :meth:`conf_line` for ``eventfilter`` in manager.conf (per user). Asterisk
    matches event names, header names and the value case-sensitively.
    """

    name: str
    header: str = ""
    value: str = ""

    def __post_init__(self) -> None:
        if not _FILTER_NAME.match(self.name):
            raise ProtocolError(f"event filter: bad event name {self.name!r}", remote=False)
        if self.header and not _FILTER_NAME.match(self.header):
            raise ProtocolError(f"event filter: bad header name {self.header!r}", remote=False)
        if bool(self.header) != bool(self.value):
            raise ProtocolError(
                f"event filter on {self.name}: a header needs a value and a value needs a header",
                remote=False,
            )
        _check(f"event filter value for {self.name}", self.value, is_name=False)

    def criteria(self) -> str:
        """``MatchCriteria`` text, e.g. ``action(include),name(Hangup)``."""
        text = f"action(include),name({self.name})"
        if self.header:
            # method(exact): the whole header value must equal ``value``; no
            # regex, so a value can never be misread as a pattern.
            text += f",header({self.header}),method(exact)"
        return text

    def action_headers(self) -> list[tuple[str, str]]:
        """Headers of ``Action: Filter`` adding this filter to the session.

        ``Filter`` is sent even when empty: with ``method`` left at ``none``
        Asterisk ignores it (22.10.1 answers ``Response: Success``).
        """
        return [("Operation", "Add"), ("MatchCriteria", self.criteria()), ("Filter", self.value)]

    def conf_line(self) -> str:
        """The same filter as a manager.conf user option."""
        return f"eventfilter({self.criteria()}) = {self.value}".rstrip()
