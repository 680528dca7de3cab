"""Outbound-socket server: FreeSWITCH connects to us, one TCP connection per call.

The dialplan (or an originate) runs ``socket <host>:<port> async full``.
For each connection we send ``connect`` (the reply carries every channel
variable), ``myevents`` (events of this channel only) and ``linger`` (so the
events that follow a hangup still reach us), then hand a
:class:`FreeSwitchCallSession` to the engine's handler.

Each step is ``sendmsg`` + ``execute`` with ``event-lock: true`` and an
``Event-UUID`` we choose; the step is over when the CHANNEL_EXECUTE_COMPLETE
with that Application-UUID arrives. If a switch ignores our Event-UUID, the
Application-UUID of the CHANNEL_EXECUTE that starts our application is
adopted instead, so matching still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping

from engine.core.errors import ActionFailed, ActionTimeout, ProtocolError
from engine.core.lifecycle import AsyncResource
from engine.pbx.base import CallSession, HangupDuringRecord, HangupDuringSession, RecordedTake
from engine.pbx.freeswitch import esl_codec as codec
from engine.pbx.freeswitch import syntax

log = logging.getLogger(__name__)

#: The channel variable that carries the IVR flow name (set by the driver's originate
#: and redirect, and by dialplans/freeswitch/engine.xml).
IVR_FLOW_VAR = "engine_ivr_flow"

SessionHandler = Callable[[CallSession], Awaitable[None]]

#: How many seconds of silence one unit of the ``record`` app's silence argument waits, per
#: read codec. switch_ivr_play_say.c counts ``file rate * hits / samples_per_packet`` frames,
#: and G722's samples_per_packet follows its 8 kHz RTP clock (160 per 20 ms) while its file
#: rate is 16 kHz: on a G722 call "2" waited 4 s of silence
#: (outbound-socket-record-silence.esl; 2 s on PCMU, outbound-socket-record-silence-pcmu.esl).
SILENCE_SECONDS_PER_HIT = {"G722": 2}


class _Step:
    __slots__ = ("app", "app_uuid", "digits", "future", "outlives_hangup", "started")

    def __init__(
        self,
        app: str,
        app_uuid: str,
        future: asyncio.Future[codec.EslEvent],
        outlives_hangup: bool = False,
    ) -> None:
        self.app = app
        self.app_uuid = app_uuid
        self.future = future
        #: DTMF digits this channel received while the step ran.
        self.digits: list[str] = []
        #: The step's CHANNEL_EXECUTE_COMPLETE is still wanted after CHANNEL_HANGUP (it
        #: reports what the app did before the hang-up: a voicemail take).
        self.outlives_hangup = outlives_hangup
        #: CHANNEL_EXECUTE came: the switch runs the application.
        self.started = False


class FreeSwitchCallSession:
    """:class:`engine.pbx.base.CallSession` over one outbound-socket connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        step_timeout: float = 300.0,
        reply_timeout: float = 10.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = codec.EslParser()
        self.step_timeout = step_timeout
        self.reply_timeout = reply_timeout
        self._replies: asyncio.Queue[codec.CommandReply | codec.ApiResponse] = asyncio.Queue()
        self._step: _Step | None = None
        self._hung_up = asyncio.Event()
        self._closed = False
        self._closed_event = asyncio.Event()
        self._channel: Mapping[str, str] = {}
        self._variables: dict[str, str] = {}
        self._call_id = ""
        self._reader_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: The digits received during the last step (kept when it ends by hangup).
        self._last_step_digits: list[str] = []
        self._last_step_started = False
        #: Keys pressed while no application runs (the leg parked by the socket app: a
        #: speech turn listening on the unicast tap races them, see next_dtmf).
        self._idle_digits: asyncio.Queue[str] = asyncio.Queue(maxsize=64)
        #: Every event of this channel, in arrival order (for debugging and tests).
        self.events: list[codec.EslEvent] = []
        #: The channel's read codec, from its events (the connect reply of a call that is
        #: not answered yet has none: outbound-socket-record-silence*.esl.outbound).
        self.read_codec = ""

    # ------------------------------------------------------------ properties

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def variables(self) -> Mapping[str, str]:
        return self._variables

    @property
    def channel_data(self) -> Mapping[str, str]:
        """Every header of the ``connect`` reply (decoded)."""
        return self._channel

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def hung_up(self) -> bool:
        return self._hung_up.is_set()

    # ------------------------------------------------------------- handshake

    async def _read_one(self) -> codec.EslMessage:
        pending: list[codec.EslMessage] = []
        while not pending:
            data = await asyncio.wait_for(self._reader.read(65536), self.reply_timeout)
            if not data:
                raise HangupDuringSession("FreeSWITCH closed the socket during the handshake")
            pending = self._parser.feed(data)
        if len(pending) > 1:
            # Only the connect reply can arrive before we ask for events.
            raise ProtocolError(f"unexpected {type(pending[1]).__name__} before myevents")
        return pending[0]

    async def handshake(self) -> None:
        self._writer.write(codec.encode_connect())
        reply = await self._read_one()
        if not isinstance(reply, codec.CommandReply) or not reply.ok:
            raise ProtocolError(f"connect: expected +OK command/reply, got {reply!r}"[:200])
        self._channel = reply.headers
        self._call_id = reply.headers.get("Unique-ID") or reply.headers.get("Channel-Unique-ID", "")
        self._variables = {
            k.removeprefix("variable_"): v
            for k, v in reply.headers.items()
            if k.startswith("variable_")
        }
        flow = self._variables.get(IVR_FLOW_VAR)
        if flow and "flow" not in self._variables:
            # The CallSession façade names the flow "flow" (on Asterisk it is the AGI URL's
            # ?flow= query); the IVR runtime reads that key on every switch.
            self._variables["flow"] = flow
        self._reader_task = asyncio.create_task(self._read_loop())
        for data in (codec.encode_myevents(), codec.encode_linger()):
            got = await self._command(data)
            if not got.ok:
                raise ProtocolError(f"{data.decode().strip()}: {got.reply_text}")

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for msg in self._parser.feed(data):
                    self._dispatch(msg)
        except (OSError, ProtocolError) as err:
            log.warning(
                "outbound session %s: %s", self._call_id, err, extra={"call_id": self._call_id}
            )
        finally:
            self._closed = True
            self._closed_event.set()
            self._mark_hangup("socket closed")
            self._fail_step("socket closed")

    def _dispatch(self, msg: codec.EslMessage) -> None:
        if isinstance(msg, codec.CommandReply | codec.ApiResponse):
            self._replies.put_nowait(msg)
        elif isinstance(msg, codec.EslEvent):
            self.events.append(msg)
            self._on_event(msg)
        elif isinstance(msg, codec.DisconnectNotice):
            # In linger mode this says "the channel is gone"; events may
            # still follow, and the socket closes after them.
            self._mark_hangup("disconnect notice")

    def _on_event(self, event: codec.EslEvent) -> None:
        read_codec = event.get("Channel-Read-Codec-Name")
        if read_codec and read_codec != "L16":
            # L16 is the raw codec an application (record) swaps in while it reads
            # (RECORD_START in outbound-socket-record-silence.esl); the call's stays.
            self.read_codec = read_codec
        step = self._step
        if event.name == "CHANNEL_EXECUTE" and step is not None:
            # Adopt the switch's Application-UUID if it ignored our Event-UUID.
            if event.get("Application") == step.app and event.get("Application-UUID"):
                step.app_uuid = event.get("Application-UUID")
                step.started = True
        elif event.name == "CHANNEL_EXECUTE_COMPLETE" and step is not None:
            if event.get("Application-UUID") == step.app_uuid and not step.future.done():
                step.future.set_result(event)
        elif event.name == "DTMF" and step is not None:
            step.digits.append(event.get("DTMF-Digit"))
        elif event.name == "DTMF" and event.get("DTMF-Digit") and not self._idle_digits.full():
            self._idle_digits.put_nowait(event.get("DTMF-Digit"))
        elif event.name == "CHANNEL_HANGUP":
            self._mark_hangup(event.get("Hangup-Cause") or "hangup")
        elif event.name == "CHANNEL_HANGUP_COMPLETE":
            # Recorded order (outbound-socket-*.esl.outbound): CHANNEL_HANGUP, the apps'
            # CHANNEL_EXECUTE_COMPLETE, CHANNEL_HANGUP_COMPLETE. Nothing more will come for
            # a step still waiting past the hang-up.
            self._fail_step("hangup complete")

    def _mark_hangup(self, reason: str) -> None:
        if self._hung_up.is_set():
            return
        self._hung_up.set()
        step = self._step
        if step is not None and step.outlives_hangup and not step.future.done():
            # Its CHANNEL_EXECUTE_COMPLETE follows the hang-up; bounded in case it does not.
            loop = asyncio.get_running_loop()
            loop.call_later(self.reply_timeout, self._fail_step, f"{reason}, no completion", step)
        else:
            self._fail_step(reason)
        while not self._replies.empty():  # pragma: no cover - nothing waits on these
            self._replies.get_nowait()

    def _fail_step(self, reason: str, step: _Step | None = None) -> None:
        step = step or self._step
        if step is not None and not step.future.done():
            step.future.set_exception(HangupDuringSession(f"{step.app}: caller gone ({reason})"))

    async def _command(self, data: bytes) -> codec.CommandReply:
        reply = await self._send(data)
        if not isinstance(reply, codec.CommandReply):
            raise ProtocolError(f"expected command/reply, got {type(reply).__name__}")
        return reply

    async def _send(self, data: bytes) -> codec.CommandReply | codec.ApiResponse:
        if self._closed:
            raise HangupDuringSession(f"socket to {self._call_id} is closed")
        self._writer.write(data)
        get = asyncio.create_task(self._replies.get())
        closed = asyncio.create_task(self._wait_closed())
        try:
            done, _ = await asyncio.wait(
                {get, closed}, timeout=self.reply_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
        if get in done:
            return get.result()
        get.cancel()
        if closed in done:
            raise HangupDuringSession(f"socket to {self._call_id} closed")
        raise ActionTimeout(f"no reply from FreeSWITCH within {self.reply_timeout}s")

    async def _wait_closed(self) -> None:
        await self._closed_event.wait()

    # ------------------------------------------------------------------ steps

    async def execute(
        self, app: str, arg: str = "", *, outlives_hangup: bool = False
    ) -> codec.EslEvent:
        """Run one application and return its CHANNEL_EXECUTE_COMPLETE event.

        ``outlives_hangup``: a CHANNEL_HANGUP during the step does not end it at once; its
        CHANNEL_EXECUTE_COMPLETE, which follows the hang-up, is returned (check
        :attr:`hung_up`). HangupDuringSession when none comes before
        CHANNEL_HANGUP_COMPLETE, the socket's end or ``reply_timeout``."""
        async with self._lock:  # one step at a time; event-lock does the same switch-side
            if self._hung_up.is_set():
                raise HangupDuringSession(f"{app}: the caller already hung up")
            loop = asyncio.get_running_loop()
            step = _Step(app, str(uuid.uuid4()), loop.create_future(), outlives_hangup)
            self._step = step
            try:
                reply = await self._command(
                    codec.encode_execute(app, arg, event_lock=True, event_uuid=step.app_uuid)
                )
                if not reply.ok:
                    if self._hung_up.is_set():
                        raise HangupDuringSession(f"{app}: {reply.reply_text}")
                    raise ActionFailed(f"execute {app}: {reply.reply_text}")
                try:
                    return await asyncio.wait_for(asyncio.shield(step.future), self.step_timeout)
                except TimeoutError as err:
                    raise ActionTimeout(
                        f"{app}: no CHANNEL_EXECUTE_COMPLETE in {self.step_timeout}s"
                    ) from err
            finally:
                self._step = None
                self._last_step_digits = step.digits
                self._last_step_started = step.started

    async def answer(self) -> None:
        await self.execute("answer")

    async def play(self, prompt: str) -> None:
        await self.execute("playback", prompt)

    async def get_digits(
        self, prompt: str, max_digits: int, timeout_s: float, terminators: str = "#"
    ) -> str:
        """``play_and_get_digits``; returns the digits without the terminator, or
        ``""`` when nothing valid was entered (``read_result`` failure).

        Note from the transcript: digits pressed *before* this step starts are
        flushed by FreeSWITCH and do not count. A caller who keys digits and hangs
        up before the terminator gets those digits back (HangupDuringSession only
        when nothing was keyed).
        """
        if " " in prompt or not prompt:
            raise ActionFailed(f"prompt {prompt!r} must be one token without spaces")
        var = "engine_digits"
        args = " ".join(
            [
                "1",
                str(max(1, max_digits)),
                "1",
                str(max(1, int(timeout_s * 1000))),
                terminators or "none",
                prompt,
                "silence_stream://250",
                var,
                r"[0-9*#A-D]+",
            ]
        )
        try:
            done = await self.execute("play_and_get_digits", args)
        except HangupDuringSession:
            # Recorded on the real switch (dtmf-from-far-end.esl): the caller keys
            # 1234 640 ms apart and hangs up before the '#'. play_and_get_digits then
            # sets no variable, but the DTMF events of the step arrived; what was
            # keyed before the hangup is the answer (the caller is gone either way).
            keyed = _digits_before_terminator(self._last_step_digits, terminators, max_digits)
            if keyed:
                log.info(
                    "gather on %s: caller hung up after keying %d digit(s)",
                    self._call_id,
                    len(keyed),
                    extra={"call_id": self._call_id},
                )
                return keyed
            raise
        return done.get(f"variable_{var}")

    def flush_dtmf(self) -> None:
        """Forget keys pressed between steps (as play_and_get_digits does, recorded)."""
        while not self._idle_digits.empty():
            self._idle_digits.get_nowait()

    async def next_dtmf(self) -> str:
        """The next key pressed while no application runs (a speech turn races it)."""
        return await self._idle_digits.get()

    async def get_var(self, name: str) -> str | None:
        if not name or " " in name:
            raise ActionFailed(f"variable name {name!r} must be one token")
        async with self._lock:
            reply = await self._send(codec.encode_api(f"uuid_getvar {self._call_id} {name}"))
        if not isinstance(reply, codec.ApiResponse):
            raise ProtocolError(f"expected api/response, got {type(reply).__name__}")
        text = reply.body.rstrip("\n")
        if text.startswith("-ERR"):
            if "No such channel" in text:
                raise HangupDuringSession(f"get_var {name}: {text}")
            raise ActionFailed(f"uuid_getvar {name}: {text}")
        value = None if text == "_undef_" else text
        if value is not None:
            self._variables[name] = value
        return value

    async def set_var(self, name: str, value: str) -> None:
        syntax.var_name(name)
        # The set application's argument is expanded by FreeSWITCH before it runs:
        # "${...}" in a value (a webhook's answer, say) would be evaluated, API
        # calls included. There is no escape for it, so such a value is refused.
        syntax.check_no_control(value, f"variable {name} value")
        if "${" in value:
            raise ActionFailed(
                f"variable {name} value {value!r}: holds '${{', which FreeSWITCH would expand"
            )
        await self.execute("set", f"{name}={value}")
        self._variables[name] = value

    async def record(self, path: str, max_s: float, silence_s: float = 0) -> RecordedTake:
        """``record <path> <limit> [200 <hits>]`` (mod_dptools); the take as the switch
        reported it on CHANNEL_EXECUTE_COMPLETE.

        Recorded (outbound-socket-record-silence*.esl): this session sees no RECORD_START
        or RECORD_STOP (``myevents`` does not subscribe to them), so the step ends on the
        CHANNEL_EXECUTE_COMPLETE, which carries ``variable_record_ms``,
        ``variable_record_file_size`` and ``variable_silence_hits_exhausted``.

        A caller who hangs up during the take (the usual end of a voicemail) gets
        :class:`HangupDuringRecord` with the take so far. NOT recorded (no transcript has a
        hang-up during ``record``), inferred from those that have one during another app
        (playback in originate-answered-engine-hangup.esl, eavesdrop in eavesdrop-listen.esl,
        the socket app in every outbound session): the app's CHANNEL_EXECUTE_COMPLETE comes
        after CHANNEL_HANGUP and before CHANNEL_HANGUP_COMPLETE, so the step waits for it past
        the hang-up; switch_ivr_record_file sets ``record_ms`` & co. after its loop however
        the loop ended. Without that event (HANGUP_COMPLETE, the socket's end or
        ``reply_timeout`` first) the take is None, once the app was seen running.
        """
        arg = f"{path} {max(1, int(max_s))}"
        if silence_s > 0:
            # Energy threshold 200, then the silence in the switch's units: on a G722 call
            # each unit is 2 s (SILENCE_SECONDS_PER_HIT). Whole units only (atoi): rounded
            # up, so the caller is never cut off sooner than the flow asked.
            per_hit = SILENCE_SECONDS_PER_HIT.get((await self._read_codec()).upper(), 1)
            arg += f" 200 {max(1, math.ceil(silence_s / per_hit))}"
        self._last_step_started = False
        try:
            done = await self.execute("record", arg, outlives_hangup=True)
        except HangupDuringSession as err:
            if not self._last_step_started:
                raise  # the take never began: nothing to keep
            raise HangupDuringRecord(f"record {path}: {err}", None) from err
        exhausted = done.get("variable_silence_hits_exhausted")
        take = RecordedTake(
            duration_ms=_int_or_none(done.get("variable_record_ms")),
            size_bytes=_int_or_none(done.get("variable_record_file_size")),
            ended_by_silence=None if not exhausted else exhausted == "true",
        )
        if self._hung_up.is_set():
            raise HangupDuringRecord(f"caller hung up while recording to {path}", take)
        return take

    async def _read_codec(self) -> str:
        if not self.read_codec:
            # No event said it yet (record before answer): ask the channel.
            self.read_codec = await self.get_var("read_codec") or ""
        return self.read_codec

    async def hangup(self) -> None:
        if self._hung_up.is_set():
            return
        try:
            async with self._lock:
                reply = await self._command(codec.encode_hangup("NORMAL_CLEARING"))
        except HangupDuringSession:
            # FreeSWITCH sends +OK and, right behind it, CHANNEL_HANGUP and the disconnect
            # notice: the hang-up may be read (and its reply dropped) before the reply is
            # taken. The channel is gone, as asked: not a caller hang-up.
            self._mark_hangup("hung up by the engine")
            return
        if not reply.ok and not self._hung_up.is_set():
            raise ActionFailed(f"hangup: {reply.reply_text}")
        self._mark_hangup("hung up by the engine")

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _digits_before_terminator(digits: list[str], terminators: str, max_digits: int) -> str:
    keyed: list[str] = []
    for digit in digits:
        if digit in terminators or len(keyed) >= max(1, max_digits):
            break
        keyed.append(digit)
    return "".join(keyed)


class OutboundServer(AsyncResource):
    """Listens for FreeSWITCH outbound-socket connections and runs ``handler``
    once per call. ``async with OutboundServer(handler, host, port) as srv``;
    ``srv.port`` is the bound port (pass port 0 to pick a free one)."""

    def __init__(
        self,
        handler: SessionHandler,
        host: str = "127.0.0.1",
        port: int = 8084,
        *,
        step_timeout: float = 300.0,
        reply_timeout: float = 10.0,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.step_timeout = step_timeout
        self.reply_timeout = reply_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Finished sessions count and handler failures, for metrics and tests.
        self.completed = 0
        self.failures: list[BaseException] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = FreeSwitchCallSession(
            reader, writer, step_timeout=self.step_timeout, reply_timeout=self.reply_timeout
        )
        try:
            await session.handshake()
            await self.handler(session)
        except HangupDuringSession as err:
            log.info(
                "IVR session %s ended by hangup: %s",
                session.call_id,
                err,
                extra={"call_id": session.call_id},
            )
        except Exception as err:
            log.exception(
                "IVR session %s failed", session.call_id, extra={"call_id": session.call_id}
            )
            self.failures.append(err)
        finally:
            self.completed += 1
            if not session.hung_up and not session.closed:
                # The flow returned without hanging up: give the channel back
                # to the dialplan (it continues after the socket application).
                with contextlib.suppress(Exception):
                    writer.write(codec.encode_exit())
            await session.close()
            self._tasks.discard(task)
