"""AsteriskDriver: the :class:`engine.pbx.base.PbxDriver` for Asterisk 22 over AMI.

Layers: :mod:`.ami_codec` (bytes <-> messages, no I/O) under :mod:`.ami_client`
(one supervised TCP connection) under this module, which turns the engine's
switch-neutral commands into AMI actions and AMI events into normalized events
(through :mod:`.events`).

Decisions worth knowing:

* **Identity.** Originate carries ``ChannelId: <call_id>``, so the placed
  channel's Uniqueid *is* the engine's call id from its very first event.
* **Channel names.** AMI actions address channels by name
  (``PJSIP/self-trunk-0000002a``); the engine only knows call ids. The
  translator keeps ``call_id -> channel name`` from Newchannel/Rename events
  and from the CoreShowChannels resync. When the name is not known yet (an
  action right after Originate, before Newchannel) the call id itself is sent:
  Asterisk's channel lookup (``ast_channel_get_by_name``) falls back to
  matching the Uniqueid, which equals our call id.
* **answer()**: AMI has no Answer action. A ringing inbound channel is answered
  by redirecting it to ``engine-park`` (its first step is ``Answer()``), where
  it waits silently for the next command.
* **play()**: AMI has no Playback action either (ARI has). The prompt is set
  as ``ENGINE_PLAY_PROMPT`` and the channel redirected to
  ``engine-play,s,1``, which must run ``Playback(${ENGINE_PLAY_PROMPT})`` and
  then ``Goto(engine-park,s,1)``. For prompts inside an IVR flow use the
  FastAGI CallSession instead, which also reports when playback finished.
* **moh_start()**: AMI has no hold-music action either. The class is set as
  ``ENGINE_MOH_CLASS`` and the channel redirected to ``engine-moh,s,1``
  (``MusicOnHold(${ENGINE_MOH_CLASS})``); ``moh_stop()`` redirects it back to
  ``engine-park``. Asterisk reports both as MusicOnHoldStart/Stop events.
* **bridge()**: AMI ``Bridge`` puts both channels in a new basic bridge and, when
  the bridge ends, lets each one "go on" in the dialplan after the step it was
  pulled out of (``action_bridge`` in main/features.c sets an after-bridge go-on
  to the channel's context/exten/priority). From ``engine-park``'s ``Wait()`` and
  ``engine-moh``'s ``MusicOnHold()`` that is ``engine-after-bridge``, which reads
  ``ENGINE_AFTER_BRIDGE`` (set here on both legs just before the Bridge): ``hangup``
  ends the leg, ``park`` parks it. That gives the same after-bridge behaviour as
  FreeSWITCH's ``park_after_bridge`` (see the PbxDriver docstring).
* **Nothing is re-sent**, ever; see :mod:`.ami_client`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence

from engine.core import clock
from engine.core.errors import ActionFailed, PbxUnavailable, UnsafeValue
from engine.pbx.base import (
    Amd,
    DialplanTarget,
    DialTarget,
    IvrTarget,
    LinkChanged,
    LinkState,
    LiveChannel,
    OriginateRequest,
    Park,
    PbxEvent,
    RecordingFormat,
    Resynced,
    SpyMode,
    SpyRequest,
    TrunkReachability,
)
from engine.pbx.event_queue import EventFanout
from engine.speech.amd.params import AmdOverrides

from . import chanspy
from .ami_client import AmiClient
from .ami_codec import Event
from .endpoints import endpoint_reachability
from .events import EVENT_FILTERS, AmiEventTranslator, live_channel_from_event
from .safe_values import (
    caller_id,
    dialplan_word,
    escape_variable_value,
    file_path,
    flow_name,
    variable_header,
    variable_name,
    variable_value,
)

__all__ = ["AsteriskDriver", "dial_string", "escape_variable_value"]

PARK_CONTEXT = "engine-park"
IVR_CONTEXT = "engine-ivr"
#: app_amd AMD(), then UserEvent AmdResult, then [engine-park] (dialplans/asterisk/engine.conf).
AMD_CONTEXT = "engine-amd"
#: AMD()'s positional arguments for this call (``AMD(${ENGINE_AMD_ARGS})`` in [engine-amd]):
#: digits and commas only, built from validated integers; unset is ``AMD()`` (amd.conf).
AMD_ARGS_VAR = "ENGINE_AMD_ARGS"
_AMD_ARGS = re.compile(r"^[0-9]{0,5}(,[0-9]{0,5}){0,8}\Z")
PLAY_CONTEXT = "engine-play"
MOH_CONTEXT = "engine-moh"
#: Read by [engine-after-bridge] (dialplans/asterisk/engine.conf) when a bridge ends.
AFTER_BRIDGE_VAR = "ENGINE_AFTER_BRIDGE"
MOH_CLASS_VAR = "ENGINE_MOH_CLASS"

_DIAL_TOKEN = re.compile(r"^[A-Za-z0-9+*#._-]+\Z")
_DTMF = re.compile(r"^[0-9A-Da-d*#]+\Z")
#: The spied leg's id goes into ChanSpy's arguments: a call id the engine chose (a UUID), so
#: nothing that could end the argument (',', '|', ')') or name another channel.
_SPY_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


def dial_string(target: DialTarget) -> str:
    """``DialTarget`` -> Asterisk dial string (PJSIP)."""
    if target.kind == "trunk":
        if not _DIAL_TOKEN.match(target.name) or not _DIAL_TOKEN.match(target.number):
            raise UnsafeValue(
                f"invalid trunk dial target name={target.name!r} number={target.number!r}: "
                "expected letters, digits and + * # . _ - only"
            )
        return f"PJSIP/{target.number}@{target.name}"
    if target.kind == "endpoint":
        if not _DIAL_TOKEN.match(target.name):
            raise UnsafeValue(f"invalid endpoint name {target.name!r}")
        return f"PJSIP/{target.name}"
    if not target.name or any(c.isspace() for c in target.name):
        raise UnsafeValue(
            f"raw dial target {target.name!r}: expected a non-empty string without spaces"
        )
    return target.name


def amd_arguments(then: Amd) -> str:
    """AMD()'s argument string for this call: app_amd's positional parameters
    (initialSilence, greeting, afterGreetingSilence, totalAnalysisTime, minimumWordLength,
    betweenWordsSilence, maximumNumberOfWords, silenceThreshold, maximumWordLength), an empty
    one keeping amd.conf's value; ``""`` when the call has none of its own (``AMD()``).
    Checked again here: only digits and commas ever reach the dialplan."""
    args = then.overrides.amd_arguments()
    if not _AMD_ARGS.match(args):
        raise UnsafeValue(f"AMD() arguments {args!r}: expected up to 9 integers")
    return args


class AsteriskDriver:
    """Control of one Asterisk 22 over AMI. Satisfies ``PbxDriver``."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        username: str,
        secret: str,
        action_timeout_s: float = 10.0,
        ping_interval_s: float = 20.0,
        agi_host: str = "127.0.0.1",
        agi_port: int = 4573,
        *,
        ping_timeout_s: float | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        clock_fn: Callable[[], float] = clock.now,
    ) -> None:
        self._name = name
        self.agi_host = agi_host
        self.agi_port = agi_port
        self._now = clock_fn
        self._translator = AmiEventTranslator(name)
        # Bounded per-subscriber queues, one shedding policy for both drivers.
        self.fanout = EventFanout(name)
        self._client = AmiClient(
            host,
            port,
            username,
            secret,
            name=name,
            action_timeout_s=action_timeout_s,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_timeout_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            resync=self._resync,
            # Only the events the translator reads (events.EVENT_FILTERS).
            event_filters=EVENT_FILTERS,
        )
        self._client.add_event_listener(self._on_ami_event)
        self._client.add_state_listener(self._on_link_state)

    # ------------------------------------------------------------ identity / lifecycle

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "asterisk"

    @property
    def state(self) -> LinkState:
        return self._client.state

    @property
    def client(self) -> AmiClient:
        """The underlying AMI client (for diagnostics and tests)."""
        return self._client

    async def start(self) -> None:
        """Start connecting; returns at once. Watch ``state`` / LinkChanged."""
        await self._client.start()

    async def stop(self) -> None:
        await self._client.stop()

    async def wait_up(self, timeout_s: float | None = None) -> None:
        """Wait for UP; raise PbxUnavailable if the login is REJECTED."""
        state = await self._client.wait_for_state(
            LinkState.UP, LinkState.REJECTED, timeout_s=timeout_s
        )
        if state is LinkState.REJECTED:
            raise PbxUnavailable(f"{self._name}: {self._client.reason}")

    def events(self) -> AsyncIterator[PbxEvent]:
        return self.fanout.subscribe()

    # ------------------------------------------------------------ event plumbing

    def _publish(self, event: PbxEvent) -> None:
        self.fanout.publish(event)

    def _on_ami_event(self, event: Event) -> None:
        for normalized in self._translator.translate(event, self._now()):
            self._publish(normalized)

    def _on_link_state(self, state: LinkState, reason: str) -> None:
        self._publish(
            LinkChanged(switch=self._name, call_id="", ts=self._now(), state=state, reason=reason)
        )

    async def _resync(self, client: AmiClient) -> None:
        self._translator.begin_resync()
        live = await self._list_channels(client)
        self._translator.reset_from_live(live)
        self._publish(Resynced(switch=self._name, call_id="", ts=self._now(), live=tuple(live)))

    @staticmethod
    async def _list_channels(client: AmiClient) -> list[LiveChannel]:
        result = await client.send_list_action("CoreShowChannels")
        live = []
        for item in result.events:
            if item.name.lower() != "coreshowchannel":
                continue
            lc = live_channel_from_event(item)
            if lc is not None:
                live.append(lc)
        return live

    # ------------------------------------------------------------ helpers

    def _channel(self, call_id: str) -> str:
        if not call_id:
            raise ActionFailed("empty call_id")
        return self._translator.channel_of(call_id) or call_id

    def _ivr_vars(self, flow: str) -> list[tuple[str, str]]:
        return [
            ("ENGINE_IVR_FLOW", flow_name(flow)),
            ("ENGINE_AGI_HOST", self.agi_host),
            ("ENGINE_AGI_PORT", str(self.agi_port)),
        ]

    @staticmethod
    def _destination(target: DialplanTarget | Park | IvrTarget | Amd) -> tuple[str, str, int]:
        if isinstance(target, Park):
            return PARK_CONTEXT, "s", 1
        if isinstance(target, Amd):
            return AMD_CONTEXT, "s", 1
        if isinstance(target, IvrTarget):
            return IVR_CONTEXT, "s", 1
        context = dialplan_word("dialplan context", target.context)
        return context, dialplan_word("dialplan exten", target.exten), target.priority

    async def _send(self, action: str, headers: Sequence[tuple[str, str]]) -> dict[str, str]:
        reply = await self._client.send_action(action, headers)
        return reply.headers.to_dict()

    # ------------------------------------------------------------ PbxDriver

    async def originate(self, request: OriginateRequest) -> None:
        """Send ``Originate`` (Async) and return once Asterisk accepted it.

        Acceptance only means "queued": the outcome arrives as events
        (Answered / HungUp with cause / OriginateFailed), all with
        ``call_id == request.call_id``. Never re-sent: on ActionTimeout or
        LinkLost the call may exist; the resync after reconnect tells.
        """
        context, exten, priority = self._destination(request.then)
        headers: list[tuple[str, str]] = [
            ("Channel", dial_string(request.target)),
            ("Context", context),
            ("Exten", exten),
            ("Priority", str(priority)),
            ("Timeout", str(max(1, round(request.timeout_s * 1000)))),
        ]
        cid = caller_id(request.caller_id_num, request.caller_id_name)
        if cid is not None:
            headers.append(("CallerID", cid))
        # Async: without it the reply waits for the far end to answer or fail,
        # which would hold the action (and its timeout) for the whole ring time.
        headers.append(("Async", "true"))
        headers.append(("ChannelId", request.call_id))
        variables = dict(request.variables)
        if isinstance(request.then, IvrTarget):
            variables.update(self._ivr_vars(request.then.flow))
        if any(var.lstrip("_") == AMD_ARGS_VAR for var in variables):
            # ``_``/``__`` set the same variable: AMD() takes only the engine's own.
            raise UnsafeValue(f"channel variable {AMD_ARGS_VAR} is set by the engine")
        if isinstance(request.then, Amd) and (args := amd_arguments(request.then)):
            variables[AMD_ARGS_VAR] = args
        for var, value in variables.items():
            # One header per variable: commas inside a value are escaped, never
            # used to pack several variables into one header (see safe_values).
            headers.append(("Variable", variable_header(var, value)))

        await self._send_originate(headers, request.call_id)

    async def _send_originate(self, headers: list[tuple[str, str]], call_id: str) -> None:
        action_id = self._client.new_action_id()
        # Registered before sending: the OriginateResponse event is matched to
        # our call through this ActionID.
        self._translator.expect_originate(action_id, call_id)
        try:
            await self._client.send_action("Originate", headers, action_id=action_id)
        except PbxUnavailable:
            self._translator.forget_originate(action_id)
            raise
        except ActionFailed as err:
            if err.response:
                # Response: Error means Asterisk refused it; no event will follow.
                self._translator.forget_originate(action_id)
            raise

    async def spy(self, request: SpyRequest) -> None:
        """Originate the supervisor's leg straight into ``ChanSpy(<agent leg>,<options>)``
        (:mod:`.chanspy` says which options and why). Accepted means queued, as for
        :meth:`originate`; the leg's events carry ``request.call_id``."""
        if not _SPY_TARGET.match(request.spied_call_id):
            raise UnsafeValue(
                f"spied call id {request.spied_call_id!r}: expected letters, digits, . _ - only"
            )
        headers: list[tuple[str, str]] = [
            ("Channel", dial_string(request.target)),
            ("Application", "ChanSpy"),
            ("Data", f"{request.spied_call_id},{chanspy.options(request.mode)}"),
            ("Timeout", str(max(1, round(request.timeout_s * 1000)))),
        ]
        cid = caller_id(request.caller_id_num, request.caller_id_name)
        if cid is not None:
            headers.append(("CallerID", cid))
        headers += [("Async", "true"), ("ChannelId", request.call_id)]
        await self._send_originate(headers, request.call_id)

    async def spy_mode(self, call_id: str, mode: SpyMode) -> None:
        """ChanSpy's ``d`` digit, RECEIVED on the supervisor's leg (``Receive: true``): sent
        out to the phone instead (the default) it would never reach ChanSpy."""
        await self._send(
            "PlayDTMF",
            [
                ("Channel", self._channel(call_id)),
                ("Digit", chanspy.mode_digit(mode)),
                ("Receive", "true"),
            ],
        )

    async def hangup(self, call_id: str, cause: int = 16) -> None:
        await self._send("Hangup", [("Channel", self._channel(call_id)), ("Cause", str(cause))])

    async def answer(self, call_id: str) -> None:
        """Answer a ringing inbound call by redirecting it to engine-park."""
        await self.redirect(call_id, Park())

    async def redirect(self, call_id: str, target: DialplanTarget | Park | IvrTarget) -> None:
        channel = self._channel(call_id)
        if isinstance(target, IvrTarget):
            for var, value in self._ivr_vars(target.flow):
                await self._send(
                    "Setvar", [("Channel", channel), ("Variable", var), ("Value", value)]
                )
        context, exten, priority = self._destination(target)
        await self._send(
            "Redirect",
            [
                ("Channel", channel),
                ("Context", context),
                ("Exten", exten),
                ("Priority", str(priority)),
            ],
        )

    async def bridge(self, call_id: str, other_call_id: str, *, keep_call: bool = False) -> None:
        """AMI ``Bridge``; what each leg does when the bridge ends is set first
        (``ENGINE_AFTER_BRIDGE``, see the module docs)."""
        first, second = self._channel(call_id), self._channel(other_call_id)
        for channel, after in ((first, "park" if keep_call else "hangup"), (second, "hangup")):
            await self._send(
                "Setvar", [("Channel", channel), ("Variable", AFTER_BRIDGE_VAR), ("Value", after)]
            )
        await self._send("Bridge", [("Channel1", first), ("Channel2", second), ("Tone", "no")])

    async def moh_start(self, call_id: str, moh_class: str = "default") -> None:
        """Hold music via the ``engine-moh`` context (see module docs)."""
        channel = self._channel(call_id)
        # Substituted into MusicOnHold()'s arguments: a ',' would add arguments.
        moh_class = dialplan_word("music-on-hold class", moh_class)
        await self._send(
            "Setvar", [("Channel", channel), ("Variable", MOH_CLASS_VAR), ("Value", moh_class)]
        )
        await self._send(
            "Redirect",
            [("Channel", channel), ("Context", MOH_CONTEXT), ("Exten", "s"), ("Priority", "1")],
        )

    async def moh_stop(self, call_id: str) -> None:
        """Back to the silent ``engine-park``; MusicOnHold() ends with the redirect."""
        await self.redirect(call_id, Park())

    async def play(self, call_id: str, prompt: str) -> None:
        """Play ``prompt`` via the ``engine-play`` context (see module docs)."""
        channel = self._channel(call_id)
        prompt = file_path("prompt", prompt)  # substituted into Playback()'s arguments
        await self._send(
            "Setvar", [("Channel", channel), ("Variable", "ENGINE_PLAY_PROMPT"), ("Value", prompt)]
        )
        await self._send(
            "Redirect",
            [("Channel", channel), ("Context", PLAY_CONTEXT), ("Exten", "s"), ("Priority", "1")],
        )

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        if not _DTMF.match(digits):
            raise UnsafeValue(f"invalid DTMF digits {digits!r}: expected 0-9 A-D * #")
        channel = self._channel(call_id)
        # PlayDTMF takes exactly one digit per action.
        for digit in digits:
            await self._send("PlayDTMF", [("Channel", channel), ("Digit", digit)])

    def record_format(self, stereo: bool) -> RecordingFormat:
        # Raw signed linear, never .wav: option D (two channels) needs .raw ("any other
        # extension will produce a corrupted file", app_mixmonitor's own documentation),
        # and a raw file can be appended to on resume with no header to fix up. ".raw" is
        # format_sln's 8 kHz signed linear.
        return RecordingFormat(".raw", "raw", 8000, 2 if stereo else 1)

    async def record_start(
        self, call_id: str, path: str, *, stereo: bool = False, append: bool = False
    ) -> None:
        path = file_path("recording path", path)  # AMI joins file,options,command
        # D: interleave what the channel receives and what it sends (stereo);
        # a: append to the file (the resume of a gap pause).
        options = ("D" if stereo else "") + ("a" if append else "")
        headers = [("Channel", self._channel(call_id)), ("File", path)]
        if options:
            headers.append(("Options", options))
        await self._send("MixMonitor", headers)

    async def record_stop(self, call_id: str, path: str) -> None:
        # StopMixMonitor stops every MixMonitor on the channel; the engine runs
        # at most one per call, so ``path`` needs no MixMonitorID lookup.
        await self._send("StopMixMonitor", [("Channel", self._channel(call_id))])

    async def record_mute(self, call_id: str, path: str, muted: bool) -> None:
        # MixMonitorMute replaces the audio with silence and keeps writing: the timeline
        # stays whole. Direction both: neither party is heard while muted.
        await self._send(
            "MixMonitorMute",
            [
                ("Channel", self._channel(call_id)),
                ("Direction", "both"),
                ("State", "1" if muted else "0"),
            ],
        )

    async def record_pause(
        self, call_id: str, path: str, paused: bool, *, stereo: bool = False
    ) -> None:
        # MixMonitor has no pause: a gap is a stop, and the resume appends (option a) to the
        # same raw file, so the paused time is simply not in it.
        if paused:
            await self.record_stop(call_id, path)
        else:
            await self.record_start(call_id, path, stereo=stereo, append=True)

    async def get_var(self, call_id: str, name: str) -> str | None:
        """Channel variable value; None when unset or empty (AMI cannot tell
        the two apart: Getvar answers ``Value: `` for both)."""
        reply = await self._send(
            "Getvar", [("Channel", self._channel(call_id)), ("Variable", variable_name(name))]
        )
        value = reply.get("Value")
        return value or None

    async def resume_amd(
        self, call_id: str, *, answered: bool, params: AmdOverrides | None = None
    ) -> None:
        """An Amd() leg taken over after a restart, with no AmdResult yet (base.ResumesAmd).

        AMD() runs in [engine-amd] on the switch whatever the engine does (with the call's
        own arguments, ``params`` is not needed here): while it still
        runs, its VarSets and UserEvent reach this connection. When it ended while nobody
        listened, those events are lost, but AMDSTATUS and AMDCAUSE stay on the channel.
        """
        if not answered:
            return  # AMD() starts at the answer; its events will come
        status = await self.get_var(call_id, "AMDSTATUS")
        if status is None:
            return  # still analysing
        cause = await self.get_var(call_id, "AMDCAUSE") or ""
        for event in self._translator.amd_from_vars(call_id, status, cause, self._now()):
            self._publish(event)

    async def set_var(self, call_id: str, name: str, value: str) -> None:
        value = variable_value(name, value)
        await self._send(
            "Setvar",
            [
                ("Channel", self._channel(call_id)),
                ("Variable", variable_name(name)),
                ("Value", value),
            ],
        )

    async def live_calls(self) -> list[LiveChannel]:
        return await self._list_channels(self._client)

    async def trunk_status(self) -> dict[str, TrunkReachability]:
        """Reachability per PJSIP endpoint (see :mod:`.endpoints`)."""
        result = await self._client.send_list_action("PJSIPShowEndpoints")
        return endpoint_reachability(result.events)
