"""``AgiCallSession``: the :class:`~engine.pbx.base.CallSession` façade over one FastAGI socket.

One command at a time, each written with :func:`encode_command` and answered through
:class:`ReplyParser`; panoramisk's ``Request.send_command`` is not used (see docs/fastagi.md
for why: it takes an unsolicited ``HANGUP`` line for the reply and desynchronises, reads one
line of a multi-line 520 block, raises ``ValueError`` on a closed socket and has no timeout).

Hang-up rules, all checked against the sandbox Asterisk 22:

* ``511`` (command refused on a dead channel) -> :class:`HangupDuringSession`.
* ``HANGUP`` notice -> remembered; the reply it preceded still decides the current step.
* ``200 result=-1`` is *ambiguous*: it is what a step returns when the caller hangs up, but
  also ``STREAM FILE`` of a missing file (``200 result=-1 endpos=0`` on a live channel).
  We resolve it with a ``CHANNEL STATUS`` probe: on a hung-up channel Asterisk processes
  the hangup (and writes ``HANGUP``) before it reads the probe, which then gets 511; on a
  live channel the probe gets ``200 result=<state>`` and the step failed for another reason
  (:class:`ActionFailed`). Treating every -1 as a hangup would report a typo in a prompt
  name as "caller abandoned".
* The socket closing (EOF/reset) mid-step -> :class:`HangupDuringSession`: the call is no
  longer reachable from here, whatever the reason.
* No reply in time -> :class:`ActionTimeout`, and the connection is closed: the reply may
  still arrive later and would be read as the next command's, so the session cannot be
  reused. Closing makes Asterisk's ``AGI()`` return and the dialplan continue.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import structlog

from engine.core.errors import ActionFailed, ActionTimeout, PbxUnavailable, ProtocolError
from engine.pbx.asterisk.agi_codec import (
    AgiEnvironment,
    AgiReply,
    HangupNotice,
    ReplyParser,
    encode_command,
)
from engine.pbx.base import HangupDuringRecord, HangupDuringSession, RecordedTake

__all__ = ["DTMF_DIGITS", "AgiCallSession"]

DTMF_DIGITS = "0123456789*#ABCD"
# Asterisk's "wav" format is 16-bit linear at 8 kHz: RECORD FILE's endpos counts its samples.
_WAV_RATE = 8000
# STREAM FILE escape digits used when a prompt precedes a WAIT FOR DIGIT loop: any key stops
# the prompt (barge-in) and counts as the first digit.
_BARGE_IN_DIGITS = "0123456789*#"


class AgiCallSession:
    """One call's IVR session over FastAGI. Implements ``CallSession``.

    ``step_timeout_s`` bounds commands whose reply is immediate (ANSWER, GET/SET VARIABLE,
    HANGUP) and is the slack added to steps that wait on the caller. ``prompt_timeout_s``
    bounds playing one prompt (AGI gives no duration up front). These are guards against a
    wedged Asterisk, not IVR behaviour: digit timeouts are passed to Asterisk itself.
    """

    def __init__(
        self,
        environment: AgiEnvironment,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        step_timeout_s: float = 10.0,
        prompt_timeout_s: float = 300.0,
        logger: Any = None,
    ) -> None:
        if step_timeout_s <= 0 or prompt_timeout_s <= 0:
            raise ValueError("step_timeout_s and prompt_timeout_s must be > 0")
        self._env = environment
        self._reader = reader
        self._writer = writer
        self._step_timeout_s = step_timeout_s
        self._prompt_timeout_s = prompt_timeout_s
        self._parser = ReplyParser()
        self._lock = asyncio.Lock()
        self._hangup_seen = False
        self._closed = False
        variables: dict[str, str] = dict(environment.query)
        # Environment wins over the URL: agi_* values come from Asterisk itself and must not
        # be overridable by whoever wrote the AGI URL in the dialplan.
        variables.update(environment.variables)
        self._variables: Mapping[str, str] = MappingProxyType(variables)
        base = logger if logger is not None else structlog.get_logger("engine.pbx.asterisk.agi")
        self._log = base.bind(call_id=environment.uniqueid, channel=environment.channel)

    # ------------------------------------------------------------------ identity

    @property
    def call_id(self) -> str:
        """The channel's Asterisk uniqueid (``agi_uniqueid``)."""
        return self._env.uniqueid

    @property
    def channel(self) -> str:
        return self._env.channel

    @property
    def environment(self) -> AgiEnvironment:
        return self._env

    @property
    def variables(self) -> Mapping[str, str]:
        """``agi_*`` environment plus the AGI URL's query parameters (``flow``...)."""
        return self._variables

    @property
    def hung_up(self) -> bool:
        """True once Asterisk told us the channel is gone (HANGUP, 511, confirmed -1)."""
        return self._hangup_seen

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ CallSession

    async def answer(self) -> None:
        reply = await self.command("ANSWER")
        await self._require_not_minus_one(reply, "ANSWER")

    async def play(self, prompt: str) -> None:
        """STREAM FILE with no escape digits: the prompt always plays to the end. A file
        named with its ``.wav`` (a message the IVR ``record`` step took) is given without
        it, as RECORD FILE took it: Asterisk adds each format's extension itself."""
        _require_prompt(prompt)
        if prompt.startswith("/") and prompt.endswith(".wav"):
            prompt = prompt[: -len(".wav")]
        reply = await self.command(
            "STREAM FILE", prompt, "", timeout_s=self._prompt_timeout_s + self._step_timeout_s
        )
        await self._require_not_minus_one(reply, f"STREAM FILE {prompt}")

    async def get_digits(
        self, prompt: str, max_digits: int, timeout_s: float, terminators: str = "#"
    ) -> str:
        """Collect up to ``max_digits`` DTMF digits; ``timeout_s`` is the wait for each digit.

        A terminator ends collection and is not returned. Timing out returns what was
        collected so far (possibly ``""``). With a prompt and the default ``#`` terminator we
        use one ``GET DATA`` (Asterisk's own collection; its terminator is hard-wired to
        ``#``). Otherwise -- no prompt, or other terminators -- the prompt is played with
        every key as barge-in and digits are read one by one with ``WAIT FOR DIGIT``.
        """
        if max_digits < 1:
            raise ValueError(f"get_digits: max_digits must be >= 1, got {max_digits}")
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"get_digits: timeout_s must be a positive number, got {timeout_s}")
        bad = [ch for ch in terminators if ch not in DTMF_DIGITS]
        if bad:
            raise ValueError(f"get_digits: terminators must be DTMF digits, got {bad!r}")
        timeout_ms = max(1, round(timeout_s * 1000))
        if prompt and terminators == "#":
            budget = self._prompt_timeout_s + timeout_s * (max_digits + 1) + self._step_timeout_s
            reply = await self.command("GET DATA", prompt, timeout_ms, max_digits, timeout_s=budget)
            await self._require_not_minus_one(reply, f"GET DATA {prompt}")
            # "200 result=12 (timeout)" = partial entry then silence; the digits still count.
            return reply.result
        digits = ""
        if prompt:
            reply = await self.command(
                "STREAM FILE",
                prompt,
                _BARGE_IN_DIGITS,
                timeout_s=self._prompt_timeout_s + self._step_timeout_s,
            )
            await self._require_not_minus_one(reply, f"STREAM FILE {prompt}")
            pressed = reply.result_int or 0
            if pressed > 0:  # the ASCII code of the key that interrupted the prompt
                if chr(pressed) in terminators:
                    return digits
                digits += chr(pressed)
        while len(digits) < max_digits:
            reply = await self.command(
                "WAIT FOR DIGIT", timeout_ms, timeout_s=timeout_s + self._step_timeout_s
            )
            await self._require_not_minus_one(reply, "WAIT FOR DIGIT")
            code = reply.result_int
            if code is None:
                raise ActionFailed(
                    f"AGI WAIT FOR DIGIT on {self.channel}: expected a number, got {reply.lines}"
                )
            if code == 0:  # timeout
                break
            if chr(code) in terminators:
                break
            digits += chr(code)
        return digits

    async def get_var(self, name: str) -> str | None:
        """GET VARIABLE: ``result=0`` means unset (None); ``result=1 (value)`` the value.

        Asterisk permits this on a dead channel, so it works after a hangup too.
        """
        reply = await self.command("GET VARIABLE", name)
        if reply.result == "0":
            return None
        if reply.result == "1":
            # Take the raw text between the first "(" and the final ")" so a value that
            # itself contains parentheses comes back intact.
            rest = reply.rest.strip(" ")
            if rest.startswith("(") and rest.endswith(")"):
                return rest[1:-1]
            raise ActionFailed(
                f"AGI GET VARIABLE {name} on {self.channel}: expected '(value)', got "
                f"{reply.lines[0]!r}"
            )
        raise ActionFailed(
            f"AGI GET VARIABLE {name} on {self.channel}: unexpected {reply.lines[0]!r}"
        )

    async def set_var(self, name: str, value: str) -> None:
        await self.command("SET VARIABLE", name, value)

    async def record(self, path: str, max_s: float, silence_s: float = 0) -> None:
        """RECORD FILE ``path`` (no extension) as wav until ``#``, ``max_s`` or silence.

        ``(hangup)`` -> :class:`HangupDuringRecord` carrying the take; ``(writefile)`` and
        other -1 -> ActionFailed.

        Checked on the sandbox Asterisk 22: a caller who hangs up mid-take gets
        ``200 result=-1 (hangup) endpos=44298`` and the file stays, with exactly ``endpos``
        samples of 8 kHz audio (the ``wav`` format; 88640 bytes = 44 + 2 * 44298). So the
        take's length is ``endpos / 8`` ms, and ``endpos=0`` means nothing was written.
        """
        if not path:
            raise ValueError("record: path must not be empty")
        if not (max_s > 0 and math.isfinite(max_s)):
            raise ValueError(f"record: max_s must be a positive number, got {max_s}")
        if silence_s < 0:
            raise ValueError(f"record: silence_s must be >= 0, got {silence_s}")
        fmt = "wav"
        base = path
        if path.endswith(".wav"):
            base = path[: -len(".wav")]
        args: list[str | int] = [base, fmt, "#", max(1, round(max_s * 1000))]
        if silence_s > 0:
            # Offset 0 must be given explicitly: the optional words are positional-ish and
            # "s=" is only recognised after it.
            args += [0, f"s={max(1, math.ceil(silence_s))}"]
        reply = await self.command("RECORD FILE", *args, timeout_s=max_s + self._step_timeout_s)
        if reply.result == "-1":
            if reply.data == "hangup":
                self._hangup_seen = True
                endpos = reply.extras.get("endpos", "")
                take = RecordedTake(
                    duration_ms=int(endpos) * 1000 // _WAV_RATE if endpos.isdigit() else None
                )
                raise HangupDuringRecord(f"caller hung up while recording to {path}", take)
            if reply.data is not None:  # "writefile", "randomerror"...
                raise ActionFailed(
                    f"AGI RECORD FILE {path} on {self.channel} failed: {reply.lines[0]!r}"
                )
            await self._require_not_minus_one(reply, f"RECORD FILE {path}")

    async def hangup(self) -> None:
        """Hang up the channel and close the connection. Idempotent; quiet if already gone."""
        if self._closed:
            return
        try:
            if not self._hangup_seen:
                with contextlib.suppress(HangupDuringSession):
                    await self.command("HANGUP")
        finally:
            await self.close()

    # ------------------------------------------------------------------ extras

    async def exec(self, app: str, options: str = "") -> AgiReply:
        """EXEC a dialplan application; ``options`` is its comma-separated argument string.

        Returns the raw reply (``result`` is the application's return value). No timeout
        beyond ``prompt_timeout_s``: applications may legitimately run for long.
        """
        args = (app, options) if options else (app,)
        return await self.command(
            "EXEC", *args, timeout_s=self._prompt_timeout_s + self._step_timeout_s
        )

    async def command(
        self, verb: str, *args: str | int, timeout_s: float | None = None
    ) -> AgiReply:
        """Send one command and return its final reply (provisional 100s skipped).

        Raises HangupDuringSession on 511 or a closed connection, ActionFailed on 510/520
        or garbage, ActionTimeout (and closes) when no reply arrives within ``timeout_s``
        (default ``step_timeout_s``). ``result=-1`` is returned as is.
        """
        line = encode_command(verb, *args)
        async with self._lock:
            return await self._exchange(verb, line, timeout_s or self._step_timeout_s)

    async def close(self) -> None:
        """Close the socket. Asterisk then ends AGI() and continues the dialplan."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), self._step_timeout_s)

    # ------------------------------------------------------------------ internals

    async def _exchange(self, verb: str, line: bytes, timeout_s: float) -> AgiReply:
        if self._closed:
            raise PbxUnavailable(f"AGI session for {self.call_id} is closed; cannot send {verb}")
        self._log.debug("agi.command", command=line.decode("utf-8", "replace").rstrip("\n"))
        try:
            reply = await asyncio.wait_for(self._send_and_read(verb, line), timeout_s)
        except TimeoutError as err:
            await self.close()
            raise ActionTimeout(
                f"AGI {verb} on {self.channel}: no reply within {timeout_s:g}s; connection "
                "closed (a late reply would be taken for the next command's)"
            ) from err
        except (ConnectionError, asyncio.IncompleteReadError) as err:
            self._hangup_seen = True
            await self.close()
            raise HangupDuringSession(
                f"AGI connection for {self.channel} closed during {verb}"
            ) from err
        except ProtocolError as err:
            await self.close()
            raise ActionFailed(f"AGI {verb} on {self.channel}: {err}") from err
        self._log.debug("agi.reply", reply=list(reply.lines))
        if reply.code == 511:
            self._hangup_seen = True
            raise HangupDuringSession(f"{verb} refused: channel {self.channel} is hung up")
        if reply.code != 200:
            raise ActionFailed(
                f"AGI {verb} on {self.channel} failed: {reply.code} {reply.message}",
                response={"code": str(reply.code), "message": reply.message},
            )
        return reply

    async def _send_and_read(self, verb: str, line: bytes) -> AgiReply:
        self._writer.write(line)
        # drain() inside the timeout: a peer that stops reading must not block us forever.
        await self._writer.drain()
        return await self._read_reply(verb)

    async def _read_reply(self, verb: str) -> AgiReply:
        while True:
            try:
                raw = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as err:
                raise ProtocolError(
                    f"reply line longer than the {err.consumed}-byte read limit"
                ) from err
            item = self._parser.feed_line(raw)
            if item is None:
                continue
            if isinstance(item, HangupNotice):
                # Not the reply: Asterisk writes it between replies whenever it notices the
                # hangup; the reply to the pending command is still to come.
                if not self._hangup_seen:
                    self._log.info("agi.hangup_notice", during=verb)
                self._hangup_seen = True
                continue
            if item.code == 100:  # "100 result=0 Trying..." precedes the real reply
                continue
            return item

    async def _require_not_minus_one(self, reply: AgiReply, what: str) -> None:
        if reply.result != "-1":
            return
        if not self._hangup_seen:
            try:
                probe = await self.command("CHANNEL STATUS")
            except HangupDuringSession:
                pass
            else:
                if not self._hangup_seen:
                    raise ActionFailed(
                        f"AGI {what} on {self.channel} failed ({reply.lines[0]!r}) while the "
                        f"channel is still up (CHANNEL STATUS result={probe.result})",
                        response={"reply": reply.lines[0]},
                    )
        self._hangup_seen = True
        raise HangupDuringSession(f"caller hung up during {what} on {self.channel}")


def _require_prompt(prompt: str) -> None:
    if not prompt:
        raise ValueError("play: prompt must not be empty")
