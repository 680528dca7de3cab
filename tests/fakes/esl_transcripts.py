"""Read the real FreeSWITCH transcripts into event templates for the fake peer.

Nothing here invents an event: every template is a recorded event whose
header names, order and raw (URL-encoded) values come from
tests/fixtures/freeswitch-1.10/transcripts; the fake only substitutes ids,
numbers and the few values a scenario changes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "freeswitch-1.10"
TRANSCRIPTS = FIXTURES / "transcripts"

# FreeSWITCH's switch_url_encode() escapes exactly these (plus bytes >= 0x80);
# '/', '(', ')', ',' and '~' stay raw, as the fixtures show.
_UNSAFE = set('\r\n "#%&+:;<=>?@[\\]^`{|}')


def fs_url_encode(value: str) -> str:
    out = []
    for ch in value:
        if ch in _UNSAFE or ord(ch) < 0x20:
            out.append(f"%{ord(ch):02X}")
        elif ord(ch) >= 0x80:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


Subs = Sequence[tuple[re.Pattern[str], str]]


def substitute(value: str, subs: Subs) -> str:
    """``value`` with every pattern's matches replaced, in ONE left-to-right pass: where
    matches overlap the earliest wins (at the same place, the first listed), and what a
    replacement put in is never matched again. Applied one after the other, a recorded
    number's pattern (digits) also matched inside the uuid the previous substitution had
    just put in (hex: ``...-dec2b5550001`` holds the caller id 5550001), renaming our leg
    (tests/unit/test_fake_esl_ids.py); FreeSWITCH never renames a leg."""
    out: list[str] = []
    pos = 0
    while pos <= len(value):
        best: tuple[re.Match[str], str] | None = None
        for pattern, repl in subs:
            m = pattern.search(value, pos)
            if m is not None and (best is None or m.start() < best[0].start()):
                best = (m, repl)
        if best is None:
            break
        m, repl = best
        out.append(value[pos : m.start()])
        out.append(m.expand(repl))
        if m.end() > m.start():
            pos = m.end()
        else:  # an empty match: keep the next character and move past it
            out.append(value[m.start() : m.start() + 1])
            pos = m.start() + 1
    out.append(value[pos:])
    return "".join(out)


@dataclass
class TEvent:
    """One recorded event: raw header pairs in wire order, nested body, timestamp (µs)."""

    name: str
    pairs: list[tuple[str, str]]
    nested: str = ""
    ts: int = 0

    def get(self, key: str) -> str:
        for k, v in self.pairs:
            if k == key:
                return unquote(v)
        return ""

    @property
    def uid(self) -> str:
        return self.get("Unique-ID")

    def render(
        self,
        subs: Iterable[tuple[re.Pattern[str], str]] = (),
        overrides: Mapping[str, str] | None = None,
        nested: str | None = None,
        add: Iterable[tuple[str, str]] = (),
    ) -> TEvent:
        """A copy with regex substitutions on raw values (in one pass: :func:`substitute`),
        decoded ``overrides`` (existing headers keep their place; new ones go before the
        inner Content-Length) and an optional new nested body."""
        subs = list(subs)
        overrides = dict(overrides or {})
        pairs: list[tuple[str, str]] = []
        used: set[str] = set()
        for k, v in self.pairs:
            if k in overrides:
                # every occurrence: FreeSWITCH repeats some headers
                # (Hangup-Cause twice in CHANNEL_HANGUP_COMPLETE)
                v = fs_url_encode(overrides[k])
                used.add(k)
            else:
                v = substitute(v, subs)
            pairs.append((k, v))
        fresh = [(k, v) for k, v in overrides.items() if k not in used]
        extra = [(k, fs_url_encode(v)) for k, v in [*fresh, *add]]
        body = self.nested if nested is None else nested
        if any(k == "Content-Length" for k, _ in pairs):
            pairs = [(k, v) for k, v in pairs if k != "Content-Length"]
        pairs.extend(extra)
        if body:
            pairs.append(("Content-Length", str(len(body.encode()))))
        return TEvent(self.name, pairs, body, self.ts)

    def plain(self) -> bytes:
        head = "\n".join(f"{k}: {v}" for k, v in self.pairs)
        body = (head + "\n\n" + self.nested).encode()
        return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body

    def json(self) -> bytes:
        # Pair by pair, not through a dict: FreeSWITCH writes a repeated header twice
        # (Hangup-Cause in CHANNEL_HANGUP_COMPLETE, originate-answered-json.esl), and
        # ``_body`` last.
        pairs = [(k, unquote(v)) for k, v in self.pairs]
        if self.nested:
            pairs.append(("_body", self.nested))
        text = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs)
        body = ("{" + text + "}").encode()
        return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body


@dataclass
class Frame:
    """One outer message of a transcript: headers, body, and the event if it is one."""

    headers: dict[str, str]
    body: bytes
    event: TEvent | None = None
    raw: bytes = field(default=b"", repr=False)


def split_frames(data: bytes) -> list[Frame]:
    frames: list[Frame] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] == b"\n":
            pos += 1
            continue
        end = data.index(b"\n\n", pos)
        head = data[pos:end].decode()
        headers = dict(line.split(": ", 1) for line in head.split("\n"))
        n = int(headers.get("Content-Length", "0"))
        body = data[end + 2 : end + 2 + n]
        frame = Frame(headers, body, raw=data[pos : end + 2 + n])
        if headers.get("Content-Type") == "text/event-plain":
            inner, _, rest = body.decode().partition("\n\n")
            pairs = [tuple(line.split(": ", 1)) for line in inner.split("\n")]
            ev = TEvent("", [(k, v) for k, v in pairs])
            ev.name = ev.get("Event-Name")
            ev.ts = int(ev.get("Event-Date-Timestamp") or 0)
            if ev.get("Content-Length"):
                ev.nested = rest[: int(ev.get("Content-Length"))]
            frame.event = ev
        frames.append(frame)
        pos = end + 2 + n
    return frames


@functools.cache
def transcript(name: str) -> tuple[Frame, ...]:
    return tuple(split_frames((TRANSCRIPTS / name).read_bytes()))


@functools.cache
def outbound_transcript() -> tuple[tuple[bytes, tuple[Frame, ...]], ...]:
    """The outbound session as (what the client sent, frames FreeSWITCH sent after it)."""
    data = (TRANSCRIPTS / "outbound-socket-ivr.esl.outbound").read_bytes()
    segments = []
    for part in data.split(b"\n>>>SENT>>>\n")[1:]:
        sent, _, received = part.partition(b"<<<\n")
        segments.append((sent, tuple(split_frames(received))))
    return tuple(segments)


@functools.cache
def outbound_session(name: str) -> tuple[TEvent, ...]:
    """Every event FreeSWITCH sent on a recorded outbound session (``X.esl.outbound``),
    the recorder's ``>>>SENT>>>`` blocks left out."""
    data = (TRANSCRIPTS / name).read_bytes()
    received = [part.partition(b"<<<\n")[2] for part in data.split(b"\n>>>SENT>>>\n")[1:]]
    return tuple(f.event for part in received for f in split_frames(part) if f.event is not None)


