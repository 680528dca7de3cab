"""``FreeSwitchDriver``: the :class:`engine.pbx.base.PbxDriver` for FreeSWITCH 1.10.

Control and events go over one inbound ESL connection (:class:`EslClient`);
IVR runs on the outbound-socket server (:mod:`.outbound`), which the dialplan
or an originate reaches with ``socket <host>:<port> async full``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Literal

from engine.core.clock import now as wall_now
from engine.core.errors import ActionFailed, ProtocolError, UnsafeValue
from engine.core.lifecycle import AsyncResource
from engine.pbx import base
from engine.pbx.event_queue import EventFanout
from engine.pbx.freeswitch import eavesdrop, syntax
from engine.pbx.freeswitch.amd import AmdSessions
from engine.pbx.freeswitch.causes import name_from_q850
from engine.pbx.freeswitch.esl_client import DEFAULT_EVENTS, EslClient
from engine.pbx.freeswitch.esl_codec import EslEvent, encode_sendmsg
from engine.pbx.freeswitch.live_view import LiveView
from engine.pbx.freeswitch.media_tap import MediaTap, TapStream
from engine.pbx.freeswitch.normalize import Normalizer
from engine.pbx.freeswitch.outbound import IVR_FLOW_VAR
from engine.speech.amd import AmdOverrides, AmdParams

log = logging.getLogger(__name__)

Reachability = Literal["reachable", "unreachable", "unknown"]


#: Hold music per class when the driver is given no mapping for it: FreeSWITCH's own
#: mod_local_stream classes (vanilla local_stream.conf.xml defines ``default`` and ``moh``).
#: A stream with no files plays nothing: uuid_broadcast still answers +OK, and the
#: playback ends at once with FILE NOT FOUND (moh-local-stream-missing.esl).
def default_moh_stream(moh_class: str) -> str:
    return f"local_stream://{moh_class}"


#: Wait before the resync's ``show channels``: longer than the 49-198 ms by which
#: FreeSWITCH's channel rows lag its events (measured, show-channels-lag.esl).
RESYNC_SETTLE_S = 0.25
#: Where a leg is parked again (dialplans/freeswitch/engine.xml ``engine_park``, in the
#: ``default`` context, like ``engine_safe_harbour``: engine/wiring/campaigns.py).
PARK_EXTEN, PARK_CONTEXT = "engine_park", "default"


def _check_token(value: str, what: str) -> str:
    # Everything below is pasted into one command line; whitespace or quotes
    # would split arguments, a newline (or any control character) would start
    # a second command.
    if not value or any(c.isspace() or c in "'\"{}" or ord(c) < 0x20 for c in value):
        raise UnsafeValue(f"{what} {value!r} must be a non-empty token without spaces or quotes")
    return syntax.check_no_control(value, what)


def _uid(call_id: str) -> str:
    return _check_token(call_id, "call_id")


def dial_string(target: base.DialTarget) -> str:
    """The leg's dial string; every part is checked against what it may hold
    (engine/pbx/freeswitch/syntax.py), so no target can add legs or variables."""
    if target.kind == "trunk":
        return f"sofia/gateway/{syntax.gateway(target.name)}/{syntax.number(target.number)}"
    if target.kind == "endpoint":
        return f"user/{syntax.endpoint(target.name)}"
    return syntax.raw_dial_string(target.name)


class FreeSwitchDriver(AsyncResource):
    """PbxDriver over FreeSWITCH's event socket."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 8021,
        password: str = "ClueCon",
        *,
        command_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        heartbeat_timeout: float = 45.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        ivr_host: str = "127.0.0.1",
        ivr_port: int = 8084,
        clock: Callable[[], float] = wall_now,
        event_queue_size: int = 10000,
        resync_settle_s: float = RESYNC_SETTLE_S,
        moh_streams: Mapping[str, str] | None = None,
        media_tap: MediaTap | None = None,
        amd_params: AmdParams | None = None,
    ) -> None:
        self._name = name
        #: Hold-music class -> what uuid_broadcast plays (a local_stream://, a file, or a
        #: tone_stream:// as on the recording rig); other classes: default_moh_stream().
        self.moh_streams = {
            syntax.flow(k): _check_token(v, f"hold music stream of class {k}")
            for k, v in (moh_streams or {}).items()
        }
        self.ivr_host = ivr_host
        self.ivr_port = ivr_port
        self._clock = clock
        self._normalize = Normalizer(switch=name)
        # One bounded queue per events() stream, with the shared shedding policy
        # (engine/pbx/event_queue.py). The first stream adopts a backlog queue that
        # buffers what happened before anyone subscribed (the first Resynced...).
        self.fanout = EventFanout(name, event_queue_size, keep_backlog=True)
        self._live: list[base.LiveChannel] = []
        # What the events said about each leg: show channels lags them (live_view.py).
        self._view = LiveView()
        self._seen_since_sync: set[str] = set()
        #: Legs bridge(keep_call=True) set park_after_bridge on (dropped at their hangup).
        self._park_after_bridge: set[str] = set()
        self.resync_settle_s = resync_settle_s
        #: Where unicast audio of Amd() legs arrives (docs/amd.md). The driver starts and
        #: stops it with itself (its UDP socket lives as long as the driver).
        self.media_tap = media_tap or MediaTap()
        self.amd = AmdSessions(
            name,
            self.media_tap,
            amd_params or AmdParams(),
            self._send_unicast,
            self._put,
            clock,
        )
        self.client = EslClient(
            host,
            port,
            password,
            events=DEFAULT_EVENTS,
            command_timeout=command_timeout,
            connect_timeout=connect_timeout,
            heartbeat_timeout=heartbeat_timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            on_event=self._on_event,
            on_state=self._on_state,
            on_connected=self._resync,
            name=name,
        )

    # ------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "freeswitch"

    @property
    def state(self) -> base.LinkState:
        return self.client.state

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.media_tap.start()
        await self.client.start()

    async def stop(self) -> None:
        await self.amd.stop()
        await self.client.stop()
        await self.media_tap.stop()

    async def wait_up(self, timeout_s: float = 10.0) -> base.LinkState:
        """Wait for UP (or REJECTED, which will not change on its own)."""
        return await self.client.wait_state(
            base.LinkState.UP, base.LinkState.REJECTED, timeout_s=timeout_s
        )

    # ----------------------------------------------------------------- events

    def events(self) -> AsyncIterator[base.PbxEvent]:
        """A new stream of every event from now on (the first stream also gets what was
        emitted before it). Every stream sees every event: the call service, trunk health
        and recorders each subscribe on their own, as on the Asterisk driver."""
        return self.fanout.subscribe()

    def _put(self, event: base.PbxEvent) -> None:
        self.fanout.publish(event)

    def _on_event(self, event: EslEvent) -> None:
        if event.name == "CHANNEL_ANSWER":
            # The tap's L16 runs at the codec's rate (8000 PCMU, 16000 G722: unicast-*.esl).
            rate = event.get("Channel-Read-Codec-Rate")
            self.amd.on_answer(event.unique_id, int(rate) if rate.isdigit() else 8000)
        try:
            for normalized in self._normalize(event, self._clock()):
                self._view.observe(normalized)
                if isinstance(normalized, base.HungUp | base.OriginateFailed):
                    # Before the HungUp: an analysis cut short reports HANGUP first.
                    self.amd.on_hangup(normalized.call_id)
                elif isinstance(normalized, base.Bridged):
                    self.amd.on_left_park(normalized.call_id)
                if isinstance(normalized, base.HungUp):
                    self._park_after_bridge.discard(normalized.call_id)
                if normalized.call_id and self.client.state is base.LinkState.SYNCING:
                    # Legs active during the resync (bounded: only while syncing).
                    self._seen_since_sync.add(normalized.call_id)
                self._put(normalized)
        except ProtocolError as err:
            log.warning(
                "malformed %s event from %s: %s",
                event.name,
                self._name,
                err,
                extra={"switch": self._name},
            )

    def _on_state(self, state: base.LinkState, reason: str) -> None:
        self._put(
            base.LinkChanged(
                switch=self._name, call_id="", ts=self._clock(), state=state, reason=reason
            )
        )

    async def _resync(self, client: EslClient) -> None:
        # Runs in SYNCING after every (re)connect, before new work is taken:
        # events sent while we were away are lost, so ask what is alive now.
        # show channels lags the events by up to ~0.2 s (show-channels-lag.esl):
        # wait that long first, so the rows reflect everything that happened
        # before we subscribed; what happened since, the events tell, and they
        # win over the rows (a leg seen answered or hung up stays so).
        self._seen_since_sync = set()
        await asyncio.sleep(self.resync_settle_s)
        text = await client.api("show channels as json", allow_syncing=True)
        live = self._view.merge(parse_channels_json(text))
        self._view.forget_missing(live, keep=self._seen_since_sync)
        self._live = live
        self.amd.keep_only({c.call_id for c in live})
        self._put(base.Resynced(switch=self._name, call_id="", ts=self._clock(), live=tuple(live)))
        try:
            gateways = parse_gateway_table(
                await client.api("sofia status gateway", allow_syncing=True)
            )
        except ActionFailed:
            gateways = {}
        for trunk, status in gateways.items():
            self._put(
                base.TrunkStatus(
                    switch=self._name, call_id="", ts=self._clock(), trunk=trunk, status=status
                )
            )

    # --------------------------------------------------------------- commands

    async def _api(self, command: str) -> str:
        text = await self.client.api(command)
        if text.startswith("-ERR") or text.startswith("-USAGE"):
            raise ActionFailed(f"{command}: {text.strip()}", response={"body": text})
        return text

    async def originate(self, request: base.OriginateRequest) -> None:
        """Place one leg with ``bgapi originate``; returns once FreeSWITCH took the job.

        One leg per attempt: the transcripts show a ``|`` failover chain giving
        up after a 503 without trying the next leg, so failover belongs to the
        engine. The outcome arrives as events: ChannelCreated ... HungUp, or
        OriginateFailed when no channel was ever created (gateway down).
        """
        call_id = _check_token(request.call_id, "call_id")
        variables: dict[str, str] = {
            "origination_uuid": call_id,
            "originate_timeout": str(max(1, int(request.timeout_s))),
        }
        if request.caller_id_num:
            variables["origination_caller_id_number"] = request.caller_id_num
        if request.caller_id_name:
            variables["origination_caller_id_name"] = request.caller_id_name
        if isinstance(request.then, base.IvrTarget):
            variables[IVR_FLOW_VAR] = syntax.flow(request.then.flow)
        for key, value in request.variables.items():
            if syntax.var_name(key) in variables:
                # FreeSWITCH keeps the last one: the caller could swap the call id.
                raise UnsafeValue(f"variable {key!r} is set by the engine and cannot be given")
            variables[key] = value
        block = ",".join(
            f"{k}={syntax.var_value(v, f'originate variable {k}')}" for k, v in variables.items()
        )
        command = f"originate {{{block}}}{dial_string(request.target)} {self._then(request.then)}"
        job_uuid = f"orig-{call_id}"
        self._normalize.jobs[job_uuid] = call_id
        if isinstance(request.then, base.Amd):
            # Before the write: the answer can come before bgapi's reply is read.
            self.amd.want(call_id, request.then.params)
        try:
            await self.client.bgapi(command, job_uuid=job_uuid)
        except BaseException:
            self._normalize.jobs.pop(job_uuid, None)
            self.amd.forget(call_id)
            raise

    def _then(self, then: base.Then) -> str:
        if isinstance(then, base.Park | base.Amd):
            # Amd: the unicast tap only sends from inside the park loop (switch_ivr_park).
            return "&park()"
        if isinstance(then, base.DialplanTarget):
            return (
                f"{_check_token(then.exten, 'exten')} XML {_check_token(then.context, 'context')}"
            )
        # Quoted: the socket argument holds spaces and originate splits its
        # arguments on spaces, honouring single quotes.
        return f"'&socket({self.ivr_host}:{self.ivr_port} async full)'"

    async def resume_amd(
        self, call_id: str, *, answered: bool, params: AmdOverrides | None = None
    ) -> None:
        """An Amd() leg taken over after a restart, with no AmdResult yet (base.ResumesAmd).
        ``params``: the call's own AMD parameters (its campaign's), as at its originate.

        Not answered yet: its analysis starts at the answer, as for a leg this process
        originated. Answered: the previous process's analysis is gone, and so is the
        previous process's UDP socket, but FreeSWITCH's tap still runs (there is no stop
        command, and a send to a closed local port does not fail). A transfer to
        engine_park ends it (unicast-*.esl: no datagram after ``uuid_transfer ...
        engine_park``), and a new tap to this process's socket then starts in the new park
        loop; the leg's rate is ``uuid_getvar <uuid> read_rate`` (recorded: ``8000`` on a
        PCMU call, ``16000`` on G722). The analysis is a resumed one (docs/amd.md).
        """
        uid = _uid(call_id)
        if self.amd.knows(uid):
            return  # this process originated it, or already resumed it
        if not answered and not self._view.answered(uid):
            self.amd.want(uid, params)
            return
        rate_text = (await self._api(f"uuid_getvar {uid} read_rate")).strip()
        rate = int(rate_text) if rate_text.isdigit() else 8000
        await self._api(f"uuid_transfer {uid} {PARK_EXTEN} XML {PARK_CONTEXT}")
        if self._view.ended(uid):
            return
        self.amd.resume(uid, rate, params)

    async def _send_unicast(self, call_id: str, headers: list[tuple[str, str]]) -> None:
        """``sendmsg <uuid>`` / ``call-command: unicast``: +OK and no event (unicast-*.esl)."""
        reply = await self.client.command(
            encode_sendmsg(_uid(call_id), "unicast", headers), what=f"sendmsg {call_id} unicast"
        )
        if not reply.ok:
            raise ActionFailed(f"sendmsg {call_id} unicast: {reply.reply_text}")

    def open_tap_of(self, call_id: str) -> TapStream | None:
        """The leg's running tap (from an earlier speech turn), if any."""
        stream = self.media_tap.stream_of(call_id)
        return None if stream is None or stream.closed else stream

    async def open_audio_tap(self, call_id: str) -> TapStream:
        """Stream a parked leg's incoming audio to the engine (speech input): the same
        ``unicast`` tap and UDP socket as AMD, so one engine-side path feeds both. The tap
        carries L16 at the leg's codec rate (``read_rate``: 8000 PCMU, 16000 G722) and stops
        when the leg leaves park; its port is freed on hangup or transfer as for AMD."""
        rate_text = await self.get_var(call_id, "read_rate")
        rate = int(rate_text) if rate_text and rate_text.isdigit() else 8000
        stream = self.media_tap.open(call_id, rate)
        try:
            await self._send_unicast(call_id, self.media_tap.sendmsg_headers(stream))
        except BaseException:
            self.media_tap.release(call_id)
            raise
        return stream

    async def spy(self, request: base.SpyRequest) -> None:
        """``bgapi originate {...}<supervisor> &eavesdrop(<agent leg>)``, the mode chosen by
        variables on the supervisor's leg (:mod:`.eavesdrop`, recorded in eavesdrop-*.esl).
        The outcome arrives as the supervisor leg's events, as for :meth:`originate`."""
        call_id = _check_token(request.call_id, "call_id")
        spied = _check_token(request.spied_call_id, "spied call_id")
        # The recorded order (eavesdrop-*.esl.sent): uuid, caller id, the mode's variables;
        # then the ring timeout, which the recordings (an answering SIPp) did not need.
        variables: dict[str, str] = {"origination_uuid": call_id}
        if request.caller_id_num:
            variables["origination_caller_id_number"] = request.caller_id_num
        if request.caller_id_name:
            variables["origination_caller_id_name"] = request.caller_id_name
        variables.update(eavesdrop.variables(request.mode))
        variables["originate_timeout"] = str(max(1, int(request.timeout_s)))
        block = ",".join(
            f"{k}={syntax.var_value(v, f'originate variable {k}')}" for k, v in variables.items()
        )
        command = f"originate {{{block}}}{dial_string(request.target)} &eavesdrop({spied})"
        job_uuid = f"orig-{call_id}"
        self._normalize.jobs[job_uuid] = call_id
        try:
            await self.client.bgapi(command, job_uuid=job_uuid)
        except BaseException:
            self._normalize.jobs.pop(job_uuid, None)
            raise

    async def spy_mode(self, call_id: str, mode: base.SpyMode) -> None:
        """``uuid_recv_dtmf <supervisor leg> <digit>``: the digit is received by the leg, so
        eavesdrop's loop reads it (recorded; ``uuid_send_dtmf`` would send it to the phone)."""
        await self._api(f"uuid_recv_dtmf {_uid(call_id)} {eavesdrop.mode_digit(mode)}")

    async def hangup(self, call_id: str, cause: int = 16) -> None:
        await self._api(f"uuid_kill {_uid(call_id)} {name_from_q850(cause)}")

    async def answer(self, call_id: str) -> None:
        await self._api(f"uuid_answer {_uid(call_id)}")

    async def redirect(
        self, call_id: str, target: base.DialplanTarget | base.Park | base.IvrTarget
    ) -> None:
        uid = _uid(call_id)
        # A transfer ends the leg's park, and with it an AMD tap (there is no stop command).
        self.amd.on_left_park(uid)
        if isinstance(target, base.Park):
            await self._api(f"uuid_park {uid}")
        elif isinstance(target, base.DialplanTarget):
            exten = _check_token(target.exten, "exten")
            await self._api(
                f"uuid_transfer {uid} {exten} XML {_check_token(target.context, 'context')}"
            )
        else:
            flow = syntax.flow(target.flow)
            # The inline dialplan: apps separated by ',', app and arg by ':'.
            await self._api(
                f"uuid_transfer {uid} 'set:{IVR_FLOW_VAR}={flow},"
                f"socket:{self.ivr_host}:{self.ivr_port} async full' inline"
            )

    async def bridge(self, call_id: str, other_call_id: str, *, keep_call: bool = False) -> None:
        """``uuid_bridge`` (after ``uuid_break <uuid> all`` when hold music was asked for on
        ``call_id`` and has not started: see below). Recorded
        (acd-moh-bridge-agent-hangs-up*.esl): when the other leg hangs up, ``call_id`` is
        hung up too unless its ``park_after_bridge`` is true, in which case it gets
        CHANNEL_UNBRIDGE and CHANNEL_PARK and stays up. A leg this driver set it on gets it
        set back to false for a bridge without ``keep_call``, so a value left by an earlier
        bridge cannot decide this one."""
        uid, other = _uid(call_id), _check_token(other_call_id, "call_id")
        if uid in self._normalize.moh and uid not in self._normalize.moh_playing:
            # Hold music asked for and not started yet: uuid_broadcast only queues the
            # playback for the leg's session thread, and a playback still queued when the
            # bridge starts is played INSIDE the bridge (switch_ivr_bridge.c suspends the
            # bridge to run a queued private event): a looping stream forever, the agent
            # unheard. `uuid_break <uuid> all` flushes that queue (mod_commands'
            # break_function); music already playing is broken by the bridge itself.
            await self._api(f"uuid_break {uid} all")
        if keep_call:
            await self._api(f"uuid_setvar {uid} park_after_bridge true")
            self._park_after_bridge.add(uid)
        elif uid in self._park_after_bridge:
            await self._api(f"uuid_setvar {uid} park_after_bridge false")
            self._park_after_bridge.discard(uid)
        await self._api(f"uuid_bridge {uid} {other}")

    async def moh_start(self, call_id: str, moh_class: str = "default") -> None:
        """``uuid_broadcast <uuid> <stream> aleg`` (PLAYBACK_START: MohStarted). A bridge
        breaks the music by itself (PLAYBACK_STOP, recorded)."""
        uid = _uid(call_id)
        stream = self.moh_streams.get(moh_class) or default_moh_stream(syntax.flow(moh_class))
        self._normalize.moh[uid] = (moh_class, stream)
        await self._api(f"uuid_broadcast {uid} {stream} aleg")

    async def moh_stop(self, call_id: str) -> None:
        """``uuid_break <uuid> all``: ends the playback; the leg goes back to its park."""
        await self._api(f"uuid_break {_uid(call_id)} all")

    async def play(self, call_id: str, prompt: str) -> None:
        if "::" in prompt:
            # uuid_broadcast reads "<app>::<args>" as an application to execute.
            raise UnsafeValue(f"prompt {prompt!r}: '::' would run an application, not play")
        await self._api(f"uuid_broadcast {_uid(call_id)} {_check_token(prompt, 'prompt')} aleg")

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        if not digits or any(c not in "0123456789*#ABCDabcdwW@" for c in digits):
            raise UnsafeValue(f"DTMF digits {digits!r} must be 0-9 * # A-D")
        await self._api(f"uuid_send_dtmf {_uid(call_id)} {digits}")

    def record_format(self, stereo: bool) -> base.RecordingFormat:
        # mod_sndfile's WAV at the call's rate (16 kHz on G722: record-mask-unmask.wav).
        return base.RecordingFormat(".wav", "wav")

    async def record_start(
        self, call_id: str, path: str, *, stereo: bool = False, append: bool = False
    ) -> None:
        uid, path = _uid(call_id), _check_token(path, "path")
        # RECORD_STEREO must be set before the start (record-stereo-pause-resume.esl):
        # channel 1 what the leg read from its far end, channel 2 what it sent.
        if append:
            # Never needed: FreeSWITCH pauses natively (record_pause), so no file is resumed.
            raise ActionFailed("FreeSWITCH recordings are not appended to; use record_pause")
        if stereo:
            await self._api(f"uuid_setvar {uid} RECORD_STEREO true")
        await self._api(f"uuid_record {uid} start {path}")

    async def record_stop(self, call_id: str, path: str) -> None:
        await self._api(f"uuid_record {_uid(call_id)} stop {_check_token(path, 'path')}")

    async def record_mute(self, call_id: str, path: str, muted: bool) -> None:
        # mask/unmask (record-mask-unmask.esl): +OK Success and no event; the masked time
        # stays in the file as digital silence.
        verb = "mask" if muted else "unmask"
        await self._api(f"uuid_record {_uid(call_id)} {verb} {_check_token(path, 'path')}")

    async def record_pause(
        self, call_id: str, path: str, paused: bool, *, stereo: bool = False
    ) -> None:
        # pause/resume (record-stereo-pause-resume.esl): accepted although the usage line
        # lists only start|stop|mask|unmask; no event; the paused time is LEFT OUT of the file.
        verb = "pause" if paused else "resume"
        await self._api(f"uuid_record {_uid(call_id)} {verb} {_check_token(path, 'path')}")

    async def get_var(self, call_id: str, name: str) -> str | None:
        text = await self._api(f"uuid_getvar {_uid(call_id)} {syntax.var_name(name)}")
        value = text.rstrip("\n")
        # uuid_getvar prints "_undef_" for a variable that is not set.
        return None if value == "_undef_" else value

    async def set_var(self, call_id: str, name: str, value: str) -> None:
        syntax.check_no_control(value, f"variable {name} value")
        await self._api(f"uuid_setvar {_uid(call_id)} {syntax.var_name(name)} {value}")

    async def live_calls(self) -> list[base.LiveChannel]:
        """``show channels``, corrected by the events already seen (the rows lag them)."""
        return self._view.merge(parse_channels_json(await self._api("show channels as json")))

    async def trunk_status(self) -> dict[str, Reachability]:
        """``sofia status gateway`` as {gateway: reachable|unreachable|unknown}."""
        return dict(parse_gateway_table(await self._api("sofia status gateway")))


