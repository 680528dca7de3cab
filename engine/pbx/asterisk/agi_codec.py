"""Sans-IO codec for Asterisk's AGI protocol as spoken over FastAGI (``agi://``).

No sockets here: bytes in, frozen dataclasses out, and commands out as bytes.
The transport lives in :mod:`engine.pbx.asterisk.agi_session` and
:mod:`engine.pbx.asterisk.agi_server`.

The wire, as recorded from Asterisk 22.10.1 (tests/fixtures/asterisk-22/transcripts/
fastagi-ivr.ami.agi, plus lines captured from the sandbox and quoted in the tests):

* Asterisk connects and sends the *environment*: ``agi_<name>: <value>`` lines, each ended
  by ``\\n`` (never ``\\r\\n``), then one empty line.
* The script sends one command line; Asterisk answers with one reply line:
  ``200 result=<token>[ (<data>)][ <key>=<value>...]``, ``510 Invalid or unknown command``,
  ``511 Command Not Permitted on a dead channel or intercept routine``, or a multi-line
  usage block ``520-...`` / usage text / ``520 End of proper usage.``.
* Unsolicited: when the channel hangs up, Asterisk writes ``HANGUP`` on a line of its own
  *between* replies. It is not a reply: the reply to the pending command still follows.
  Seen live: ``200 result=-1`` (the step noticed the hangup), ~40 ms later ``HANGUP``; or,
  for a command written after the hangup, ``HANGUP`` and then ``511 ...``.

Text is decoded as UTF-8 with ``surrogateescape``: caller names from carriers are not always
UTF-8, and refusing a call over a mis-encoded display name would be worse than carrying the
odd bytes through unchanged (encoding uses the same error handler, so they round-trip).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl

from engine.core.errors import ProtocolError

__all__ = [
    "MAX_ARGS",
    "AgiEnvironment",
    "AgiReply",
    "HangupNotice",
    "ReplyParser",
    "decode_command",
    "encode_command",
    "parse_environment",
    "parse_reply_line",
]

ENCODING = "utf-8"
ERRORS = "surrogateescape"

# res_agi.c parses at most MAX_ARGS (128) words per command and *silently truncates* the rest,
# so a too-long command must be refused here rather than run with missing arguments.
MAX_ARGS = 128

# Upper bound on environment lines. Asterisk sends ~22 plus one per AGI() argument; the bound
# only exists so a peer that never sends the blank line cannot make us buffer forever.
MAX_ENV_LINES = 512

_ENV_LINE = re.compile(r"(agi_[A-Za-z0-9_]+):(?: (.*))?")
_REPLY_HEAD = re.compile(r"([1-5][0-9]{2})([ -])(.*)")
_RESULT = re.compile(r"result=(\S*)(.*)")
# What may follow the closing parenthesis (or the result token): ``key=value`` pairs only.
_EXTRAS = re.compile(r"(?:\s+[A-Za-z_][A-Za-z0-9_]*=\S*)*\s*")
_EXTRA_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")
_VERB = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")


def _decode(raw: bytes) -> str:
    return raw.decode(ENCODING, ERRORS)


def _strip_eol(raw: bytes) -> bytes:
    # Asterisk ends lines with a bare LF; tolerate CRLF too so a proxy in between does not
    # turn every value into "value\r".
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgiEnvironment:
    """The ``agi_*`` block Asterisk sends when a FastAGI connection opens.

    ``variables`` holds every line as sent (``agi_channel`` -> ``PJSIP/...``), in order.
    ``script`` is the path of the AGI URL without its query string (``ivr``) and ``query``
    the decoded query-string parameters (``agi://host/ivr?flow=main`` -> ``{"flow": "main"}``).
    ``arguments`` are the extra ``AGI(url,arg1,arg2)`` arguments (``agi_arg_1``...).
    """

    variables: Mapping[str, str]
    channel: str
    uniqueid: str
    request: str
    network_script: str
    script: str
    query: Mapping[str, str]
    arguments: tuple[str, ...]


def _split_script(network_script: str, request: str) -> tuple[str, Mapping[str, str]]:
    # Asterisk puts everything after the host's "/" into agi_network_script, query string
    # included ("ivr?flow=main", checked live), so routing on it verbatim (as panoramisk does)
    # breaks as soon as a URL carries parameters. agi_request always has the full URL; prefer
    # it, fall back to the script when an old Asterisk omits it.
    source = network_script
    if request.startswith("agi://") and "/" in request[len("agi://") :]:
        source = request[len("agi://") :].split("/", 1)[1]
    path, _, qs = source.partition("?")
    query: dict[str, str] = {}
    # keep_blank_values: "?flow=" must read as flow="" (a dialplan variable that was empty),
    # not as if the parameter were absent.
    for key, value in parse_qsl(qs, keep_blank_values=True, encoding=ENCODING, errors=ERRORS):
        query[key] = value
    return path, MappingProxyType(query)


def parse_environment(block: bytes) -> AgiEnvironment:
    """Parse the environment block (``agi_x: y`` lines, optionally with the final blank line).

    Raises :class:`ProtocolError` naming the first line that is not ``agi_<name>: <value>``,
    or when ``agi_channel`` / ``agi_uniqueid`` are missing (without them the call cannot be
    identified, so nothing useful can be done with the connection).
    """
    lines = block.split(b"\n")
    # A trailing "\n" (and the blank terminator line) produce empty strings at the end; they
    # end the block. An empty line anywhere else means two blocks were glued together.
    while lines and _strip_eol(lines[-1]) == b"":
        lines.pop()
    if len(lines) > MAX_ENV_LINES:
        raise ProtocolError(
            f"AGI environment: {len(lines)} lines, expected at most {MAX_ENV_LINES}"
        )
    variables: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        text = _decode(_strip_eol(raw))
        match = _ENV_LINE.fullmatch(text)
        if match is None:
            raise ProtocolError(
                f"AGI environment line {number}: expected 'agi_<name>: <value>', got {text!r}"
            )
        # "agi_accountcode: " (empty value) is normal; Asterisk always writes ": ".
        variables[match.group(1)] = match.group(2) or ""
    for required in ("agi_channel", "agi_uniqueid"):
        if not variables.get(required):
            raise ProtocolError(f"AGI environment: missing {required} (got {sorted(variables)})")
    arguments: list[str] = []
    while f"agi_arg_{len(arguments) + 1}" in variables:
        arguments.append(variables[f"agi_arg_{len(arguments) + 1}"])
    network_script = variables.get("agi_network_script", "")
    request = variables.get("agi_request", "")
    script, query = _split_script(network_script, request)
    return AgiEnvironment(
        variables=MappingProxyType(variables),
        channel=variables["agi_channel"],
        uniqueid=variables["agi_uniqueid"],
        request=request,
        network_script=network_script,
        script=script,
        query=query,
        arguments=tuple(arguments),
    )


# --------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One complete reply to one command.

    ``code``: 200 success, 100 provisional ("Trying..."), 510 unknown command, 511 not
    permitted on a dead channel, 520 usage error. For 200, ``result`` is the raw token after
    ``result=`` (``"1234"``, ``"-1"``, or ``""`` for ``GET DATA`` timing out with no digit),
    ``data`` the text in parentheses (``"timeout"``, ``"dtmf"``, a variable's value) and
    ``extras`` the trailing ``key=value`` pairs (``endpos``). ``rest`` is everything after the
    result token, unparsed. For 5xx, ``message`` is the text (520: all usage lines, joined).
    """

    code: int
    result: str = ""
    data: str | None = None
    extras: Mapping[str, str] = field(default_factory=dict)
    rest: str = ""
    message: str = ""
    lines: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def result_int(self) -> int | None:
        """``result`` as an int, or None when it is empty or not a number."""
        try:
            return int(self.result)
        except ValueError:
            return None

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"

    @property
    def dead_channel(self) -> bool:
        """511: Asterisk refuses the command because the channel is already hung up."""
        return self.code == 511


@dataclass(frozen=True, slots=True)
class HangupNotice:
    """The unsolicited ``HANGUP`` line: the channel is gone. Not a reply to anything."""

    line: str = "HANGUP"


def _parse_success(code: int, text: str, line: str) -> AgiReply:
    body = text
    match = _RESULT.match(body)
    if match is None:
        raise ProtocolError(f"AGI reply: expected '{code} result=<value>', got {line!r}")
    result, rest = match.group(1), match.group(2)
    data: str | None = None
    tail = rest
    stripped = rest.lstrip(" ")
    if stripped.startswith("("):
        # The parenthesised part may itself contain ")" -- it is a variable's raw value for
        # GET VARIABLE ("200 result=1 (a) b)"). Choose the right-most ")" after which only
        # key=value pairs remain: exact for GET VARIABLE (nothing follows the value) and for
        # RECORD FILE ("(timeout) endpos=0").
        opened = len(rest) - len(stripped)
        for close in range(len(rest) - 1, opened, -1):
            if rest[close] == ")" and _EXTRAS.fullmatch(rest, close + 1):
                data = rest[opened + 1 : close]
                tail = rest[close + 1 :]
                break
        else:
            raise ProtocolError(f"AGI reply: unbalanced '(' in {line!r}")
    if _EXTRAS.fullmatch(tail) is None:
        if code == 100:
            # "100 result=0 Trying..." carries free text; it is only a keep-alive.
            return AgiReply(code=code, result=result, rest=rest, message=text, lines=(line,))
        raise ProtocolError(
            f"AGI reply: expected '(data)' and/or key=value pairs after result, got {line!r}"
        )
    extras = dict(_EXTRA_PAIR.findall(tail))
    return AgiReply(
        code=code,
        result=result,
        data=data,
        extras=MappingProxyType(extras),
        rest=rest,
        lines=(line,),
    )


def parse_reply_line(raw: bytes) -> AgiReply | HangupNotice:
    """Parse one complete single-line reply (or the HANGUP notice).

    Multi-line ``520-`` blocks need state; use :class:`ReplyParser` for a stream.
    """
    line = _decode(_strip_eol(raw))
    if line == "HANGUP":
        return HangupNotice(line)
    match = _REPLY_HEAD.fullmatch(line)
    if match is None:
        raise ProtocolError(f"AGI reply: expected '<3-digit code> ...' or 'HANGUP', got {line!r}")
    code, sep, text = int(match.group(1)), match.group(2), match.group(3)
    if sep == "-":
        raise ProtocolError(f"AGI reply: {line!r} opens a multi-line block; use ReplyParser")
    if code in (100, 200):
        return _parse_success(code, text, line)
    return AgiReply(code=code, message=text, lines=(line,))


class ReplyParser:
    """Incremental reply parser: feed it lines, get replies out.

    ``feed_line`` returns an :class:`AgiReply` once a reply is complete, a
    :class:`HangupNotice` for the unsolicited ``HANGUP`` line, or None while inside a
    ``520-`` usage block. Panoramisk reads exactly one extra line after ``520-`` and leaves
    the rest of the block to be taken as the next command's reply; Asterisk 22 sends the
    usage text over several lines until ``520 End of proper usage.``, so we collect to there.
    """

    def __init__(self) -> None:
        self._usage: list[str] | None = None

    @property
    def in_block(self) -> bool:
        return self._usage is not None

    def feed_line(self, raw: bytes) -> AgiReply | HangupNotice | None:
        if self._usage is not None:
            line = _decode(_strip_eol(raw))
            self._usage.append(line)
            if line.startswith("520 "):
                lines = tuple(self._usage)
                self._usage = None
                message = "\n".join(part[4:] if part.startswith("520") else part for part in lines)
                return AgiReply(code=520, message=message, lines=lines)
            # HANGUP inside a usage block is ambiguous (it could be usage text); Asterisk
            # writes the block in one go from one thread, so it cannot interleave there.
            return None
        head = _REPLY_HEAD.fullmatch(_decode(_strip_eol(raw)))
        if head is not None and head.group(2) == "-":
            if head.group(1) != "520":
                raise ProtocolError(
                    "AGI reply: only 520 opens a multi-line block, got "
                    f"{_decode(_strip_eol(raw))!r}"
                )
            self._usage = [_decode(_strip_eol(raw))]
            return None
        return parse_reply_line(raw)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def _quote(arg: str) -> str:
    # res_agi.c parse_args(): words split on space/tab; '"' toggles quoting; '\' escapes the
    # next character inside or outside quotes. An empty argument must be written as "" (e.g.
    # STREAM FILE's escape digits), so quote when empty or when a special character appears.
    if arg and not any(ch in arg for ch in ' \t"\\'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_command(verb: str, *args: str | int) -> bytes:
    """Encode one command line, e.g. ``encode_command("GET DATA", "beep", 3000, 4)``.

    ``verb`` is the command's words (letters and single spaces); each argument is quoted
    only when needed. Refuses (``ProtocolError(remote=False)``) CR, LF and NUL in arguments:
    a newline would end the command early and the remainder would run as a second command.
    """
    if _VERB.fullmatch(verb) is None:
        raise ProtocolError(
            f"AGI command: verb must be words of letters separated by one space, got {verb!r}",
            remote=False,
        )
    words = verb.split(" ")
    if len(words) + len(args) > MAX_ARGS - 1:
        raise ProtocolError(
            f"AGI command {verb}: {len(words) + len(args)} words, Asterisk keeps only "
            f"{MAX_ARGS - 1} and drops the rest silently",
            remote=False,
        )
    parts = [verb]
    for position, arg in enumerate(args, start=1):
        text = str(arg) if isinstance(arg, int) else arg
        if not isinstance(text, str):
            raise ProtocolError(
                f"AGI command {verb}: argument {position} must be str or int, got {type(arg)}",
                remote=False,
            )
        bad = next((ch for ch in text if ch in "\r\n\x00"), None)
        if bad is not None:
            raise ProtocolError(
                f"AGI command {verb}: argument {position} contains {bad!r}; AGI commands are "
                "single lines and NUL ends a C string",
                remote=False,
            )
        parts.append(_quote(text))
    return (" ".join(parts) + "\n").encode(ENCODING, ERRORS)


def decode_command(raw: bytes) -> tuple[str, ...]:
    """Split a command line into words exactly as Asterisk's ``parse_args()`` does.

    The inverse of :func:`encode_command` (used by fake Asterisk peers in tests to compare
    what was sent with a recorded transcript regardless of optional quoting).
    """
    text = _decode(_strip_eol(raw))
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quoted = False
    escaped = False
    for ch in text:
        if ch == '"' and not escaped:
            quoted = not quoted
            # An opening quote starts a word even if it ends up empty: '""' is one empty arg.
            in_word = True
            continue
        if ch in " \t" and not quoted and not escaped:
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        current.append(ch)
        in_word = True
        escaped = False
    if quoted:
        raise ProtocolError(f"AGI command: unterminated quote in {text!r}")
    if in_word:
        words.append("".join(current))
    return tuple(words)


def iter_transcript(text: str) -> Iterable[tuple[str, str]]:
    """Yield ``(direction, line)`` from a ``.ami.agi`` transcript (``>>>``/``<<<`` lines).

    Test helper kept here so the transcript format is described in one place; the
    environment block is yielded as one ``("env", block)`` item.
    """
    lines = text.split("\n")
    if not lines or lines[0] != "<<< AGI ENV":
        raise ProtocolError("AGI transcript: expected first line '<<< AGI ENV'", remote=False)
    index = 1
    env: list[str] = []
    while index < len(lines) and lines[index] != "":
        env.append(lines[index])
        index += 1
    yield ("env", "\n".join(env) + "\n\n")
    for line in lines[index + 1 :]:
        if not line:
            continue
        if line.startswith(">>> "):
            yield (">>>", line[4:])
        elif line.startswith("<<< "):
            yield ("<<<", line[4:])
        else:
            raise ProtocolError(f"AGI transcript: unexpected line {line!r}", remote=False)