def events_of(name: str) -> list[TEvent]:
    return [f.event for f in transcript(name) if f.event is not None]


@functools.cache
def api_exchanges(name: str) -> tuple[tuple[str, str], ...]:
    """Each ``api`` command of a recording (from its ``.sent``) with the body FreeSWITCH
    answered, in order (replies carry no id; one api/response per api command)."""
    sent = (TRANSCRIPTS / f"{name}.sent").read_bytes().decode()
    commands = [c.strip("\n") for c in sent.split("\n\n") if c.strip("\n").startswith("api ")]
    bodies = [
        f.body.decode() for f in transcript(name) if f.headers.get("Content-Type") == "api/response"
    ]
    assert len(commands) == len(bodies), f"{name}: {len(commands)} commands, {len(bodies)} replies"
    return tuple((c.removeprefix("api "), b) for c, b in zip(commands, bodies, strict=True))


@functools.cache
def channel_rows(name: str = "show-channels-2-calls.esl") -> tuple[dict[str, str], dict[str, str]]:
    """(our outbound leg's row, the far end's inbound row) of a recorded
    ``show channels as json`` with rows: the column names and order FreeSWITCH uses."""
    for command, body in api_exchanges(name):
        if command == "show channels as json" and '"rows"' in body:
            rows = json.loads(body)["rows"]
            ours = next(r for r in rows if r["direction"] == "outbound")
            far = next(r for r in rows if r["direction"] == "inbound")
            return dict(ours), dict(far)
    raise AssertionError(f"{name}: no show channels reply with rows")