def parse_channels_json(text: str) -> list[base.LiveChannel]:
    """Rows of ``show channels as json`` (``{"row_count": 0}`` when idle)."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ActionFailed(f"show channels as json: not JSON: {text[:80]!r}") from err
    rows = data.get("rows", []) if isinstance(data, dict) else []
    live: list[base.LiveChannel] = []
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        callstate = str(row.get("callstate", ""))
        state: str = (
            "answered"
            if callstate in ("ACTIVE", "HELD")
            else "ringing"
            if callstate in ("RINGING", "EARLY", "RING_WAIT")
            else "other"
        )
        uid = str(row.get("uuid", ""))
        call_uuid = str(row.get("call_uuid", ""))
        live.append(
            base.LiveChannel(
                call_id=uid,
                channel=str(row.get("name", "")),
                state=state,  # type: ignore[arg-type]
                linked_id=call_uuid if call_uuid != uid else "",
            )
        )
    return live


def parse_gateway_table(text: str) -> dict[str, Reachability]:
    """Parse ``sofia status gateway`` (the table with one line per gateway).

    Columns are tab separated: ``profile::gateway  data  state  ping  ...``.
    The registration State is what the table shows; REGED is reachable,
    FAILED/FAIL_WAIT/UNREGED/DOWN are not, NOREG (no registration configured)
    says nothing about reachability.
    """
    result: dict[str, Reachability] = {}
    for line in text.splitlines():
        cols = [c.strip() for c in line.split("\t")]
        if len(cols) < 3 or "::" not in cols[0] or cols[0].startswith("Profile::"):
            continue
        gateway = cols[0].split("::", 1)[1]
        state = cols[2]
        result[gateway] = (
            "reachable"
            if state == "REGED"
            else "unreachable"
            if state in ("FAILED", "FAIL_WAIT", "UNREGED", "DOWN")
            else "unknown"
        )
    return result
