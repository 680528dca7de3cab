"""A fake FreeSWITCH 1.10 event socket that replays the recorded transcripts.

    async with FakeFreeSwitch() as fs:
        driver = FreeSwitchDriver("fs1", fs.host, fs.port, fs.password)

Inbound ESL: auth (``-ERR invalid`` + disconnect notice on a wrong password,
``text/rude-rejection`` when ``fs.reject_all``), ``event plain|json`` with
CUSTOM subclasses, ``api``/``bgapi`` (client Job-UUID), ``sendmsg``, ``exit``,
and HEARTBEAT every ``heartbeat_interval`` seconds.

``bgapi originate`` plays the far end by number, as the real carrier dialplan
(tests/fixtures/freeswitch-1.10/config/carrier-dialplan.xml) did, by replaying
the matching transcript's events with ids, numbers and job substituted:

    61XXX answered (originate-answered.esl)   62XXX busy 486      63XXX congestion 503
    64XXX no answer (originate-noanswer.esl)  65XXX answers, DTMF 1234#
    67XXX far end runs ``socket`` to ``fs.carrier_socket`` (outbound-socket-ivr.esl)
    sofia/gateway/<gw>/<number>: what gateway <gw> does, per ``fs.gateways``:
      "carrier" (carrier, limited, any unknown name): the number plan above
      "congested" (congested): every call gets the recorded 503 congestion,
          whatever the number, until ``fs.repair("congested")``
      "dead" (rig_down, rig_down_reg): -ERR GATEWAY_DOWN at once

An originate whose application is ``&socket(host:port async full)`` connects
the answered A-leg to that outbound-socket server and plays FreeSWITCH's side
of the recorded outbound session (connect/myevents/linger, execute with
event-lock, CHANNEL_EXECUTE(_COMPLETE) with the Event-UUID as
Application-UUID, play_and_get_digits, playback, record, set, hangup).

Third batch (the ACD, tests/fixtures/freeswitch-1.10 README "Third batch"): agents' phones
(``sofia/external/<user>@127.0.0.1:<port>`` and ``user/<name>``, per ``fs.agent_ports`` /
``fs.agents``: "answer" like SIPp's uas on 5095, "ring" like the ring-forever SIPp on 5097,
with ``originate_timeout`` -> NO_ANSWER), 60XXX callers who hang up 9 s after the answer,
hold music (``uuid_broadcast`` of a looping stream plays until a bridge breaks it; a
``local_stream://`` has no files: FILE NOT FOUND), ``uuid_bridge`` with the recorded event
order, and the end of a bridge: the other leg is hung up, or parked when its
``park_after_bridge`` is true; a caller who hangs up takes the agent with it.
``uuid_transfer <uuid> engine_safe_harbour XML default`` plays the channel's
``ENGINE_SAFE_HARBOUR_PROMPT`` and hangs it up, as dialplans/freeswitch/engine.xml does.

The IVR ``queue`` hand-off (not recorded; modelled on the 1.10.12 source, docs/freeswitch.md
"The IVR `queue` step on FreeSWITCH"): ``uuid_park`` of a leg whose outbound-socket session runs
ends the socket app (CHANNEL_UNPARK, its CHANNEL_EXECUTE_COMPLETE) and parks the leg in the core
(CHANNEL_PARK), all seen by the session; the session's ``exit`` then closes it with a disconnect
notice and the leg stays up. ``fs.sessions`` lists every outbound session.

Eavesdrop (tests/fixtures/freeswitch-1.10 README "Third batch", eavesdrop-*.esl): an
originate whose application is ``&eavesdrop(<target>)`` replays the supervisor leg S of the
recording its variables select (none: eavesdrop-listen.esl, ``eavesdrop_whisper_bleg``:
eavesdrop-whisper-agent.esl, both: eavesdrop-barge.esl): S's CREATE .. ANSWER, BACKGROUND_JOB,
and MEDIA_BUG_START (function eavesdrop) on the TARGET; ``uuid_kill S`` gives the recorded end
(S HANGUP, MEDIA_BUG_STOP on the target, S EXECUTE_COMPLETE eavesdrop, S HANGUP_COMPLETE);
``uuid_recv_dtmf S <d>`` answers ``+OK <S> received DTMF <d>.``, fires a DTMF event on S and
changes the session's mode (0 listen, 1 caller hears, 2 agent hears, 3 both), and ``*`` ends it
as recorded (eavesdrop-dtmf-mode-switch.esl: MEDIA_BUG_STOP, EXECUTE_COMPLETE, S hangs up
NORMAL_CLEARING). ``fs.spies`` holds each session (its mode, the digits it received).

Recorded timings are kept, multiplied by ``time_scale``. What the fake does
not reproduce is listed in docs/freeswitch.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import time
import uuid as uuidlib
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from tests.fakes.esl_transcripts import (
    TEvent,
    api_exchanges,
    channel_rows,
    events_of,
    fs_url_encode,
    outbound_transcript,
    substitute,
    transcript,
)
from tests.fakes.fake_recorder import START_LOSS_S, FakeRecording
from tests.fakes.fake_unicast import UnicastTap, audio_for
from tests.fakes.fake_voicemail import CallerSpeech, run_record, with_codec

TEMPLATE_A = "11111111-aaaa-4bbb-8ccc-0000000000"


@dataclass(frozen=True)
class Scenario:
    key: str
    file: str
    number: str  # number dialled in the recording
    a_uuid: str
    job: str
    caller_id: str = "0000000000"


SCENARIOS: dict[str, Scenario] = {
    "61": Scenario(
        "answered", "originate-answered.esl", "61001", TEMPLATE_A + "02", "job-0002", "5550001"
    ),
    "62": Scenario("busy", "originate-busy.esl", "62001", TEMPLATE_A + "04", "job-0004"),
    "63": Scenario(
        "congestion", "originate-congestion.esl", "63001", TEMPLATE_A + "05", "job-0005"
    ),
    "64": Scenario("noanswer", "originate-noanswer.esl", "64001", TEMPLATE_A + "06", "job-0006"),
    "65": Scenario(
        "dtmf",
        "dtmf-from-far-end.esl",
        "65001",
        TEMPLATE_A + "09",
        "job-0009",
    ),
    "67": Scenario("ivr", "outbound-socket-ivr.esl", "67001", TEMPLATE_A + "11", "job-0011"),
    # Second batch. 66XXX: answered and kept up 30 s (the call part of
    # show-channels-lag.esl; the recording ends with OUR uuid_kill, so when
    # nobody kills it the fake ends it the same way after 30 s).
    "66": Scenario(
        "long", "show-channels-lag.esl", "66023", TEMPLATE_A + "23", "job-0023", "5550001"
    ),
    # Third batch. 60XXX: like 66XXX but the far end hangs up ~9 s after the answer
    # (acd-moh-bridge-caller-hangs-up.esl); the call part is 66XXX's recording.
    "60": Scenario(
        "leaves", "show-channels-lag.esl", "66023", TEMPLATE_A + "23", "job-0023", "5550001"
    ),
    # 68XXX: the far end answers 603 Decline (through the carrier gateway).
    "68": Scenario(
        "decline", "originate-decline-603-gateway.esl", "68002", TEMPLATE_A + "25", "job-0025"
    ),
    # 69XXX: answers after 1 s, parked, far end plays a tone 25 s then 5 s silence and hangs
    # up (the call part of unicast-l16-g722.esl: a default G722 call, 16 kHz). With
    # absolute_codec_string=PCMU: TAP_PCMU. Its unicast audio: fake_unicast.py.
    "69": Scenario(
        "tap", "unicast-l16-g722.esl", "69067", TEMPLATE_A + "67", "job-0067", "5550001"
    ),
}
#: 69XXX on a PCMU call (unicast-l16-pcmu.esl: read_rate 8000).
TAP_PCMU = Scenario(
    "tap", "unicast-l16-pcmu.esl", "69066", TEMPLATE_A + "66", "job-0066", "5550001"
)
#: 69XXX: real seconds (not scaled: the tap's audio runs in real time) the far end stays up.
TAP_CALL_S = 30.0
#: Dialled through a sofia gateway, a call's events carry the gateway's variables
#: (sip_gateway_name...), which the first batch's sofia/external recordings lack.
#: Where the second batch recorded the gateway variant, it is used for gateway calls.
GATEWAY_SCENARIOS: dict[str, Scenario] = {
    # The call part of originate-answered-engine-hangup.esl's first call, then the far
    # end's recorded ending of originate-answered.esl (see _gateway_answered_events).
    "61": Scenario(
        "answered-gw",
        "originate-answered-engine-hangup.esl",
        "61026",
        TEMPLATE_A + "26",
        "job-0026",
        "5550001",
    ),
}
EXTERNAL_SCENARIOS: dict[str, Scenario] = {
    "68": Scenario("decline", "originate-decline-603.esl", "68001", TEMPLATE_A + "24", "job-0024"),
}
#: The dialer's safe-harbour extension (dialplans/freeswitch/engine.xml): prompt, then hangup.
SAFE_HARBOUR_EXTEN = "engine_safe_harbour"
#: The channel variable naming the IVR flow (engine/pbx/freeswitch/outbound.py).
IVR_FLOW = "engine_ivr_flow"
#: Recorded spacing of DTMF sent with uuid_send_dtmf (outbound-socket-gather-success.esl).
DTMF_SPACING_S = 0.52
#: Seconds the 66XXX far end stays up after its tone before it hangs up.
LONG_CALL_S = 30.0
#: 60XXX: the far end's BYE came 9.0 s after our CHANNEL_PARK (acd-moh-bridge-caller-hangs-up.esl).
CALLER_LEAVES_S = 9.0

# Third batch (the ACD): C = caller leg, A = agent leg in each recording.
ACD_AGENT_HANGS_UP = "acd-moh-bridge-agent-hangs-up.esl"  # C 41, A 42
ACD_PARK_AFTER_BRIDGE = "acd-moh-bridge-agent-hangs-up-park-after-bridge.esl"  # C 47, A 48
ACD_CALLER_HANGS_UP = "acd-moh-bridge-caller-hangs-up.esl"  # C 43, A 44
ACD_AGENT_NO_ANSWER = "acd-moh-agent-no-answer.esl"  # C 45, A 46
MOH_MISSING = "moh-local-stream-missing.esl"  # C 40
#: uuid_hold on C bridged to A (C 71, A 72).
HOLD_FILE = "acd-bridge-uuid-hold.esl"
HOLD_LEGS = (TEMPLATE_A + "71", TEMPLATE_A + "72")
#: uuid_record start/mask/unmask/stop on C = 69049 (third batch).
RECORD_MASK = "record-mask-unmask.esl"
RECORD_MASK_C = "11111111-aaaa-4bbb-8ccc-000000000049"
ACD_LEGS: dict[str, tuple[str, str]] = {
    ACD_AGENT_HANGS_UP: (TEMPLATE_A + "41", TEMPLATE_A + "42"),
    ACD_PARK_AFTER_BRIDGE: (TEMPLATE_A + "47", TEMPLATE_A + "48"),
    ACD_CALLER_HANGS_UP: (TEMPLATE_A + "43", TEMPLATE_A + "44"),
    ACD_AGENT_NO_ANSWER: (TEMPLATE_A + "45", TEMPLATE_A + "46"),
    MOH_MISSING: (TEMPLATE_A + "40", ""),
    HOLD_FILE: HOLD_LEGS,
}
#: Real seconds between a uuid_broadcast's reply and its playback starting (see _moh_start).
BROADCAST_PICKUP_S = 0.02
#: What an agent's phone does: "answer" (SIPp uas: 180 and 200 at once) or "ring"
#: (180, never answers: the ring-forever SIPp, config/sipp-ring-forever.xml).
AgentMode = Literal["answer", "ring"]
#: The recording rig's phones by port (README "Third batch").
DEFAULT_AGENT_PORTS: dict[int, AgentMode] = {5095: "answer", 5096: "answer", 5097: "ring"}
#: Our answered leg hung up by uuid_kill: the first call of this recording. Our
#: leg's HANGUP_COMPLETE has sip_hangup_disposition send_bye and NO
#: sip_term_status; only the far leg (recv_bye) has 200.
ENGINE_HANGUP = Scenario(
    "engine-hangup",
    "originate-answered-engine-hangup.esl",
    "61026",
    TEMPLATE_A + "26",
    "job-0026",
    "5550001",
)
#: Our answered leg hung up by uuid_kill after a uuid_transfer to engine_park XML default
#: (the end of unicast-l16-g722.esl).
TRANSFERRED_HANGUP = Scenario(
    "transferred-hangup",
    "unicast-l16-g722.esl",
    "69067",
    TEMPLATE_A + "67",
    "job-0067",
    "5550001",
)
#: The same on a PCMU call (the end of unicast-l16-pcmu.esl: its codec headers say 8000).
TRANSFERRED_HANGUP_PCMU = Scenario(
    "transferred-hangup",
    "unicast-l16-pcmu.esl",
    "69066",
    TEMPLATE_A + "66",
    "job-0066",
    "5550001",
)
# The recording of a 61XXX call without origination_caller_id_number (its
# events lack the caller-id variables the other recording has).
ANSWERED_DEFAULT_CID = Scenario("answered", "record.esl", "61001", TEMPLATE_A + "10", "job-0010")
GATEWAY_DOWN = Scenario(
    "gateway-down", "originate-gateway-down.esl", "61001", TEMPLATE_A + "07", "job-0007"
)

#: What a sofia gateway does with an originate through it (``fs.gateways``).
#: "carrier": the far end plays the number plan; "congested": the far end
#: answers every INVITE with 503 (the recorded 63XXX outcome, whatever the
#: number), as a carrier out of capacity does; "dead": nothing listens at the
#: gateway's proxy (rig_down*, recorded: -ERR GATEWAY_DOWN, no channel).
GatewayMode = Literal["carrier", "congested", "dead"]
DEFAULT_GATEWAYS: dict[str, GatewayMode] = {
    "carrier": "carrier",
    "limited": "carrier",
    "congested": "congested",
    "rig_down": "dead",
    "rig_down_reg": "dead",
}
DEAD_GATEWAYS = {name for name, mode in DEFAULT_GATEWAYS.items() if mode == "dead"}

_DISCONNECT = (
    b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
    b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
)


def _reply(text: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = ["Content-Type: command/reply", f"Reply-Text: {text}"]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\n".join(lines) + "\n\n").encode()


def _api(text: str) -> bytes:
    body = text.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body


def _recorded_api(file: str, index: int) -> str:
    frames = [f for f in transcript(file) if f.headers.get("Content-Type") == "api/response"]
    return frames[index].body.decode()


def _split_args(text: str) -> list[str]:
    """Split on spaces honouring single quotes, as FreeSWITCH's originate does."""
    return [a.strip("'") for a in re.findall(r"'[^']*'|\S+", text)]


@dataclass
class Channel:
    uuid: str
    name: str
    number: str
    direction: str
    answered: bool = False
    #: What ``show channels`` says: it is read from FreeSWITCH's core database,
    #: which is written behind the events (see ``FakeFreeSwitch.db_lag``).
    db_answered: bool = False
    created_epoch: int = 0
    caller_id: str = ""
    peer: str = ""
    #: The leg uuid_bridge joined this one to ("" when not bridged).
    bridged_to: str = ""
    #: False once uuid_park parked it: no application runs, so its hangup has no
    #: CHANNEL_EXECUTE_COMPLETE (uuid-commands-live.esl).
    app_running: bool = True
    #: True on the leg uuid_bridge named first: the one its CHANNEL_BRIDGE fires on.
    bridge_first: bool = False
    #: The looping hold music playing on the leg ("" when none).
    playing: str = ""
    #: The leg it was last bridged to: FreeSWITCH keeps Other-Leg-* headers and
    #: signal_bond on later events (acd-moh-bridge-agent-hangs-up-park-after-bridge.esl).
    last_partner: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    #: What ``uuid_setvar`` set on the leg (in the order set) and what it unset: FreeSWITCH
    #: lists a channel's variables on every later event of the leg as ``variable_<name>``
    #: (park_after_bridge, RECORD_STEREO, bridge_generate_comfort_noise in the third batch).
    set_vars: dict[str, str] = field(default_factory=dict)
    unset_vars: set[str] = field(default_factory=set)
    session: OutboundLeg | None = None
    #: The codec rate its events report (Channel-Read-Codec-Rate): the unicast L16 rate.
    read_rate: int = 8000
    #: The running unicast media tap (stopped when the leg leaves park).
    tap: UnicastTap | None = None
    #: When it answered (loop time): a tap started later hears the far end from then on.
    answered_loop_time: float | None = None
    #: An agent's phone (_AgentCall), not a first-batch sofia/external/<number>@host leg.
    agent: bool = False
    #: On hold (uuid_hold; acd-bridge-uuid-hold.esl).
    held: bool = False
    #: uuid_transfer'd to a dialplan extension: its caller profile says so (unicast-*.esl).
    transferred: bool = False
    #: Application-Response of the last CHANNEL_EXECUTE_COMPLETE on the leg.
    last_response: str = ""


class _Conn:
    def __init__(
        self, fs: FakeFreeSwitch, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.fs = fs
        self.reader = reader
        self.writer = writer
        self.authed = False
        self.format = "plain"
        self.names: set[str] = set()
        self.subclasses: set[str] = set()
        #: Every command received, as text (tests assert on these).
        self.received: list[str] = []

    def wants(self, ev: TEvent) -> bool:
        if not self.authed:
            return False
        if "ALL" in self.names:
            return True
        if ev.name == "CUSTOM":
            return "CUSTOM" in self.names and ev.get("Event-Subclass") in self.subclasses
        return ev.name in self.names

    def send_event(self, ev: TEvent) -> None:
        if self.wants(ev):
            self.write(ev.json() if self.format == "json" else ev.plain())

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class FakeFreeSwitch:
    """Fake FreeSWITCH inbound event socket; see the module docstring."""

    def __init__(
        self,
        *,
        password: str = "ClueCon",
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 0.02,
        heartbeat_interval: float = 20.0,
        carrier_socket: tuple[str, int] | None = None,
        long_call_s: float = LONG_CALL_S,
    ) -> None:
        self.password = password
        self.host = host
        self.port = port
        self.time_scale = time_scale
        #: Seconds (already real time, not scaled) between HEARTBEAT events.
        self.heartbeat_interval = heartbeat_interval
        #: Where the 67XXX far end's ``socket`` connects (the engine's outbound server).
        self.carrier_socket = carrier_socket
        #: Recorded seconds (scaled by ``time_scale``) a 66XXX far end stays up; a test whose
        #: call must outlive a slow engine restart (embedded storage, a loaded machine) sets
        #: more and ends the call itself.
        self.long_call_s = long_call_s
        #: Digits the far end presses when a play_and_get_digits starts on a
        #: session, by dialled number (65XXX presses 1234# like its dialplan).
        self.far_end_digits: dict[str, str] = {}
        #: Gateway name -> what it does (see GatewayMode); unknown names act as "carrier".
        self.gateways: dict[str, GatewayMode] = dict(DEFAULT_GATEWAYS)
        #: Originates received per gateway name (sofia/gateway/<name>/...), dead ones included.
        self.gateway_originates: dict[str, int] = {}
        self.reject_all = False
        #: Agents' phones: ``user/<name>`` by name, ``sofia/external/<user>@host:<port>`` by port.
        self.agents: dict[str, AgentMode] = {f"agent{n}": "answer" for n in range(1, 9)}
        self.agent_ports: dict[int, AgentMode] = dict(DEFAULT_AGENT_PORTS)
        #: Faults for the next ``api show channels as json`` (the driver's resync), one
        #: per command, in order: "timeout" (no reply), "err" (a -ERR body) or
        #: "disconnect" (the socket closes instead of answering). Fault drill 5.
        self.show_channels_faults: list[Literal["timeout", "err", "disconnect"]] = []
        #: When True, commands get no reply and no HEARTBEAT is sent (a hung switch).
        self.unresponsive = False
        #: (min, max) seconds by which ``show channels`` lags the events, real time
        #: (not scaled: it is the switch's database, not the call's timeline).
        #: Recorded: RINGING 49-198 ms after CHANNEL_ANSWER, the row still listed
        #: 67-191 ms after CHANNEL_HANGUP_COMPLETE. (0, 0) turns the lag off.
        self.db_lag: tuple[float, float] = (0.049, 0.198)
        #: Audio a 69XXX channel's unicast tap sends, by call uuid or dialled number: a WAV
        #: path or its bytes (fake_unicast.py; default: the recorded tone).
        self.tap_audio: dict[str, Path | bytes] = {}
        #: Every unicast tap started, in order (tests read sent counts and ports).
        self.taps: list[tuple[str, UnicastTap]] = []
        self._rng = random.Random(1010)
        self.conns: list[_Conn] = []
        self.channels: dict[str, Channel] = {}
        #: Hung-up channels ``show channels`` still lists (db_lag).
        self.db_ghosts: dict[str, Channel] = {}
        self.calls: dict[str, _Call | _AgentCall | _SpyCall | _NullCall] = {}
        #: Every outbound-socket session, in order (tests read what each was sent).
        self.sessions: list[OutboundLeg] = []
        #: Hold-music broadcasts not picked up yet by the leg's session thread, by leg.
        self.pending_moh: dict[str, asyncio.Task[None]] = {}
        #: Eavesdrop sessions by supervisor leg, ended ones included (tests read their modes).
        self.spies: dict[str, _SpyCall] = {}
        #: Running uuid_record sessions by leg (fake_recorder.py).
        self.recordings: dict[str, FakeRecording] = {}
        #: Seconds of far-end audio a recording holds beyond its real length (bench: the file
        #: of a 5-minute call without waiting 5 minutes). 0 in tests.
        self.record_extra_s = 0.0
        #: loop.time() at which each leg's recording file was complete (before RECORD_STOP).
        self.record_stopped_at: dict[str, float] = {}
        #: What the caller of a dialled number sends during an outbound-session ``record``
        #: (fake_voicemail.py; default: the recorded caller, 2 s of speech then silence).
        self.voicemail_callers: dict[str, CallerSpeech] = {}
        #: None: an outbound-session ``record`` writes no file (the default). A dict: each
        #: take's WAV is written at its path and its bytes kept here by path.
        self.voicemail_files: dict[str, bytes] | None = None
        self._received: list[str] = []
        self.accepted = 0
        self.auth_failures = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = itertools.count(10000)
        self._heartbeat = events_of("originate-noanswer.esl")[-1]
        assert self._heartbeat.name == "HEARTBEAT"

    # ----------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeFreeSwitch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_conn, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._heartbeats())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.conns:
            conn.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def drop_connections(self) -> None:
        """Cut every inbound connection (as a network failure would)."""
        for conn in list(self.conns):
            conn.writer.transport.abort()

    def bridged_agent_legs(self) -> list[str]:
        """The agent legs (originates to an agent's phone) bridged to a caller now: a test
        plays the agent hanging up with ``kill(uid, "NORMAL_CLEARING")`` (the recorded
        ``uuid_kill A`` of acd-moh-bridge-agent-hangs-up.esl: the caller is hung up too)."""
        return [
            uid
            for uid, call in self.calls.items()
            if isinstance(call, _AgentCall)
            and uid in self.channels
            and self.channels[uid].bridged_to
        ]

    def set_gateway(self, name: str, mode: GatewayMode) -> None:
        """Make gateway ``name`` behave as ``mode`` from the next originate on."""
        if mode not in ("carrier", "congested", "dead"):
            raise ValueError(f"gateway mode {mode!r}: expected carrier, congested or dead")
        self.gateways[name] = mode

    def repair(self, name: str) -> None:
        """The carrier behind ``name`` is fixed: it plays the number plan again."""
        self.set_gateway(name, "carrier")

    @property
    def received(self) -> list[str]:
        """Every command received on every inbound connection (closed ones too), in order."""
        return self._received

    # -------------------------------------------------------------- events

    def emit(self, ev: TEvent) -> None:
        ev = ev.render(overrides={"Event-Sequence": str(next(self._seq))})
        ch = self.channels.get(ev.uid) if ev.name != "BACKGROUND_JOB" else None
        if ch is not None:
            ev = _with_set_vars(ev, ch)
        for conn in list(self.conns):
            conn.send_event(ev)
        self._track(ev)
        if ev.name == "CHANNEL_HANGUP":
            # What a leg's hangup does to its music and its bridge partner comes right
            # after its CHANNEL_HANGUP and before its HANGUP_COMPLETE (recorded order).
            self._on_hangup(ev.uid)

    def _track(self, ev: TEvent) -> None:
        uid = ev.uid
        if ev.name == "CHANNEL_CREATE" and uid not in self.channels:
            self.channels[uid] = Channel(
                uid,
                ev.get("Channel-Name"),
                ev.get("Caller-Destination-Number"),
                ev.get("Call-Direction"),
                created_epoch=int(time.time()),
                caller_id=ev.get("Caller-Caller-ID-Number"),
            )
        elif ev.name == "CHANNEL_ANSWER" and uid in self.channels:
            ch = self.channels[uid]
            ch.answered = True
            ch.answered_loop_time = asyncio.get_running_loop().time()
            rate = ev.get("Channel-Read-Codec-Rate")
            ch.read_rate = int(rate) if rate.isdigit() else 8000
            self._after_db_lag(lambda: setattr(ch, "db_answered", True))
        elif ev.name == "CHANNEL_EXECUTE_COMPLETE" and uid in self.channels:
            self.channels[uid].last_response = ev.get("Application-Response")
        elif ev.name == "CHANNEL_HANGUP_COMPLETE":
            gone = self.channels.pop(uid, None)
            if gone is not None:
                self.db_ghosts[uid] = gone
                self._after_db_lag(lambda: self.db_ghosts.pop(uid, None))

    def _after_db_lag(self, change: Callable[[], object]) -> None:
        low, high = self.db_lag
        if high <= 0:
            change()
            return
        asyncio.get_running_loop().call_later(self._rng.uniform(low, high), change)

    def flap_gateway(self, name: str, state: Literal["down", "up"]) -> None:
        """The gateway's OPTIONS pings start failing ("down") or succeed again ("up"):
        the recorded sofia::gateway_state of gateway-state-flap.esl (NOREG, Ping-Status
        DOWN 503 / UP 200), for gateway ``name``."""
        want = "DOWN" if state == "down" else "UP"
        tpl = next(
            e
            for e in events_of("gateway-state-flap.esl")
            if e.get("Gateway") == "rig_flap" and e.get("Ping-Status") == want
        )
        self.emit(tpl.render(overrides={"Gateway": name}))

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if not self.unresponsive:
                self.emit(self._heartbeat)

    # ---------------------------------------------------------- connection

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(self, reader, writer)
        if self.reject_all:
            body = b"Access Denied, go away.\n"
            writer.write(
                b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n" % len(body) + body
            )
            writer.close()
            return
        self.conns.append(conn)
        self.accepted += 1
        writer.write(b"Content-Type: auth/request\n\n")
        buf = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                buf += data
                while b"\n\n" in buf:
                    raw, buf = buf.split(b"\n\n", 1)
                    text = raw.decode().lstrip("\n")
                    if text:
                        conn.received.append(text)
                        self._received.append(text)
                        if self.unresponsive:
                            continue
                        if not await self._command(conn, text):
                            return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(ValueError):
                self.conns.remove(conn)
            writer.close()

    async def _command(self, conn: _Conn, text: str) -> bool:
        line, *rest = text.split("\n")
        headers = dict(h.split(": ", 1) for h in rest if ": " in h)
        verb, _, arg = line.partition(" ")
        if not conn.authed:
            if verb == "auth" and arg == self.password:
                conn.authed = True
                conn.write(_reply("+OK accepted"))
                return True
            # Not recorded (the fixtures' password was right); FreeSWITCH 1.10
            # answers "-ERR invalid" and then says goodbye and closes.
            self.auth_failures += 1
            conn.write(_reply("-ERR invalid"))
            conn.write(_DISCONNECT)
            await conn.writer.drain()
            return False
        if verb == "event":
            fmt, _, names = arg.partition(" ")
            conn.format = fmt
            words = names.split()
            if "CUSTOM" in words:
                i = words.index("CUSTOM")
                conn.subclasses |= set(words[i + 1 :])
                words = words[: i + 1]
            conn.names |= set(words)
            conn.write(_reply(f"+OK event listener enabled {fmt}"))
        elif verb == "api":
            if arg == "show channels as json" and self.show_channels_faults:
                fault = self.show_channels_faults.pop(0)
                if fault == "timeout":
                    return True  # never answered: the client's command timeout fires
                if fault == "disconnect":
                    return False  # the connection closes instead of answering
                # Synthetic (not recorded): any -ERR body is a failed api command.
                conn.write(_api("-ERR show channels: database is locked\n"))
                return True
            conn.write(_api(await self._run_api(arg)))
        elif verb == "bgapi":
            job = headers.get("Job-UUID") or str(uuidlib.uuid4())
            conn.write(_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
            self._spawn(self._bgapi(arg, job))
        elif verb == "sendmsg":
            if arg not in self.channels:
                conn.write(_reply(f"-ERR invalid session id [{arg}]"))
            else:
                conn.write(_reply("+OK"))
                if headers.get("call-command") == "hangup":
                    await self.kill(arg, headers.get("hangup-cause", "NORMAL_CLEARING"))
                elif headers.get("call-command") == "unicast":
                    # Recorded: +OK and no event; the datagrams follow (fake_unicast.py).
                    self._start_tap(arg, headers)
        elif verb == "sendevent":
            # Recorded (eavesdrop-dtmf-mode-switch.esl): command/reply "+OK <the new event's
            # uuid>". With a unique-id header mod_event_socket queues the event to that
            # session instead of firing it (no listener gets it, no DTMF event), and the
            # eavesdrop loop reads its eavesdrop-command header as digits.
            lower = {k.lower(): v for k, v in headers.items()}
            conn.write(_reply(f"+OK {uuidlib.uuid4()}"))
            spy = self.spies.get(lower.get("unique-id", ""))
            if spy is not None and lower.get("eavesdrop-command"):
                self._spawn(spy.eavesdrop_command(lower["eavesdrop-command"]))
        elif verb == "exit":
            conn.write(_reply("+OK bye"))
            conn.write(_DISCONNECT)
            return False
        else:
            conn.write(_reply("-ERR command not found"))
        return True

    # ----------------------------------------------------------------- api

    def _start_tap(self, uid: str, headers: dict[str, str]) -> None:
        ch = self.channels[uid]
        self.stop_tap(uid)
        source = self.tap_audio.get(uid)
        if source is None:
            source = self.tap_audio.get(ch.number)
        # The far end has talked since its answer: a tap hears it from the moment the
        # unicast is activated (now), not from its start.
        now = asyncio.get_running_loop().time()
        since = 0.0 if ch.answered_loop_time is None else max(0.0, now - ch.answered_loop_time)
        samples = audio_for(source, ch.read_rate)[int(since * ch.read_rate) :]
        tap = UnicastTap(headers, samples, ch.read_rate)
        ch.tap = tap
        self.taps.append((uid, tap))
        tap.start()

    def stop_tap(self, uid: str) -> None:
        """The channel left park: its unicast stops (there is no stop command)."""
        ch = self.channels.get(uid)
        if ch is not None and ch.tap is not None:
            ch.tap.stop()
            ch.tap = None

    async def _run_api(self, command: str) -> str:
        verb, _, arg = command.partition(" ")
        args = arg.split()
        if verb == "status":
            return _recorded_api("api-misc.esl", 0)
        if command == "show channels as json":
            return self._channels_json()
        if command == "sofia status gateway rig_down":
            return _recorded_api("originate-gateway-down.esl", 0)
        if command == "sofia status gateway":
            return _recorded_api("originate-gateway-down.esl", 1)
        if command == "local_stream show":
            return _recorded_api(MOH_MISSING, 0)  # "-ERR no reply": no stream has files
        if verb == "uuid_exists":
            # Recorded without a newline (acd-moh-bridge-agent-hangs-up.esl).
            return "true" if args and args[0] in self.channels else "false"
        if verb == "uuid_hold" and args and args[0] in ("off", "toggle"):
            mode, args = args[0], args[1:]
        elif verb == "uuid_hold":
            mode = "on"
        if verb.startswith("uuid_"):
            uuids = args[: 2 if verb == "uuid_bridge" else 1]
            if not args or any(a not in self.channels for a in uuids):
                # Recorded per command (uuid-commands-live.esl): each uuid_* has its own
                # words for "no such uuid" (-ERROR, -ERR invalid uuid, Cannot locate...).
                return UNKNOWN_UUID_REPLY.get(verb, "-ERR No such channel!\n")
        if verb == "uuid_kill":
            cause = args[1] if len(args) > 1 else "NORMAL_CLEARING"
            self._spawn(self.kill(args[0], cause))
            return "+OK\n"
        if verb == "uuid_hold":
            return self._hold(args[0], mode)
        if verb == "uuid_recv_dtmf":
            spy = self.spies.get(args[0])
            if spy is not None and len(args) > 1:
                self._spawn(spy.received(args[1]))
            # Recorded (eavesdrop-dtmf-mode-switch.esl).
            return f"+OK {args[0]} received DTMF {args[1] if len(args) > 1 else ''}.\n"
        if verb == "uuid_send_dtmf":
            self._spawn(self._dtmf_to_peer(args[0], args[1]))
            return f"+OK {args[0]} sent DTMF {args[1]}.\n"
        if verb == "uuid_record":
            return self._record(args)
        if verb == "uuid_getvar":
            ch = self.channels[args[0]]
            value = ch.variables.get(args[1])
            # Recorded (unicast-*.esl): read_codec PCMU / read_rate 8000 on a PCMU call,
            # G722 / 16000 on a default one.
            if value is None and args[1] == "read_rate":
                value = str(ch.read_rate)
            elif value is None and args[1] == "read_codec":
                value = "PCMU" if ch.read_rate == 8000 else "G722"
            return "_undef_" if value is None else value  # recorded: no newline
        if verb == "uuid_setvar":
            ch = self.channels[args[0]]
            if len(args) > 2:
                ch.variables[args[1]] = ch.set_vars[args[1]] = " ".join(args[2:])
                ch.unset_vars.discard(args[1])
            else:
                ch.variables.pop(args[1], None)  # recorded: no value unsets
                ch.set_vars.pop(args[1], None)
                ch.unset_vars.add(args[1])
            return "+OK\n"
        if verb == "uuid_bridge":
            self.stop_tap(args[0])
            self.stop_tap(args[1])
            self._spawn(self._bridge(args[0], args[1]))
            return f"+OK {args[1]}\n"
        if verb == "uuid_broadcast":
            path = args[1] if len(args) > 1 else ""
            if path.startswith("local_stream://"):
                self._spawn(self._moh_missing(args[0], path))
            elif "loops=-1" in path:
                self.pending_moh[args[0]] = self._spawn(self._moh_start(args[0], path))
            else:
                self._spawn(self._live_events("broadcast", args[0], path=path))
            return "+OK Message sent\n"
        if verb == "uuid_break":
            # Not recorded: modelled on the recorded end of a playback broken by a
            # bridge (PLAYBACK_STOP, EXECUTE_COMPLETE(playback) PLAYBACK ERROR). From the
            # source (mod_commands break_function): "all" also flushes the leg's queued
            # private events, so a broadcast not picked up yet never plays.
            pending = self.pending_moh.pop(args[0], None) if "all" in args[1:] else None
            if pending is not None:
                pending.cancel()
            self._spawn(self._moh_break(args[0]))
            return "+OK\n"
        if verb == "uuid_park" and self.channels[args[0]].bridged_to:
            self._spawn(self._live_events("park-bridged", args[0]))
            return "+OK\n"
        if verb == "uuid_transfer":
            # The transfer ends the park: the tap stops (unicast-*.esl: no datagram after it).
            self.stop_tap(args[0])
        if verb == "uuid_transfer" and len(args) == 4 and args[2] == "XML":
            if args[1] == SAFE_HARBOUR_EXTEN:
                self._spawn(self._safe_harbour(args[0]))
            else:
                self.channels[args[0]].transferred = True
                self._spawn(self._live_events("transfer", args[0], path=args[1]))
            return "+OK\n"
        if verb == "uuid_transfer":
            parts = _split_args(arg)
            inline = re.fullmatch(
                r"set:engine_ivr_flow=([^,]+),socket:([^:]+):(\d+) async full",
                parts[1] if len(parts) == 3 and parts[2] == "inline" else "",
            )
            if inline is not None:
                # Recorded (uuid-transfer-inline-socket.esl): +OK, then the leg
                # connects to the outbound socket with the variable set.
                flow, host, port = inline.group(1), inline.group(2), int(inline.group(3))
                self._spawn(self._transfer_to_socket(args[0], flow, host, port))
            return "+OK\n"
        if verb == "uuid_park":
            session = self.channels[args[0]].session
            if session is not None and session.socket_app_running:
                # Modelled on the source (see OutboundLeg.leave_for_park): the leg's
                # outbound-socket session loses it to the core's park.
                self._spawn(session.leave_for_park())
            return "+OK\n"  # recorded reply (uuid-commands-live.esl)
        if verb == "uuid_answer":
            return "+OK\n"  # recorded reply; the fake emits no events for it
        return f"-ERR {verb} Command not found!\n"

    def _c_sub(self, file: str, rec_c: str, uid: str) -> list[tuple[re.Pattern[str], str]]:
        """Recorded caller ``rec_c`` of ``file`` -> leg ``uid``: its uuid, and the number it
        dialled (Caller-Destination-Number, Channel-Name sofia/external/<number>, and the
        partner's Caller-Caller-ID-Number after a bridge) -> the number ``uid`` dialled."""
        subs = _uuid_sub(rec_c, uid)
        ch = self.channels.get(uid)
        number = next(
            (e.get("Caller-Destination-Number") for e in events_of(file) if e.uid == rec_c), ""
        )
        if ch is not None and number and ch.number and ch.number != number:
            subs.append((re.compile(rf"(?<!\d){number}(?!\d)"), ch.number))
        return subs

    def _hold(self, uid: str, mode: str) -> str:
        """``uuid_hold [off|toggle] <uuid>`` as recorded (acd-bridge-uuid-hold.esl, C bridged
        to A): ``+OK Success``; hold: CHANNEL_HOLD on C and on C's far-end leg (its SIP peer
        gets the re-INVITE), then the BRIDGED PARTNER A executes playback of the profile's
        hold-music, ``local_stream://moh``: FILE NOT FOUND on the rig; unhold: CHANNEL_UNHOLD
        on C and on its far end. Not recorded: ``uuid_hold`` of a leg already held, or
        ``off`` of one not held (the fake answers +OK Success and fires nothing)."""
        ch = self.channels[uid]
        hold = not ch.held if mode == "toggle" else mode == "on"
        if hold != ch.held:
            ch.held = hold
            self._spawn(self._hold_events(uid, hold))
        return "+OK Success\n"

    async def _hold_events(self, uid: str, hold: bool) -> None:
        ch = self.channels.get(uid)
        if ch is None:
            return
        rec_c, rec_a = HOLD_LEGS
        events = events_of(HOLD_FILE)
        rec_far = next(
            e.uid for e in events if e.name == "CHANNEL_CREATE" and e.uid not in HOLD_LEGS
        )
        name = "CHANNEL_HOLD" if hold else "CHANNEL_UNHOLD"
        first = next(k for k, e in enumerate(events) if e.name == name and e.uid == rec_c)
        subs = [*self._c_sub(HOLD_FILE, rec_c, uid), *_uuid_sub(rec_far, ch.peer or rec_far)]
        if ch.bridged_to:
            subs += _uuid_sub(rec_a, ch.bridged_to)
        # From C's HOLD (UNHOLD) to the next HOLD/UNHOLD of C: C's and its far end's
        # event, and the partner's hold-music playback after a hold.
        other = next(
            k
            for k, e in enumerate(events)
            if k > first and e.uid == rec_c and e.name in ("CHANNEL_HOLD", "CHANNEL_UNHOLD")
        )
        prev = events[first].ts
        for ev in events[first:other]:
            wanted = (ev.name == name and ev.uid in (rec_c, rec_far)) or (
                ev.uid == rec_a and ev.name in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE")
            )
            if not wanted or (ev.uid == rec_far and not ch.peer):
                continue
            if ev.uid == rec_a and not ch.bridged_to:
                continue  # nobody to play the hold music to
            await asyncio.sleep(max(0, ev.ts - prev) / 1e6 * self.time_scale)
            prev = ev.ts
            self.emit(ev.render(subs))

    def _channels_json(self) -> str:
        """``show channels as json`` as recorded: ``{"row_count": 0}`` when idle, else
        compact JSON (no spaces) with FreeSWITCH's columns, one row per leg (ours
        outbound with call_uuid = its uuid, the far end's inbound with call_uuid "").
        Rows come from the lagging core database: ``db_answered``, ``db_ghosts``."""
        listed = [*self.channels.values(), *self.db_ghosts.values()]
        if not listed:
            return _recorded_api("api-misc.esl", 1)
        rows = []
        for ch in listed:
            outbound = ch.direction == "outbound"
            # A ringing leg's row is another row, not the answered one with callstate
            # changed (show-channels-lag.esl's first polls): our leg is CS_CONSUME_MEDIA
            # with no application or codec yet, cid_num our caller id and callee_num the
            # number dialled (the two swap on answer), callee_name "Outbound Call".
            ours_tpl, far_tpl = channel_rows(
                "show-channels-2-calls.esl" if ch.db_answered else "show-channels-lag.esl"
            )
            row = dict(ours_tpl if outbound else far_tpl)
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ch.created_epoch))
            row.update(
                {
                    "uuid": ch.uuid,
                    "created": created,
                    "created_epoch": str(ch.created_epoch),
                    "name": ch.name,
                    "dest": ch.number,
                    "initial_dest": ch.number,
                    "callstate": "ACTIVE" if ch.db_answered else "RINGING",
                    "call_uuid": ch.uuid if outbound else "",
                }
            )
            if outbound and ch.db_answered:
                # show-channels-2-calls.esl: cid_name and cid_num are the dialled number.
                row["cid_name"] = row["cid_num"] = ch.number
                row["callee_num"] = row["initial_cid_num"] = ch.caller_id
            elif outbound:
                row["cid_num"] = row["initial_cid_num"] = ch.caller_id
                row["callee_num"] = ch.number
            elif ch.caller_id:
                # The far end's leg: our caller id is its caller (its own cid columns).
                for key in ("cid_name", "cid_num", "initial_cid_name", "initial_cid_num"):
                    row[key] = ch.caller_id
            rows.append(row)
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))

    def _record(self, args: list[str]) -> str:
        """uuid_record as in the third batch (record-mask-unmask.esl,
        record-stereo-pause-resume.esl); the file itself: tests/fakes/fake_recorder.py."""
        uid, action, path = (
            args[0],
            args[1] if len(args) > 1 else "",
            args[2] if len(args) > 2 else "",
        )
        loop = asyncio.get_running_loop()
        rec = self.recordings.get(uid)
        if action == "start" and path:
            ch = self.channels[uid]
            stereo = ch.variables.get("RECORD_STEREO", "").lower() == "true"
            far = self.channels.get(ch.peer)
            self.recordings[uid] = FakeRecording(
                path,
                loop.time() - self.record_extra_s,
                stereo,
                tone=far is not None and far.number.startswith("69"),
                # fake_recorder.py: the leg's codec rate (8 kHz on a PCMU agent leg), and
                # the 0.5 s lost at the start only on a parked leg (eavesdrop-*.esl: none
                # on bridged legs).
                rate=ch.read_rate,
                start_loss=0.0 if ch.bridged_to else START_LOSS_S,
            )
            # Recorded order: the api/response first, then RECORD_START, MEDIA_BUG_START.
            for name in self._record_names("RECORD_START", uid):
                loop.call_soon(self.emit, self._record_event(name, uid, path))
            return "+OK Success\n"
        if action in ("mask", "unmask", "pause", "resume"):
            if rec is None:
                # Recorded for mask after the stop; unmask/pause/resume share the code path
                # (switch_ivr_record_session_mask / _pause look the bug up the same way).
                return f"-ERR Cannot {action} recording session!\n"
            rec.marks.append((loop.time(), action))
            return "+OK Success\n"  # recorded: no event
        if action == "stop":
            if rec is not None and (path in (rec.path, "all")):
                self._record_stop(uid)
            return "+OK Success\n"
        return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>]\n"

    def _record_event(self, name: str, uid: str, path: str, **over: str) -> TEvent:
        ch = self.channels.get(uid)
        partner = self.channels.get(ch.bridged_to) if ch is not None else None
        if ch is not None and partner is not None:
            # A bridged leg (eavesdrop-listen.esl: uuid_record of the bridged caller C and
            # agent A): its RECORD_* and session_record MEDIA_BUG_* carry the Other-Leg-*
            # headers of the bridge, which an unbridged leg's events lack.
            rec_c, rec_a, _ = _spy_legs(SPY_LISTEN)
            c, a = (uid, partner.uuid) if ch.bridge_first else (partner.uuid, uid)
            rec = rec_c if ch.bridge_first else rec_a
            tpl = next(
                e
                for e in events_of(SPY_LISTEN)
                if e.name == name
                and e.uid == rec
                and e.get("Media-Bug-Function") in ("", "session_record")
            )
            subs = [
                *self._c_sub(SPY_LISTEN, rec_c, c),
                *_uuid_sub(rec_a, a),
                (
                    re.compile(
                        re.escape(
                            fs_url_encode(
                                tpl.get("Record-File-Path") or tpl.get("Media-Bug-Target")
                            )
                        )
                    ),
                    fs_url_encode(path),
                ),
            ]
            return _set(tpl, subs, {"Record-File-Path": path, **over})
        if self._first_batch_leg(uid):
            # The first batch's own recording (a sofia/external/N@host call): its headers.
            tpl = next(e for e in events_of("record.esl") if e.name == name)
            subs = self._c_sub("record.esl", TEMPLATE_A + "10", uid)
            return tpl.render(subs, {"Record-File-Path": path, **over})
        tpl = next(e for e in events_of(RECORD_MASK) if e.name == name)
        subs = [
            *self._c_sub(RECORD_MASK, RECORD_MASK_C, uid),
            (re.compile(re.escape("/tmp/rec-mask.wav")), path),
        ]
        return tpl.render(subs, over)

    def _record_stop(self, uid: str) -> None:
        rec = self.recordings.pop(uid, None)
        if rec is None:
            return
        loop = asyncio.get_running_loop()
        values = rec.write(loop.time())
        self.record_stopped_at[uid] = loop.time()
        for name in self._record_names("RECORD_STOP", uid):
            loop.call_soon(self.emit, self._record_event(name, uid, rec.path, **values))

    def _first_batch_leg(self, uid: str) -> bool:
        """A leg dialled as sofia/external/N@host (first batch) rather than through the
        carrier gateway (third batch, whose recordings are the mask/pause ones)."""
        ch = self.channels.get(uid)
        # An agent's phone is dialled as sofia/external/<user>@host:port too, but it is a
        # third-batch leg: its uuid_record fires MEDIA_BUG_* (eavesdrop-listen.esl).
        return ch is not None and "@" in ch.name and not ch.agent

    def _record_names(self, first: str, uid: str) -> tuple[str, ...]:
        if self._first_batch_leg(uid):
            return (first,)  # the first batch did not subscribe to MEDIA_BUG_*
        return (first, first.replace("RECORD_", "MEDIA_BUG_"))

    async def _dtmf_to_peer(self, uid: str, digits: str) -> None:
        ch = self.channels.get(uid)
        target = self.channels.get(ch.peer) if ch and ch.peer else None
        if target is None:
            return
        await asyncio.sleep(0.01)
        if target.session is not None:
            await target.session.far_end_presses(digits)
        else:
            for d in digits:
                self.emit(
                    _dtmf_template().render(
                        _uuid_sub(_dtmf_template().uid, target.uuid), {"DTMF-Digit": d}
                    )
                )

    # ------------------------------------------------------------- calls

    def _scenario_for(self, dial: str) -> tuple[Scenario, str] | None:
        m = re.match(r"sofia/(?:external/(\d+)@|gateway/([^/]+)/(\d+))", dial)
        if m is None:
            return None
        if m.group(2) is not None:
            gateway, number = m.group(2), m.group(3)
            self.gateway_originates[gateway] = self.gateway_originates.get(gateway, 0) + 1
            mode = self.gateways.get(gateway, "carrier")
            if mode == "dead":
                return GATEWAY_DOWN, number
            if mode == "congested":
                # The recorded 503 outcome with the dialled number substituted.
                return SCENARIOS["63"], number
            sc = GATEWAY_SCENARIOS.get(number[:2]) or SCENARIOS.get(number[:2])
        else:
            number = m.group(1)
            sc = EXTERNAL_SCENARIOS.get(number[:2]) or SCENARIOS.get(number[:2])
        return (sc, number) if sc else None

    def _agent_for(self, dial: str) -> tuple[str, str, AgentMode] | None:
        """(user, host:port, mode) when ``dial`` reaches an agent's phone."""
        m = re.fullmatch(r"sofia/external/([^@]+)@([0-9.]+):(\d+)", dial)
        if m is not None and int(m.group(3)) in self.agent_ports:
            return m.group(1), f"{m.group(2)}:{m.group(3)}", self.agent_ports[int(m.group(3))]
        m = re.fullmatch(r"user/([^@]+)(?:@.*)?", dial)
        if m is not None and m.group(1) in self.agents:
            # Not recorded: a directory user is reached through sofia like the recorded
            # agent, so its events are the recorded agent's with the user put in.
            return m.group(1), "127.0.0.1:5095", self.agents[m.group(1)]
        return None

    async def _bgapi(self, command: str, job: str) -> None:
        verb, _, arg = command.partition(" ")
        if verb != "originate":
            self._job_result(GATEWAY_DOWN, job, command, await self._run_api(command))
            return
        m = re.match(r"\{([^}]*)\}(\S+)\s*(.*)", arg)
        variables: dict[str, str] = {}
        if m:
            for item in re.split(r"(?<!\\),", m.group(1)):
                k, _, v = item.partition("=")
                variables[k] = v.strip("'").replace("\\,", ",")
            dial, app = m.group(2), m.group(3)
        else:
            dial, _, app = arg.partition(" ")
        call_id = variables.get("origination_uuid") or str(uuidlib.uuid4())
        spied = re.fullmatch(r"&eavesdrop\(([^)\s]+)\)", app.strip())
        if spied is not None:
            await _SpyCall(self, call_id, job, command, variables, dial, spied.group(1)).run()
            return
        agent = self._agent_for(dial)
        if agent is not None:
            user, host, mode = agent
            await _AgentCall(self, call_id, job, command, variables, user, host, mode).run()
            return
        if dial.startswith("null/"):
            await _NullCall(self, call_id, job, command).run()
            return
        if "|" in dial:
            chain = dial.split("|")
            if self._recorded_failover(chain):
                await self._failover(call_id, job, command, chain)
                return
        found = self._scenario_for(dial)
        if found is None:
            # Not recorded: FreeSWITCH fails unknown endpoints before creating a channel.
            reason = "USER_NOT_REGISTERED" if dial.startswith("user/") else "CHAN_NOT_IMPLEMENTED"
            self._job_result(GATEWAY_DOWN, job, command, f"-ERR {reason}\n")
            return
        sc, number = found
        if sc.key == "answered" and "origination_caller_id_number" not in variables:
            sc = ANSWERED_DEFAULT_CID
        if sc.key == "tap" and variables.get("absolute_codec_string", "").upper() == "PCMU":
            sc = TAP_PCMU
        if sc is GATEWAY_DOWN:
            await asyncio.sleep(0.001)
            self._job_result(sc, job, command, "-ERR GATEWAY_DOWN\n")
            return
        call = _Call(self, sc, number, call_id, job, command, variables, _split_args(app))
        await call.run()

    def _recorded_failover(self, chain: list[str]) -> bool:
        """A ``|`` chain of the recorded shape (originate-failover.esl): dead gateways, then
        a 63XXX (503) carrier, then anything. FreeSWITCH gave up after the 503 leg and
        never tried the rest; other chains were not recorded."""
        k = 0
        while k < len(chain) and self._gateway_of(chain[k]) in DEAD_GATEWAYS:
            k += 1
        if k == 0 or k >= len(chain):
            return False
        found = self._scenario_for(chain[k])
        return found is not None and found[0].key == "congestion"

    def _gateway_of(self, dial: str) -> str:
        m = re.match(r"sofia/gateway/([^/]+)/", dial)
        return "" if m is None or self.gateways.get(m.group(1)) != "dead" else m.group(1)

    async def _failover(self, call_id: str, job: str, command: str, chain: list[str]) -> None:
        """originate-failover.esl: the dead gateway makes no channel; our leg is the 503
        carrier's (CREATE, HANGUP and HANGUP_COMPLETE NORMAL_TEMPORARY_FAILURE, sip 503),
        and the job fails with ``-ERR DESTINATION_OUT_OF_ORDER`` although a later element
        would have answered (README: the engine must not rely on ``|`` chains)."""
        file = "originate-failover.esl"
        rec = TEMPLATE_A + "08"
        events = events_of(file)
        far = next(e.uid for e in events if e.name == "CHANNEL_CREATE" and e.uid != rec)
        tried = next(d for d in chain if self._gateway_of(d) not in DEAD_GATEWAYS)
        number = re.search(r"(\d+)@|/(\d+)$", tried)
        subs = [*_uuid_sub(rec, call_id), *_uuid_sub(far, str(uuidlib.uuid4()))]
        if number is not None:
            subs.append((re.compile(r"(?<!\d)63001(?!\d)"), number.group(1) or number.group(2)))
        _, _, arg = command.partition(" ")
        prev = events[0].ts
        for ev in events:
            if ev.name in ("HEARTBEAT", "CUSTOM"):
                continue
            await asyncio.sleep(max(0, ev.ts - prev) / 1e6 * self.time_scale)
            prev = ev.ts
            if ev.name == "BACKGROUND_JOB":
                self.emit(ev.render(subs, {"Job-UUID": job, "Job-Command-Arg": arg}))
            else:
                self.emit(ev.render(subs))

    def _job_result(self, sc: Scenario, job: str, command: str, body: str) -> None:
        tpl = next(e for e in events_of(sc.file) if e.name == "BACKGROUND_JOB")
        verb, _, arg = command.partition(" ")
        self.emit(
            tpl.render(
                overrides={"Job-UUID": job, "Job-Command": verb, "Job-Command-Arg": arg},
                nested=body,
            )
        )

    async def _live_events(self, what: str, a: str, b: str = "", path: str = "") -> None:
        """The events uuid-commands-live.esl shows for a uuid_* command on answered,
        parked legs (A = ${U}28, B = ${U}29 there):

        - broadcast A: PLAYBACK_START, PLAYBACK_STOP 0.5 s later (the tone's length),
          EXECUTE_COMPLETE(playback) on A;
        - transfer B to a dialplan extension: EXECUTE_COMPLETE(park), CHANNEL_PARK on B;
        - bridge A B: EXECUTE_COMPLETE(park) on A and on B, then one CHANNEL_BRIDGE on A;
        - park A while bridged: B hangs up (NORMAL_CLEARING, its far end follows),
          then CHANNEL_UNBRIDGE and CHANNEL_PARK on A.
        """
        rec_a, rec_b = TEMPLATE_A + "28", TEMPLATE_A + "29"
        if what == "park-bridged":
            b = self.channels[a].bridged_to
            # This path emits the recorded events itself, not the hangup hook's.
            self.channels[a].bridged_to = ""
            if b in self.channels:
                self.channels[b].bridged_to = ""
        subs = [*_uuid_sub(rec_a, a), *_uuid_sub(rec_b, b or rec_b)]
        events = events_of("uuid-commands-live.esl")

        def pick(name: str, uid: str, app: str = "", after: int = 0) -> TEvent:
            return next(
                e
                for e in events
                if e.name == name
                and e.uid == uid
                and (not app or e.get("Application") == app)
                and e.ts >= after
            )

        bridge_ts = pick("CHANNEL_BRIDGE", rec_a).ts
        if what == "broadcast":
            start = pick("PLAYBACK_START", rec_a)
            self.emit(start.render(subs, {"Playback-File-Path": path}))
            stop = pick("PLAYBACK_STOP", rec_a)
            await asyncio.sleep((stop.ts - start.ts) / 1e6 * self.time_scale)
            self.emit(stop.render(subs, {"Playback-File-Path": path}))
            self.emit(pick("CHANNEL_EXECUTE_COMPLETE", rec_a, "playback").render(subs))
        elif what == "transfer":
            # B dialled 66029 and was transferred to engine_park: its number, and the
            # extension it was sent to (Caller-Destination-Number), are the call's own.
            subs = [*self._c_sub("uuid-commands-live.esl", rec_b, a)]
            if path:
                subs.append((re.compile(r"(?<![A-Za-z0-9_])engine_park(?![A-Za-z0-9_])"), path))
            done = pick("CHANNEL_EXECUTE_COMPLETE", rec_b, "park")
            self.emit(done.render(subs))
            self.emit(pick("CHANNEL_PARK", rec_b, after=done.ts).render(subs))
        elif what == "bridge":
            for uid in (rec_a, rec_b):
                self.emit(
                    pick("CHANNEL_EXECUTE_COMPLETE", uid, "park", bridge_ts - 100_000).render(subs)
                )
            self.emit(pick("CHANNEL_BRIDGE", rec_a).render(subs))
            self.channels[a].bridged_to, self.channels[b].bridged_to = b, a
        elif what == "park-bridged":
            for name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
                self.emit(pick(name, rec_b, after=bridge_ts).render(subs))
            self.channels[a].bridged_to = ""
            self.channels[a].app_running = False
            call_b = self.calls.get(b)
            if call_b is not None:
                call_b.leg_gone(b)  # its far end gets the BYE
            self.emit(pick("CHANNEL_UNBRIDGE", rec_a).render(subs))
            self.emit(pick("CHANNEL_PARK", rec_a, after=bridge_ts).render(subs))

    # ------------------------------------------------------------ ACD (third batch)

    async def _bridge(self, c: str, a: str) -> None:
        """uuid_bridge C A as recorded (acd-moh-bridge-agent-hangs-up.esl): A's park ends
        (UNPARK, EXECUTE_COMPLETE park); C's hold music is broken (PLAYBACK_STOP, then
        EXECUTE_COMPLETE playback PLAYBACK ERROR) and its park ends (UNPARK, EXECUTE_COMPLETE
        park, with the stale PLAYBACK ERROR); CHANNEL_EXECUTE uuid_bridge on C and A; ONE
        CHANNEL_BRIDGE, on C."""
        ch_c, ch_a = self.channels.get(c), self.channels.get(a)
        if ch_c is None or ch_a is None:
            return
        rec_c, rec_a = ACD_LEGS[ACD_AGENT_HANGS_UP]
        subs = [*self._c_sub(ACD_AGENT_HANGS_UP, rec_c, c), *_uuid_sub(rec_a, a)]
        events = events_of(ACD_AGENT_HANGS_UP)
        start = next(k for k, e in enumerate(events) if e.name == "CHANNEL_UNPARK")
        end = next(k for k, e in enumerate(events) if e.name == "CHANNEL_BRIDGE")
        broken = ch_c.playing
        out: list[TEvent] = []
        for ev in events[start : end + 1]:
            if ev.uid not in (rec_c, rec_a):
                continue
            over: dict[str, str] = {}
            music = ev.uid == rec_c and (
                ev.name.startswith("PLAYBACK_")
                or (ev.name == "CHANNEL_EXECUTE_COMPLETE" and ev.get("Application") == "playback")
            )
            if music:
                if not broken:
                    continue  # no music was playing: nothing to break
                over = {"Application-Data": broken}
                if ev.name.startswith("PLAYBACK_"):
                    over = {"Playback-File-Path": broken}
            elif (
                ev.uid == rec_c
                and ev.name == "CHANNEL_EXECUTE_COMPLETE"
                and ev.get("Application") == "park"
                and not ch_c.app_running
            ):
                # C sits in the core's park (uuid_park, park_after_bridge), not in the park
                # application: no application completes (from the source: standard_on_park
                # calls switch_ivr_park directly; the recorded CHANNEL_PARK after
                # park_after_bridge had no CHANNEL_EXECUTE park).
                continue
            elif (
                ev.uid == rec_c
                and ev.name == "CHANNEL_EXECUTE_COMPLETE"
                and ev.get("Application") == "park"
                and not broken
            ):
                over = {"Application-Response": "_none_"}
            out.append(_set(ev, subs, over))
        if not broken:
            # With no music to stop, C's park ended first (uuid-commands-live.esl: the
            # EXECUTE_COMPLETE(park) of the first leg, then of the second); breaking a
            # playback delays C's, so the agent's came first in the third batch.
            ends = [e for e in out if e.name in ("CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE")]
            rest = [e for e in out if e not in ends]
            out = [e for e in ends if e.uid == c] + [e for e in ends if e.uid == a] + rest
        for ev in out:
            self.emit(ev)
        ch_c.playing = ""
        ch_c.bridged_to, ch_a.bridged_to = a, c
        ch_c.bridge_first, ch_a.bridge_first = True, False
        ch_c.last_partner, ch_a.last_partner = a, c
        ch_c.app_running = ch_a.app_running = False

    async def _moh_start(self, uid: str, path: str) -> None:
        """A looping stream: CHANNEL_EXECUTE playback, PLAYBACK_START, and it plays on
        (until a bridge, uuid_break or the hangup)."""
        # The api reply comes first and the session thread starts the playback a moment
        # later: a command sent right after the reply is answered before PLAYBACK_START
        # (uuid_setvar in acd-moh-bridge-agent-hangs-up-park-after-bridge.esl).
        await asyncio.sleep(BROADCAST_PICKUP_S)
        self.pending_moh.pop(uid, None)
        # Picked up while bridged (not recorded): switch_ivr_bridge.c suspends the bridge to
        # run a queued playback, so a looping stream plays on, inside the bridge.
        ch = self.channels.get(uid)
        file, start = ACD_AGENT_HANGS_UP, 0
        if ch is not None and ch.last_partner:
            # Music again after a bridge: the recorded second broadcast, whose events still
            # name the old partner (Other-Leg-*).
            file = ACD_PARK_AFTER_BRIDGE
            start = next(k for k, e in enumerate(events_of(file)) if e.name == "CHANNEL_UNBRIDGE")
        rec_c, rec_a = ACD_LEGS[file]
        subs = self._c_sub(file, rec_c, uid)
        if ch is not None and ch.last_partner:
            subs += _uuid_sub(rec_a, ch.last_partner)
        events = events_of(file)[start:]
        for name in ("CHANNEL_EXECUTE", "PLAYBACK_START"):
            tpl = next(
                e
                for e in events
                if e.name == name
                and e.uid == rec_c
                and (name != "CHANNEL_EXECUTE" or e.get("Application") == "playback")
            )
            self.emit(_set(tpl, subs, {"Application-Data": path, "Playback-File-Path": path}))
        if ch is not None:
            ch.playing = path

    async def _moh_missing(self, uid: str, path: str) -> None:
        """moh-local-stream-missing.esl: CHANNEL_EXECUTE playback and at once
        EXECUTE_COMPLETE FILE NOT FOUND; no PLAYBACK_* events; the leg stays parked."""
        rec_c, _ = ACD_LEGS[MOH_MISSING]
        for ev in events_of(MOH_MISSING):
            if ev.uid == rec_c and ev.get("Application") == "playback":
                self.emit(
                    _set(ev, self._c_sub(MOH_MISSING, rec_c, uid), {"Application-Data": path})
                )

    async def _moh_break(self, uid: str) -> None:
        ch = self.channels.get(uid)
        if ch is None or not ch.playing:
            return
        rec_c, _ = ACD_LEGS[ACD_AGENT_HANGS_UP]
        subs = self._c_sub(ACD_AGENT_HANGS_UP, rec_c, uid)
        for ev in events_of(ACD_AGENT_HANGS_UP):
            if ev.uid == rec_c and (
                ev.name == "PLAYBACK_STOP"
                or (ev.name == "CHANNEL_EXECUTE_COMPLETE" and ev.get("Application") == "playback")
            ):
                over = {"Playback-File-Path": ch.playing, "Application-Data": ch.playing}
                self.emit(_set(ev, subs, over))
        ch.playing = ""

    def _acd_event(self, file: str, name: str, leg: str, c: str, a: str, after: str = "") -> TEvent:
        """Event ``name`` of leg ``leg`` ("C"/"A") of an ACD recording, with the ids put in
        (the first one after the recorded event named ``after`` of that leg, if given)."""
        rec_c, rec_a = ACD_LEGS[file]
        rec = rec_c if leg == "C" else rec_a
        events = events_of(file)
        start = 0
        if after:
            start = next(k for k, e in enumerate(events) if e.name == after and e.uid == rec)
        tpl = next(e for e in events[start:] if e.name == name and e.uid == rec)
        return tpl.render([*self._c_sub(file, rec_c, c), *_uuid_sub(rec_a, a)])

    def _on_hangup(self, uid: str) -> None:
        """Right after ``uid``'s CHANNEL_HANGUP: its hold music stops, and its bridge ends."""
        self.stop_tap(uid)
        self._record_stop(uid)  # the media bug closes with the channel (fake_recorder.py)
        for spy in list(self.spies.values()):
            if spy.target == uid:
                spy.target_gone()
        ch = self.channels.get(uid)
        if ch is None:
            return
        if ch.playing:
            # C hung up while on hold music: acd-moh-agent-no-answer.esl, or, after a
            # bridge, the park-after-bridge recording (events naming the old partner).
            f = ACD_PARK_AFTER_BRIDGE if ch.last_partner else ACD_AGENT_NO_ANSWER
            rec_c, rec_a = ACD_LEGS[f]
            recorded = events_of(f)
            last = max(
                k for k, e in enumerate(recorded) if e.name == "CHANNEL_HANGUP" and e.uid == rec_c
            )
            subs = self._c_sub(f, rec_c, uid)
            if ch.last_partner:
                subs += _uuid_sub(rec_a, ch.last_partner)
            for ev in recorded[last:]:
                if ev.uid == rec_c and (
                    ev.name == "PLAYBACK_STOP"
                    or (
                        ev.name == "CHANNEL_EXECUTE_COMPLETE"
                        and ev.get("Application") == "playback"
                    )
                ):
                    over = {"Playback-File-Path": ch.playing, "Application-Data": ch.playing}
                    self.emit(_set(ev, subs, over))
            ch.playing = ""
        partner = self.channels.get(ch.bridged_to)
        if partner is None:
            return
        ch.bridged_to = partner.bridged_to = ""
        if not ch.bridge_first:
            # The agent (second leg) left: acd-moh-bridge-agent-hangs-up*.esl.
            c, a = partner.uuid, uid
            if partner.variables.get("park_after_bridge", "").lower() in ("true", "yes", "1"):
                f = ACD_PARK_AFTER_BRIDGE
                self.emit(self._acd_event(f, "CHANNEL_UNBRIDGE", "C", c, a))
                self.emit(self._acd_event(f, "CHANNEL_PARK", "C", c, a, after="CHANNEL_UNBRIDGE"))
                return
            f = ACD_AGENT_HANGS_UP
            self.emit(self._acd_event(f, "CHANNEL_UNBRIDGE", "C", c, a))
            self.emit(self._acd_event(f, "CHANNEL_HANGUP", "C", c, a))
            self.emit(self._acd_event(f, "CHANNEL_HANGUP_COMPLETE", "C", c, a))
            call = self.calls.get(c)
            if call is not None:
                call.leg_gone(c)  # its far end gets the BYE
            return
        # The caller (first leg) left: acd-moh-bridge-caller-hangs-up.esl. FreeSWITCH
        # hangs the agent up (send_bye), and only then unbridges the caller.
        c, a = uid, partner.uuid
        f = ACD_CALLER_HANGS_UP
        caller = self.calls.get(c)
        if isinstance(caller, _Call) and caller.killed is not None:
            # Our uuid_kill of the bridged caller (acd-bridge-uuid-hold.esl, eavesdrop-*.esl):
            # the same events, but C's UNBRIDGE has no sip_term_status (we sent the BYE).
            # Their order across the legs is a race in those recordings; this is the one of
            # eavesdrop-listen.esl (A's HANGUP_COMPLETE before C's UNBRIDGE).
            f = HOLD_FILE
        self.emit(self._acd_event(f, "CHANNEL_HANGUP", "A", c, a))
        self.emit(self._acd_event(f, "CHANNEL_HANGUP_COMPLETE", "A", c, a))
        call = self.calls.get(a)
        if call is not None:
            call.leg_gone(a)
        self.emit(self._acd_event(f, "CHANNEL_UNBRIDGE", "C", c, a))

    async def _safe_harbour(self, uid: str) -> None:
        """``uuid_transfer <uid> engine_safe_harbour XML default``: the extension of
        dialplans/freeswitch/engine.xml (answer, playback ${ENGINE_SAFE_HARBOUR_PROMPT},
        hangup NORMAL_CLEARING). Not recorded as a whole; built from the recorded parts:
        the transfer ends the park (uuid-commands-live.esl: EXECUTE_COMPLETE(park) on the
        transferred leg), the playback is that recording's broadcast (PLAYBACK_START/STOP,
        EXECUTE_COMPLETE(playback)), and the hangup application ends our answered leg as
        our own hangup does (originate-answered-engine-hangup.esl: our leg sends the BYE)."""
        ch = self.channels.get(uid)
        if ch is None:
            return
        rec_b = TEMPLATE_A + "29"
        events = events_of("uuid-commands-live.esl")
        done = next(
            e
            for e in events
            if e.name == "CHANNEL_EXECUTE_COMPLETE"
            and e.uid == rec_b
            and e.get("Application") == "park"
        )
        if ch.playing:
            await self._moh_break(uid)  # hold music left by the queue stops with the park
        self.emit(done.render(_uuid_sub(rec_b, uid)))
        ch.app_running = False  # the hangup application ends it: no park to complete
        prompt = ch.variables.get("ENGINE_SAFE_HARBOUR_PROMPT", "")
        await self._live_events("broadcast", uid, path=prompt)
        await self.kill(uid, "NORMAL_CLEARING")

    async def _transfer_to_socket(self, uid: str, flow: str, host: str, port: int) -> None:
        ch, call = self.channels.get(uid), self.calls.get(uid)
        if ch is None or not isinstance(call, _Call):
            return
        call.variables[IVR_FLOW] = ch.variables[IVR_FLOW] = flow
        leg = OutboundLeg(self, call, uid)
        ch.session = leg
        await leg.run(host, port)
        if not leg.released:
            call.leg_gone(uid)

    async def kill(self, uid: str, cause: str) -> None:
        ch = self.channels.get(uid)
        if ch is None:
            return
        if ch.session is not None:
            await ch.session.hangup(cause)
            return
        call = self.calls.get(uid)
        if call is not None:
            await call.kill(uid, cause)


def _unknown_uuid_replies() -> dict[str, str]:
    zero = "00000000-0000-0000-0000-000000000000"
    replies = {
        command.split()[0]: body
        for command, body in api_exchanges("uuid-commands-live.esl")
        if command.split()[1] == zero
    }
    # uuid_kill of a uuid that is gone (B, after the park hung it up).
    replies["uuid_kill"] = next(
        body
        for command, body in api_exchanges("uuid-commands-live.esl")
        if command.startswith("uuid_kill") and body.startswith("-ERR")
    )
    return replies


#: uuid_* command -> FreeSWITCH's reply when the uuid does not exist (recorded).
UNKNOWN_UUID_REPLY = _unknown_uuid_replies()


def _gateway_answered_events() -> list[TEvent]:
    """A 61XXX call through the gateway, answered and then cleared by the far end:
    the recorded gateway call up to our CHANNEL_PARK, then the rest of the recorded
    61XXX call (tone, far end's BYE) with its ids and offsets from the park."""
    gw = GATEWAY_SCENARIOS["61"]
    call = events_of(gw.file)
    gw_far = next(e.uid for e in call if e.name == "CHANNEL_CREATE" and e.uid != gw.a_uuid)
    park = next(k for k, e in enumerate(call) if e.name == "CHANNEL_PARK" and e.uid == gw.a_uuid)
    head = [
        e for e in call[: park + 1] if e.uid in (gw.a_uuid, gw_far) or e.name == "BACKGROUND_JOB"
    ]
    head = [e for e in head if e.name != "BACKGROUND_JOB" or e.get("Job-UUID") == gw.job]
    ext = SCENARIOS["61"]
    rest = events_of(ext.file)
    ext_far = next(e.uid for e in rest if e.name == "CHANNEL_CREATE" and e.uid != ext.a_uuid)
    ext_park = next(
        k for k, e in enumerate(rest) if e.name == "CHANNEL_PARK" and e.uid == ext.a_uuid
    )
    subs = [
        *_uuid_sub(ext.a_uuid, gw.a_uuid),
        *_uuid_sub(ext_far, gw_far),
        (re.compile(rf"(?<!\d){ext.number}(?!\d)"), gw.number),
    ]
    shift = call[park].ts - rest[ext_park].ts
    tail = []
    for e in rest[ext_park + 1 :]:
        if e.name in ("HEARTBEAT", "CUSTOM"):
            continue
        moved = e.render(subs)
        moved.ts = e.ts + shift
        tail.append(moved)
    return head + tail


def _set(ev: TEvent, subs: list[tuple[re.Pattern[str], str]], over: dict[str, str]) -> TEvent:
    """``ev`` rendered with ``over`` applied only to headers it already has (a recorded
    event never gains a header)."""
    present = {k for k, _ in ev.pairs}
    return ev.render(subs, {k: v for k, v in over.items() if k in present})


#: Variables the recordings' templates carry only because the recorder set them with
#: uuid_setvar: a leg that did not set them must not show them.
TEMPLATE_SET_VARS = ("park_after_bridge", "RECORD_STEREO", "bridge_generate_comfort_noise")


def _with_set_vars(ev: TEvent, ch: Channel) -> TEvent:
    """``ev`` with the leg's own uuid_setvar variables: each ``variable_<name>`` present with
    its value, those it unset (or never set, of TEMPLATE_SET_VARS) gone. A new one goes
    where the recordings show it: after ``variable_call_uuid`` (and a
    ``variable_current_application`` right after it), in the order they were set."""
    drop = {f"variable_{k}" for k in (*ch.unset_vars, *TEMPLATE_SET_VARS) if k not in ch.set_vars}
    want = {f"variable_{k}": fs_url_encode(v) for k, v in ch.set_vars.items()}
    names = {k for k, _ in ev.pairs}
    if not (drop & names) and not want:
        return ev
    pairs = [(k, want.get(k, v)) for k, v in ev.pairs if k not in drop]
    fresh = [(k, v) for k, v in want.items() if k not in names]
    if fresh:
        keys = [k for k, _ in pairs]
        if "variable_call_uuid" in keys:
            at = keys.index("variable_call_uuid") + 1
            if at < len(keys) and keys[at] == "variable_current_application":
                at += 1
        else:
            at = max((n + 1 for n, k in enumerate(keys) if k.startswith("variable_")), default=0)
            if at == 0:
                return TEvent(ev.name, pairs, ev.nested, ev.ts)  # an event with no variables
        pairs[at:at] = fresh
    return TEvent(ev.name, pairs, ev.nested, ev.ts)


def _without(ev: TEvent, header: str) -> TEvent:
    """``ev`` without ``header`` (a header a live channel's events do not carry)."""
    return TEvent(ev.name, [(k, v) for k, v in ev.pairs if k != header], ev.nested, ev.ts)


def _uuid_sub(old: str, new: str) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(re.escape(old)), new)]


def _dtmf_template() -> TEvent:
    return next(e for e in events_of("dtmf-from-far-end.esl") if e.name == "DTMF")


class _Call:
    """One originate replaying its scenario (both legs)."""

    def __init__(
        self,
        fs: FakeFreeSwitch,
        sc: Scenario,
        number: str,
        call_id: str,
        job: str,
        command: str,
        variables: dict[str, str],
        app: list[str],
    ) -> None:
        self.fs = fs
        self.sc = sc
        self.number = number
        self.a = call_id
        self.job = job
        self.command = command
        self.variables = variables
        self.app = app
        self.events = _gateway_answered_events() if sc.key == "answered-gw" else events_of(sc.file)
        if sc.key in ("long", "leaves"):
            # The call part only: the recording's tail is our own uuid_kill.
            end = next(k for k, e in enumerate(self.events) if e.name == "CHANNEL_HANGUP")
            self.events = self.events[:end]
        if sc.key == "tap":
            # The call part only: up to the recorder's uuid_transfer (its first UNPARK).
            end = next(
                k
                for k, e in enumerate(self.events)
                if e.name == "CHANNEL_UNPARK" and e.uid == sc.a_uuid
            )
            self.events = self.events[:end]
        # The far end's leg is whichever other channel the recording shows.
        self.b_template = next(
            e.uid for e in self.events if e.name == "CHANNEL_CREATE" and e.uid != sc.a_uuid
        )
        self.b = str(uuidlib.uuid4())
        cid = variables.get("origination_caller_id_number", "0000000000")
        self.subs = [
            *_uuid_sub(sc.a_uuid, self.a),
            *_uuid_sub(self.b_template, self.b),
            (re.compile(rf"(?<!\d){sc.number}(?!\d)"), number),
            (re.compile(rf"(?<!\d){sc.caller_id}(?!\d)"), cid),
        ]
        self.killed: str | None = None
        #: Legs that ended outside the recorded timeline (an IVR session after a transfer).
        self.gone: set[str] = set()
        self.job_sent = False
        self.wake = asyncio.Event()
        self.socket_app = self.app[0].startswith("&socket(") if self.app else False

    def leg_gone(self, uid: str) -> None:
        """``uid`` hung up in an IVR session: its recorded events are over."""
        self.gone.add(uid)
        self.wake.set()

    def render(self, ev: TEvent) -> TEvent:
        if ev.name == "BACKGROUND_JOB":
            self.job_sent = True
            _, _, arg = self.command.partition(" ")
            body = ev.nested.replace(self.sc.a_uuid, self.a)
            return ev.render(self.subs, {"Job-UUID": self.job, "Job-Command-Arg": arg}, nested=body)
        return ev.render(self.subs)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds * self.fs.time_scale)

    async def run(self) -> None:
        self.fs.calls[self.a] = self
        self.fs.calls[self.b] = self
        try:
            await self._run()
        finally:
            self.fs.calls.pop(self.a, None)
            self.fs.calls.pop(self.b, None)

    async def _run(self) -> None:
        prev = self.events[0].ts if self.events else 0
        i = 0
        released = False
        while i < len(self.events):
            ev = self.events[i]
            if ev.name in ("HEARTBEAT", "CUSTOM", "RECORD_START", "RECORD_STOP"):
                # timer-driven in FreeSWITCH, or caused by uuid_record: not
                # part of the call's own timeline
                i += 1
                continue
            await self._sleep(max(0, ev.ts - prev) / 1e6)
            prev = ev.ts
            if self.killed is not None:
                await self._hangup_tail(self.killed)
                return
            if self.socket_app and ev.name == "CHANNEL_PARK" and ev.uid == self.sc.a_uuid:
                # Our A-leg runs the socket application instead of park.
                if not await self._ivr(self.a, self.app[0]):
                    return
                # uuid_park took the leg out of its session (an IVR `queue` step): it stays
                # up, parked, and the call goes on as the scenario's calls do.
                released = True
                break
            if self.sc.key == "ivr" and ev.name == "CHANNEL_PARK" and ev.uid == self.b_template:
                self.fs.emit(self.render(ev))
                self._link()
                if self.fs.carrier_socket is None:
                    await self._hangup_tail("DESTINATION_OUT_OF_ORDER")
                    return
                host, port = self.fs.carrier_socket
                await self._ivr(
                    self.b, f"&socket({host}:{port} async full)", skip_answer=True, resume_at=i + 1
                )
                return
            rendered = self.render(ev)
            if rendered.uid not in self.gone:
                self.fs.emit(rendered)
                self._link()
            i += 1
        if released and self.sc.key not in ("leaves", "tap", "long"):
            # A leg left parked by its IVR session on a call with no recorded end of its own:
            # it stays up until it is hung up.
            while self.killed is None:
                await self.wake.wait()
                self.wake.clear()
            await self._hangup_tail(self.killed)
            return
        if self.sc.key == "leaves":
            await self._sleep(CALLER_LEAVES_S)
            if self.killed is not None:
                await self._hangup_tail(self.killed)
            else:
                await self._far_end_leaves()
            return
        if self.sc.key == "tap":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), TAP_CALL_S)
            await self._hangup_tail(self.killed or "NORMAL_CLEARING")
            return
        if self.sc.key == "long":
            await self._sleep(self.fs.long_call_s)
            if self.a in self.gone:
                # Our leg ended in its IVR session: the far end got the BYE.
                await self._answered_hangup_tail("NORMAL_CLEARING", 16, only_far=True)
            else:
                await self._hangup_tail(self.killed or "NORMAL_CLEARING")

    def _link(self) -> None:
        a, b = self.fs.channels.get(self.a), self.fs.channels.get(self.b)
        if a and b:
            a.peer, b.peer = self.b, self.a
        if a is not None:
            a.variables.update({k: v for k, v in self.variables.items()})

    async def kill(self, uid: str, cause: str) -> None:
        self.killed = cause
        self.wake.set()

    async def _far_end_leaves(self) -> None:
        """60XXX's far end sends BYE (acd-moh-bridge-caller-hangs-up.esl): its leg hangs up,
        then ours (recv_bye, sip_term_status 200); the hangup hook adds what a bridge or
        hold music does in between."""
        rec_c, rec_a = ACD_LEGS[ACD_CALLER_HANGS_UP]
        events = events_of(ACD_CALLER_HANGS_UP)
        far = next(
            e.uid for e in events if e.name == "CHANNEL_CREATE" and e.uid not in (rec_c, rec_a)
        )
        subs = [*self.fs._c_sub(ACD_CALLER_HANGS_UP, rec_c, self.a), *_uuid_sub(far, self.b)]
        names = ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")
        for ev in events:
            if ev.name not in names or ev.uid not in (far, rec_c):
                continue
            if ev.uid == rec_c and self.a in self.gone:
                continue
            self.fs.emit(ev.render(subs))

    async def _hangup_tail(self, cause: str) -> None:
        """Both legs hang up, with the recorded hangup events of this scenario (or, for an
        answered call, of originate-answered-engine-hangup.esl)."""
        from engine.pbx.freeswitch.causes import q850_from_name

        ours = self.fs.channels.get(self.a)
        if ours is not None and ours.answered:
            await self._answered_hangup_tail(cause, q850_from_name(cause))
            return
        tail = [e for e in self.events if e.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")]
        for ev in tail:
            over = {}
            if ev.uid == self.sc.a_uuid:
                over = {"Hangup-Cause": cause}
                if ev.get("variable_hangup_cause_q850"):
                    over["variable_hangup_cause_q850"] = str(q850_from_name(cause))
            self.fs.emit(self.render(ev).render(overrides=over))
        if not self.job_sent:
            job = next(e for e in self.events if e.name == "BACKGROUND_JOB")
            self.fs.emit(self.render(job).render(nested=f"-ERR {cause}\n"))

    async def _answered_hangup_tail(self, cause: str, q850: int, *, only_far: bool = False) -> None:
        """We hang up an answered call: the recorded tail of the first call of
        originate-answered-engine-hangup.esl (our leg sends the BYE and has no
        sip_term_status; the far leg gets 200 recv_bye), both legs with ``cause``."""
        ours = self.fs.channels.get(self.a)
        if not only_far and ours is not None and ours.last_partner:
            # Hung up after a bridge ended (park_after_bridge): the recorded uuid_kill of
            # that caller, whose events still name the old partner (Other-Leg-*).
            f = ACD_PARK_AFTER_BRIDGE
            if ours.bridged_to:
                # Still bridged: our uuid_kill of the bridged caller (acd-bridge-uuid-hold.esl).
                f = HOLD_FILE
            rec_c, rec_a = ACD_LEGS[f]
            recorded = events_of(f)
            last = max(
                k for k, e in enumerate(recorded) if e.name == "CHANNEL_HANGUP" and e.uid == rec_c
            )
            subs = [*self.fs._c_sub(f, rec_c, self.a), *_uuid_sub(rec_a, ours.last_partner)]
            for name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
                tpl = next(e for e in recorded[last:] if e.name == name and e.uid == rec_c)
                over = {"Hangup-Cause": cause}
                if tpl.get("variable_hangup_cause_q850"):
                    over["variable_hangup_cause_q850"] = str(q850)
                self.fs.emit(tpl.render(subs, over))
            await self._answered_hangup_tail(cause, q850, only_far=True)
            return
        sc = ENGINE_HANGUP
        if ours is not None and ours.transferred:
            # Hung up after a uuid_transfer to a dialplan extension (unicast-*.esl): the
            # caller profile now names the dialplan and the transfer (Caller-Dialplan,
            # Caller-Transfer-Source, Caller-RDNIS), and the park ends with CHANNEL_UNPARK.
            sc = TRANSFERRED_HANGUP if ours.read_rate != 8000 else TRANSFERRED_HANGUP_PCMU
        events = events_of(sc.file)
        far = next(e.uid for e in events if e.name == "CHANNEL_CREATE" and e.uid != sc.a_uuid)
        start = next(
            k for k, e in enumerate(events) if e.name == "CHANNEL_HANGUP" and e.uid == sc.a_uuid
        )
        end = next(
            k for k, e in enumerate(events) if e.name == "CHANNEL_HANGUP_COMPLETE" and e.uid == far
        )
        cid = self.variables.get("origination_caller_id_number", "0000000000")
        subs = [
            *_uuid_sub(sc.a_uuid, self.a),
            *_uuid_sub(far, self.b),
            (re.compile(rf"(?<!\d){sc.number}(?!\d)"), self.number),
            (re.compile(rf"(?<!\d){sc.caller_id}(?!\d)"), cid),
        ]
        ours = self.fs.channels.get(self.a)
        no_app = ours is not None and not ours.app_running
        prev = events[start].ts
        for ev in events[start : end + 1]:
            if only_far and ev.uid != far:
                continue
            if no_app and ev.uid == sc.a_uuid and ev.name == "CHANNEL_EXECUTE_COMPLETE":
                continue
            await asyncio.sleep(max(0, ev.ts - prev) / 1e6 * self.fs.time_scale)
            prev = ev.ts
            over = {"Hangup-Cause": cause} if ev.get("Hangup-Cause") else {}
            if ev.get("variable_hangup_cause_q850"):
                over["variable_hangup_cause_q850"] = str(q850)
            if (
                ev.uid == sc.a_uuid
                and ev.get("Application") == "park"
                and ours is not None
                and ours.last_response
            ):
                # The park's own EXECUTE_COMPLETE carries the Application-Response of the
                # last application that completed on the leg, a stale value
                # (moh-local-stream-missing.esl: FILE NOT FOUND; acd-moh-agent-no-answer.esl:
                # FILE PLAYED).
                over["Application-Response"] = ours.last_response
            self.fs.emit(ev.render(subs, over))

    async def _far_end_timeline(self, leg: OutboundLeg) -> None:
        """65XXX while our leg runs an IVR: the far end keeps to its recorded
        timeline (dtmf-from-far-end.esl, relative to our CHANNEL_PARK): digits
        1, 2, 3, 4 640 ms apart from 1.5 s, then it hangs up at 4.0 s, before
        the '#' that was due at 4.06 s."""
        park = next(
            e.ts for e in self.events if e.name == "CHANNEL_PARK" and e.uid == self.sc.a_uuid
        )
        steps: list[tuple[int, str]] = [
            (e.ts, e.get("DTMF-Digit"))
            for e in self.events
            if e.name == "DTMF" and e.uid == self.sc.a_uuid
        ]
        steps.append(
            next(
                (e.ts, "")
                for e in self.events
                if e.name == "CHANNEL_HANGUP" and e.uid == self.b_template
            )
        )
        prev = park
        for ts, digit in steps:
            await asyncio.sleep((ts - prev) / 1e6 * self.fs.time_scale)
            prev = ts
            if leg.hung_up:
                return
            if digit:
                leg.press(digit)
            else:
                await leg.hangup("NORMAL_CLEARING")

    async def _ivr(
        self, uid: str, app: str, *, skip_answer: bool = False, resume_at: int = 0
    ) -> bool:
        """Run ``uid``'s outbound-socket session; True when it ended with the leg still up
        (parked by ``uuid_park``, then released by the session's ``exit``)."""
        m = re.match(r"&socket\(([^:]+):(\d+)", app)
        assert m, app
        if not self.job_sent:
            job = next(e for e in self.events if e.name == "BACKGROUND_JOB")
            self.fs.emit(self.render(job))
        leg = OutboundLeg(self.fs, self, uid)
        ch = self.fs.channels.get(uid)
        if ch is not None:
            ch.session = leg
        timeline = None
        if self.sc.key == "dtmf" and uid == self.a:
            timeline = self.fs._spawn(self._far_end_timeline(leg))
        await leg.run(m.group(1), int(m.group(2)))
        if timeline is not None:
            timeline.cancel()
        if leg.released and uid == self.a:
            return True
        if leg.released:
            # The carrier's far-end leg (67XXX), parked out of its session (an IVR `queue`
            # hand-off of an inbound call): up until either leg is hung up, then its hangup
            # and the recorded tail below.
            while self.killed is None:
                await self.wake.wait()
                self.wake.clear()
            await leg.hangup_released(self.killed)
        # Session over: the recorded tail from the far-end leg's hangup.
        start = next(
            (
                k
                for k, e in enumerate(self.events)
                if e.name == "CHANNEL_HANGUP" and e.uid == self.b_template
            ),
            len(self.events),
        )
        for ev in self.events[start:]:
            if self.render(ev).uid == uid and ev.name in (
                "CHANNEL_HANGUP",
                "CHANNEL_HANGUP_COMPLETE",
            ):
                continue  # the session already emitted this leg's hangup
            if ev.name in ("HEARTBEAT", "CUSTOM"):
                continue
            self.fs.emit(self.render(ev))
        return False


#: ``originate null/...``: the null endpoint (api-misc.esl, our leg ${U}12).
NULL_FILE = "api-misc.esl"
NULL_LEG = TEMPLATE_A + "12"


class _NullCall:
    """``originate {...}null/<anything> &park()`` as recorded (api-misc.esl): no far end,
    CHANNEL_CREATE, CHANNEL_ANSWER, BACKGROUND_JOB ``+OK <uuid>`` and CHANNEL_PARK at
    once; the leg stays parked until it is hung up, then CHANNEL_HANGUP,
    EXECUTE_COMPLETE(park) and HANGUP_COMPLETE with the cause given."""

    def __init__(self, fs: FakeFreeSwitch, call_id: str, job: str, command: str) -> None:
        self.fs = fs
        self.a = call_id
        self.job = job
        self.command = command
        self.events = [
            e for e in events_of(NULL_FILE) if e.uid == NULL_LEG or e.name == "BACKGROUND_JOB"
        ]
        self.subs = _uuid_sub(NULL_LEG, call_id)
        self.killed: str | None = None
        self.wake = asyncio.Event()

    def leg_gone(self, uid: str) -> None:
        self.wake.set()

    async def kill(self, uid: str, cause: str) -> None:
        self.killed = cause
        self.wake.set()

    async def run(self) -> None:
        from engine.pbx.freeswitch.causes import q850_from_name

        self.fs.calls[self.a] = self
        try:
            end = next(k for k, e in enumerate(self.events) if e.name == "CHANNEL_HANGUP")
            _, _, arg = self.command.partition(" ")
            for ev in self.events[:end]:
                if ev.name == "BACKGROUND_JOB":
                    body = ev.nested.replace(NULL_LEG, self.a)
                    over = {"Job-UUID": self.job, "Job-Command-Arg": arg}
                    self.fs.emit(ev.render(self.subs, over, nested=body))
                else:
                    self.fs.emit(ev.render(self.subs))
            while self.killed is None and self.a in self.fs.channels:
                await self.wake.wait()
                self.wake.clear()
            if self.killed is None:
                return
            prev = self.events[end].ts
            for ev in self.events[end:]:
                await asyncio.sleep(max(0, ev.ts - prev) / 1e6 * self.fs.time_scale)
                prev = ev.ts
                over = {"Hangup-Cause": self.killed}
                if ev.get("variable_hangup_cause_q850"):
                    over["variable_hangup_cause_q850"] = str(q850_from_name(self.killed))
                self.fs.emit(ev.render(self.subs).render(overrides=over))
        finally:
            self.fs.calls.pop(self.a, None)


class _AgentCall:
    """One originate to an agent's phone (third batch): the recorded agent leg A."""

    def __init__(
        self,
        fs: FakeFreeSwitch,
        call_id: str,
        job: str,
        command: str,
        variables: dict[str, str],
        user: str,
        host: str,
        mode: AgentMode,
    ) -> None:
        self.fs = fs
        self.a = call_id
        self.job = job
        self.command = command
        self.variables = variables
        self.mode = mode
        self.file = ACD_AGENT_HANGS_UP if mode == "answer" else ACD_AGENT_NO_ANSWER
        _, self.rec_a = ACD_LEGS[self.file]
        self.rec_job = next(
            e.get("Job-UUID")
            for e in events_of(self.file)
            if e.name == "BACKGROUND_JOB" and self.rec_a in e.get("Job-Command-Arg")
        )
        cid = variables.get("origination_caller_id_number", "5550001")
        self.subs = [
            *_uuid_sub(self.rec_a, call_id),
            # The recorded agent's name and address in Channel-Name and the SIP variables.
            (re.compile(r"(?<![A-Za-z0-9])agent1(?=%40|@)"), user),
            (re.compile(r"127\.0\.0\.1(%3A|:)509[57]"), host.replace(":", r"\g<1>")),
            (re.compile(r"(?<!\d)5550001(?!\d)"), cid),
        ]
        self.killed: str | None = None
        self.gone = False
        self.wake = asyncio.Event()

    def leg_gone(self, uid: str) -> None:
        """The leg ended through its bridge (the hangup hook emitted its hangup)."""
        self.gone = True
        self.wake.set()

    async def kill(self, uid: str, cause: str) -> None:
        self.killed = cause
        self.wake.set()

    def _render(self, ev: TEvent, **over: str) -> TEvent:
        if ev.name == "BACKGROUND_JOB":
            _, _, arg = self.command.partition(" ")
            body = ev.nested.replace(self.rec_a, self.a)
            return ev.render(self.subs, {"Job-UUID": self.job, "Job-Command-Arg": arg}, nested=body)
        return ev.render(self.subs, over)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds * self.fs.time_scale)

    async def run(self) -> None:
        self.fs.calls[self.a] = self
        try:
            await self._run()
        finally:
            self.fs.calls.pop(self.a, None)

    def _events(self) -> list[TEvent]:
        return [
            e
            for e in events_of(self.file)
            if e.uid == self.rec_a
            or (e.name == "BACKGROUND_JOB" and e.get("Job-UUID") == self.rec_job)
        ]

    async def _run(self) -> None:
        events = self._events()
        create = next(k for k, e in enumerate(events) if e.name == "CHANNEL_CREATE")
        # Up to the park (answer) or the 180 (ring): the recorded call part.
        last = next(
            k
            for k, e in enumerate(events)
            if e.name == ("CHANNEL_PARK" if self.mode == "answer" else "CHANNEL_PROGRESS")
        )
        prev = events[create].ts
        for ev in events[create : last + 1]:
            await asyncio.sleep(max(0, ev.ts - prev) / 1e6 * self.fs.time_scale)
            prev = ev.ts
            self.fs.emit(self._render(ev))
            ch = self.fs.channels.get(self.a)
            if ev.name == "CHANNEL_CREATE" and ch is not None:
                # The originate's {variables} are on the channel from its creation.
                ch.variables.update(self.variables)
                ch.agent = True
        if self.mode == "ring":
            # originate_timeout counts from the originate; the recorded NO_ANSWER came 4.38 s
            # after CHANNEL_CREATE with originate_timeout=5.
            hangup = next(e for e in events if e.name == "CHANNEL_HANGUP")
            timeout = float(self.variables.get("originate_timeout", "60"))
            await self._wait(max(0.0, timeout - (events[create].ts - events[0].ts) / 1e6))
            cause = self.killed or hangup.get("Hangup-Cause")
            tail = [e for e in events if e.ts >= hangup.ts]
            for ev in tail:
                if ev.name == "BACKGROUND_JOB":
                    self.fs.emit(self._render(ev).render(nested=f"-ERR {cause}\n"))
                else:
                    self.fs.emit(self._render(ev, **{"Hangup-Cause": cause}))
            return
        while self.killed is None and not self.gone:
            await self._wait(3600)
        if self.gone:
            return
        # Our uuid_kill of the answered agent (acd-moh-bridge-agent-hangs-up.esl): its
        # HANGUP, the hook's bridge ending, then its HANGUP_COMPLETE.
        ch = self.fs.channels.get(self.a)
        partner = (ch.bridged_to or ch.last_partner) if ch is not None else ""
        rec_c = ACD_LEGS[self.file][0]
        # After a bridge the agent's events name the caller (Other-Leg-*, Channel-Call-UUID
        # = the caller's uuid, the caller's number): acd-moh-bridge-agent-hangs-up.esl.
        extra = self.fs._c_sub(self.file, rec_c, partner) if partner else []
        for name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            tpl = next(e for e in events if e.name == name)
            over = {"Hangup-Cause": self.killed or "NORMAL_CLEARING"}
            self.fs.emit(tpl.render([*extra, *self.subs], over))


#: Eavesdrop recordings: file -> (number of C in ${U}NN; A = NN+1, S = NN+2, the user dialled).
SPY_RECORDINGS: dict[str, tuple[int, str]] = {
    "eavesdrop-listen.esl": (51, "supervisor1"),
    "eavesdrop-whisper-agent.esl": (57, "69057"),
    "eavesdrop-barge.esl": (63, "69063"),
    "eavesdrop-dtmf-mode-switch.esl": (60, "69060"),
}
SPY_DTMF = "eavesdrop-dtmf-mode-switch.esl"
SPY_LISTEN = "eavesdrop-listen.esl"
#: eavesdrop's digits (switch_ivr_eavesdrop_session): who hears the supervisor.
SPY_DIGIT_MODES = {"0": "listen", "1": "caller", "2": "whisper", "3": "barge"}


def _spy_legs(file: str) -> tuple[str, str, str]:
    n, _ = SPY_RECORDINGS[file]
    return TEMPLATE_A + str(n), TEMPLATE_A + str(n + 1), TEMPLATE_A + str(n + 2)


class _SpyCall:
    """One ``originate ... &eavesdrop(<target>)``: the recorded supervisor leg S."""

    def __init__(
        self,
        fs: FakeFreeSwitch,
        call_id: str,
        job: str,
        command: str,
        variables: dict[str, str],
        dial: str,
        target: str,
    ) -> None:
        self.fs = fs
        self.s = call_id
        self.job = job
        self.command = command
        self.target = target
        aleg = variables.get("eavesdrop_whisper_aleg") == "true"
        bleg = variables.get("eavesdrop_whisper_bleg") == "true"
        self.file = (
            "eavesdrop-barge.esl"
            if aleg and bleg
            else "eavesdrop-whisper-agent.esl"
            if bleg
            else "eavesdrop-listen.esl"
        )
        if aleg and not bleg:
            # Not recorded with the variable (digit 1 was: eavesdrop-dtmf-mode-switch.esl).
            self.file = "eavesdrop-listen.esl"
        self.mode = (
            "barge" if aleg and bleg else "whisper" if bleg else "caller" if aleg else "listen"
        )
        #: Every mode the session was in, in order (the digits received change it).
        self.modes = [self.mode]
        self.digits: list[str] = []
        rec_c, rec_a, rec_s = _spy_legs(self.file)
        user = re.fullmatch(r"(?:user/|sofia/[^/]+/)([^@]+)(?:@.*)?", dial)
        self.subs = [
            *_uuid_sub(rec_s, call_id),
            *_uuid_sub(rec_a, target),
            (re.compile(re.escape(SPY_RECORDINGS[self.file][1])), user.group(1) if user else dial),
        ]
        host = re.fullmatch(r"sofia/[^/]+/[^@]+@([0-9.]+):(\d+)", dial)
        if host is not None:
            # The supervisor's phone: sofia/external/supervisor1@127.0.0.1:5096 in
            # eavesdrop-listen.esl, <number>@127.0.0.1:5080 in the others.
            self.subs.append(
                (re.compile(r"127\.0\.0\.1(%3A|:)50(?:96|80)"), rf"{host[1]}\g<1>{host[2]}")
            )
        target_ch = fs.channels.get(target)
        if target_ch is not None and target_ch.bridged_to:
            # The target's media bug names the target's bridge partner (Other-Leg-*, the
            # partner's number): the recorded caller C -> the target's partner.
            self.subs += fs._c_sub(self.file, rec_c, target_ch.bridged_to)
        self.ended = False
        self.wake = asyncio.Event()
        self.killed: str | None = None
        self.end_by: Literal["kill", "star", "target"] | None = None

    def _pick(self, file: str) -> list[TEvent]:
        """S's events, the target's eavesdrop media bug, S's BACKGROUND_JOB, in order."""
        _, rec_a, rec_s = _spy_legs(file)
        job = next(
            e.get("Job-UUID")
            for e in events_of(file)
            if e.name == "BACKGROUND_JOB" and rec_s in e.nested
        )
        return [
            e
            for e in events_of(file)
            if e.uid == rec_s
            or (
                e.uid == rec_a
                and e.name in ("MEDIA_BUG_START", "MEDIA_BUG_STOP")
                and e.get("Media-Bug-Function") == "eavesdrop"
            )
            or (e.name == "BACKGROUND_JOB" and e.get("Job-UUID") == job)
        ]

    def _render(self, ev: TEvent, subs: list[tuple[re.Pattern[str], str]]) -> TEvent:
        if ev.name == "BACKGROUND_JOB":
            _, _, arg = self.command.partition(" ")
            _, _, rec_s = _spy_legs(self.file)
            body = ev.nested.replace(rec_s, self.s)
            return ev.render(subs, {"Job-UUID": self.job, "Job-Command-Arg": arg}, nested=body)
        return ev.render(subs)

    async def run(self) -> None:
        self.fs.calls[self.s] = self
        self.fs.spies[self.s] = self
        try:
            await self._run()
        finally:
            self.fs.calls.pop(self.s, None)

    async def _run(self) -> None:
        events = self._pick(self.file)
        _, _rec_a, _rec_s = _spy_legs(self.file)
        start = next(k for k, e in enumerate(events) if e.name == "CHANNEL_CREATE")
        bug = next(k for k, e in enumerate(events) if e.name == "MEDIA_BUG_START")
        if self.target not in self.fs.channels:
            # Not recorded: an eavesdrop on a leg that is gone attaches nothing; the
            # application returns at once and the leg hangs up, like the recorded '*' end.
            bug -= 1
            self.end_by = "target"
        prev = events[start].ts
        for ev in events[start : bug + 1]:
            await asyncio.sleep(max(0, ev.ts - prev) / 1e6 * self.fs.time_scale)
            prev = ev.ts
            self.fs.emit(self._render(ev, self.subs))
        while self.end_by is None:
            await self.wake.wait()
            self.wake.clear()
        if self.end_by == "kill":
            # Recorded end of uuid_kill S: the events after the media bug started, minus
            # the recorder's own session_record bugs.
            for ev in events[bug + 1 :]:
                cause = self.killed or "NORMAL_CLEARING"
                over = {"Hangup-Cause": cause} if ev.get("Hangup-Cause") else {}
                self.fs.emit(self._render(ev, self.subs).render(overrides=over))
            return
        # '*' (recorded) or the target gone (modelled on it): the DTMF file's tail.
        tail = self._pick(SPY_DTMF)
        star = next(
            k for k, e in enumerate(tail) if e.name == "DTMF" and e.get("DTMF-Digit") == "*"
        )
        _, dtmf_a, dtmf_s = _spy_legs(SPY_DTMF)
        subs = [*_uuid_sub(dtmf_s, self.s), *_uuid_sub(dtmf_a, self.target)]
        for ev in tail[star + 1 :]:
            if ev.name == "MEDIA_BUG_STOP" and self.target not in self.fs.channels:
                continue  # the target is gone: its bug went with it
            self.fs.emit(ev.render(subs))

    async def received(self, digit: str) -> None:
        """``uuid_recv_dtmf S <digit>``: the DTMF event on S, then what eavesdrop does."""
        if self.end_by is not None or self.s not in self.fs.channels:
            return
        self.digits.append(digit)
        _, _, dtmf_s = _spy_legs(SPY_DTMF)
        tpl = next(
            e
            for e in self._pick(SPY_DTMF)
            if e.name == "DTMF" and e.get("DTMF-Digit") == ("*" if digit == "*" else "2")
        )
        self.fs.emit(tpl.render(_uuid_sub(dtmf_s, self.s), {"DTMF-Digit": digit}))
        self._digit(digit)

    async def eavesdrop_command(self, digits: str) -> None:
        """``sendevent`` with ``unique-id: S`` and ``eavesdrop-command: <digits>``: the same
        as received digits, without a DTMF event (eavesdrop-dtmf-mode-switch.esl)."""
        for digit in digits:
            if self.end_by is not None or self.s not in self.fs.channels:
                return
            self.digits.append(digit)
            self._digit(digit)

    def _digit(self, digit: str) -> None:
        if digit == "*":
            self.end_by = "star"
            self.wake.set()
        elif digit in SPY_DIGIT_MODES:
            self.mode = SPY_DIGIT_MODES[digit]
            self.modes.append(self.mode)

    def target_gone(self) -> None:
        if self.end_by is None:
            self.end_by = "target"
            self.wake.set()

    def leg_gone(self, uid: str) -> None:
        pass

    async def kill(self, uid: str, cause: str) -> None:
        if self.end_by is None:
            self.killed, self.end_by = cause, "kill"
            self.wake.set()


class OutboundLeg:
    """FreeSWITCH's side of one outbound-socket session, from the recording."""

    def __init__(self, fs: FakeFreeSwitch, call: _Call, uid: str) -> None:
        self.fs = fs
        self.call = call
        self.uid = uid
        segs = outbound_transcript()
        self.connect_reply = segs[0][1][0]
        self.templates: dict[str, list[TEvent]] = {}
        for _, frames in segs:
            for f in frames:
                if f.event is not None:
                    self.templates.setdefault(f.event.name, []).append(f.event)
        # Recorded: myevents on the outbound socket delivered no PLAYBACK_*
        # (they only reached the inbound connection), so only the names seen
        # in the outbound recording are written to the socket.
        self.socket_names = set(self.templates)
        for ev in events_of("outbound-socket-ivr.esl"):
            if ev.name.startswith("PLAYBACK_"):
                self.templates.setdefault(ev.name, []).append(ev)
        self.tpl_uid = self.templates["CHANNEL_EXECUTE"][0].uid
        # myevents lists CHANNEL_PARK (mod_event_socket.c); the recorded session subscribed
        # after the socket app's own park fired, so a later park of the leg (leave_for_park)
        # is the first one a session sees.
        self.socket_names.add("CHANNEL_PARK")
        self.subs = [
            *_uuid_sub(self.tpl_uid, uid),
            (re.compile(r"(?<!\d)67001(?!\d)"), call.number),
        ]
        ch = fs.channels.get(uid)
        if ch is not None:
            # The recording's socket ran on the far-end leg; when our own
            # A-leg runs it, its events carry the A-leg's channel name.
            pattern = re.compile(r"sofia/external/0000000000%40127\.0\.0\.1(?!%3A)")
            self.subs.append((pattern, fs_url_encode(ch.name)))
        self.writer: asyncio.StreamWriter | None = None
        self.digits: list[str] = []
        self.gathering = False
        self.hung_up = False
        self.hung_up_event = asyncio.Event()
        #: Called right after this leg's CHANNEL_HANGUP while an application that reports
        #: its own end runs (a voicemail ``record``, fake_voicemail.py).
        self.on_hangup: Callable[[], None] | None = None
        #: Every command the engine sent on this session.
        self.received: list[str] = []
        #: Application-Response of the last application the session ran: the socket app's
        #: own EXECUTE_COMPLETE repeats it (FILE PLAYED after a playback in
        #: outbound-socket-ivr.esl, _none_ after a record in outbound-socket-record-*.esl).
        self.last_response = ""
        #: Channel variables the session's applications left (play_and_get_digits:
        #: read_result and its digits variable); every later event of the leg carries them
        #: (outbound-socket-gather-success.esl: success and 42 up to HANGUP_COMPLETE), and
        #: none before the first gather (the record sessions have no read_result at all).
        self.app_vars: dict[str, str] = {}
        #: uuid_park moved the leg to the core's park: the socket app has returned.
        self.parked = False
        #: The session ended (``exit`` or the socket closed) with the leg parked and up.
        self.released = False
        fs.sessions.append(self)

    @property
    def socket_app_running(self) -> bool:
        return not self.hung_up and not self.parked and not self.released

    def ev(self, name: str, index: int = 0, **over: str) -> TEvent:
        return self.templates[name][index].render(self.subs, over)

    def send(self, ev: TEvent) -> None:
        ev = with_codec(ev, self.call.variables)  # a PCMU call's codec (fake_voicemail.py)
        if ev.uid == self.uid:
            ev = self._with_app_vars(ev)
            if ev.name == "CHANNEL_EXECUTE_COMPLETE" and ev.get("Application") != "socket":
                self.last_response = ev.get("Application-Response")
        if (
            ev.name in self.socket_names
            and self.writer is not None
            and not self.writer.is_closing()
        ):
            self.writer.write(ev.plain())
        self.fs.emit(ev)

    def _with_app_vars(self, ev: TEvent) -> TEvent:
        """The templates come from outbound-socket-ivr.esl, whose gather failed: its
        read_result (and any digits variable) is replaced by what this session's apps left."""
        stale = {"variable_read_result", "variable_digits"} - set(self.app_vars)
        pairs = [(k, v) for k, v in ev.pairs if k not in stale]
        if len(pairs) != len(ev.pairs):
            ev = TEvent(ev.name, pairs, ev.nested, ev.ts)
        if self.app_vars and any(k.startswith("variable_") for k, _ in ev.pairs):
            ev = ev.render(overrides=self.app_vars)
        return ev

    def press(self, digit: str) -> None:
        """One DTMF digit from the far end reaches this leg."""
        self.send(self.ev("DTMF", 0 if digit != "#" else 2, **{"DTMF-Digit": digit}))
        self.digits.append(digit)

    async def far_end_presses(self, digits: str) -> None:
        for k, d in enumerate(digits):
            if self.hung_up:
                return
            if k:
                # Recorded (outbound-socket-gather-success.esl): uuid_send_dtmf 42#
                # reached the leg as 4, 2, # about 520 ms apart.
                await asyncio.sleep(DTMF_SPACING_S * self.fs.time_scale)
            self.press(d)

    async def run(self, host: str, port: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return
        self.writer = writer
        buf = b""
        try:
            while not self.hung_up and not self.released:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                while b"\n\n" in buf:
                    raw, buf = buf.split(b"\n\n", 1)
                    text = raw.decode().lstrip("\n")
                    if text:
                        self.received.append(text)
                        await self._command(text)
        finally:
            if self.parked and not self.hung_up:
                self._release()
            elif not self.hung_up:
                await self._hangup("NORMAL_CLEARING")
            writer.close()

    async def leave_for_park(self) -> None:
        """``uuid_park`` (inbound connection) while this session's socket app runs.

        No recording has it; modelled on the FreeSWITCH 1.10.12 source (a88d069d6f):
        uuid_park (mod_commands) -> switch_ivr_park_session sets CF_TRANSFER and state
        CS_PARK. The socket app (async mode) sits in switch_ivr_park, whose loop needs
        switch_channel_ready(), false under CF_TRANSFER: the loop ends and fires
        CHANNEL_UNPARK; socket_function does not resume the dialplan under CF_TRANSFER and
        returns, so the app's CHANNEL_EXECUTE_COMPLETE fires and the dialplan's next
        application (engine.xml's hangup) never runs: the state machine runs CS_PARK's
        standard_on_park -> switch_ivr_park, CHANNEL_PARK with no CHANNEL_EXECUTE (as
        recorded after park_after_bridge). myevents lists all three, so the session gets them
        too. The events are this session's recorded UNPARK and EXECUTE_COMPLETE(socket)
        (from its end; the PARK is that UNPARK renamed, both being fired by switch_ivr_park
        with the channel's data) with the live values switch_channel_event_set_data writes
        for an answered leg in CS_PARK: Answer-State answered, no Hangup-Cause,
        Channel-State-Number 6 (CS_PARK; Channel-State is the running state: CS_EXECUTE,
        then CS_PARK)."""
        if not self.socket_app_running:
            return
        self.parked = True
        ch = self.fs.channels.get(self.uid)
        if ch is not None:
            ch.app_running = False  # a core park, not the park application
        live = {"Answer-State": "answered", "Channel-State-Number": "6"}
        unpark = self.templates["CHANNEL_UNPARK"][0]
        for tpl in (unpark, self.templates["CHANNEL_EXECUTE_COMPLETE"][-1]):  # socket app's
            self.send(_without(tpl.render(self.subs, live), "Hangup-Cause"))
        # switch_ivr_park fires CHANNEL_PARK and CHANNEL_UNPARK alike (event_set_data of
        # the channel): the UNPARK with its name and the recorded PARK's source line.
        line = next(
            e.get("Event-Calling-Line-Number")
            for e in events_of("outbound-socket-ivr.esl")
            if e.name == "CHANNEL_PARK"
        )
        over = {
            **live,
            "Event-Name": "CHANNEL_PARK",
            "Event-Calling-Line-Number": line,
            "Channel-State": "CS_PARK",
        }
        parked = _without(unpark.render(self.subs, over), "Hangup-Cause")
        self.send(TEvent("CHANNEL_PARK", parked.pairs, parked.nested, parked.ts))

    async def hangup_released(self, cause: str) -> None:
        """The leg, parked since its session ended, hangs up: the session's recorded
        CHANNEL_HANGUP and HANGUP_COMPLETE; no socket app is left to complete."""
        if self.hung_up:
            return
        self.hung_up = True
        self.hung_up_event.set()
        self.send(self.ev("CHANNEL_HANGUP", 0, **{"Hangup-Cause": cause}))
        self.send(self.ev("CHANNEL_HANGUP_COMPLETE", 0, **{"Hangup-Cause": cause}))

    def _release(self) -> None:
        """The session ended while the leg is parked (``exit``, or the client closed the
        socket). From the source: listener_run leaves its loop, sends send_disconnect's
        notice and closes the socket; it hangs nothing up (the dialplan is not resumed
        under CF_TRANSFER and without ``resume``). The leg stays up, parked. Not modelled:
        clearing CF_CONTROLLED then ends that park loop (a CHANNEL_UNPARK, which the
        engine does not subscribe to) once nothing plays on the leg."""
        if self.released:
            return
        self.released = True
        ch = self.fs.channels.get(self.uid)
        if ch is not None and ch.session is self:
            ch.session = None

    def connect_pairs(self) -> list[tuple[str, str]]:
        """The reply to ``connect``: the recorded channel data, for this leg."""
        pairs = [(k, substitute(v, self.subs)) for k, v in self.connect_reply.headers.items()]
        flow = self.call.variables.get("engine_ivr_flow")
        if flow:
            pairs.insert(-4, ("variable_engine_ivr_flow", fs_url_encode(flow)))
        return pairs

    async def _command(self, text: str) -> None:
        assert self.writer is not None
        line, *rest = text.split("\n")
        headers = {k.lower(): v for k, v in (h.split(": ", 1) for h in rest if ": " in h)}
        verb, _, arg = line.partition(" ")
        if verb == "connect":
            pairs = self.connect_pairs()
            self.writer.write(("\n".join(f"{k}: {v}" for k, v in pairs) + "\n\n").encode())
        elif verb == "myevents":
            self.writer.write(_reply("+OK Events Enabled"))
        elif verb == "linger":
            self.writer.write(_reply("+OK will linger"))
        elif verb == "api":
            self.writer.write(_api(await self.fs._run_api(arg)))
        elif verb == "exit" and self.parked:
            # mod_event_socket.c (not recorded): "+OK bye", then send_disconnect() of an
            # outbound session (Controlled-Session-UUID, Content-Disposition: disconnect, the
            # goodbye text), then the socket closes; the parked leg stays up.
            self.writer.write(_reply("+OK bye"))
            goodbye = _DISCONNECT.split(b"\n\n", 1)[1]  # the same text as recorded
            self.writer.write(
                (
                    "Content-Type: text/disconnect-notice\n"
                    f"Controlled-Session-UUID: {self.uid}\n"
                    "Content-Disposition: disconnect\n"
                    f"Content-Length: {len(goodbye)}\n\n"
                ).encode()
                + goodbye
            )
            self._release()
        elif verb == "exit":
            self.writer.write(_reply("+OK bye"))
            await self._hangup("NORMAL_CLEARING")
        elif verb == "sendmsg" and headers.get("call-command") == "hangup":
            self.writer.write(_reply("+OK"))
            await self._hangup(headers.get("hangup-cause", "NORMAL_CLEARING"))
        elif verb == "sendmsg" and headers.get("call-command") == "execute":
            self.writer.write(_reply("+OK"))
            await self._execute(
                headers.get("execute-app-name", ""),
                headers.get("execute-app-arg", ""),
                headers.get("event-uuid") or str(uuidlib.uuid4()),
            )
        else:
            self.writer.write(_reply("-ERR command not found"))

    async def _execute(self, app: str, arg: str, app_uuid: str) -> None:
        base = {"Application": app, "Application-Data": arg, "Application-UUID": app_uuid}
        self.send(self.ev("CHANNEL_EXECUTE", 0, **base))
        response = "_none_"
        extra: dict[str, str] = {}
        ch = self.fs.channels.get(self.uid)
        if app == "answer" and ch is not None and not ch.answered:
            self.send(self.ev("CHANNEL_PROGRESS_MEDIA"))
            self.send(self.ev("CHANNEL_ANSWER"))
        elif app == "playback":
            self.send(self.ev("PLAYBACK_START", 0, **{"Playback-File-Path": arg}))
            await asyncio.sleep(0.01)
            self.send(self.ev("PLAYBACK_STOP", 0, **{"Playback-File-Path": arg}))
            response = "FILE PLAYED"
        elif app == "play_and_get_digits":
            extra = await self._gather(arg)
            self.app_vars = dict(extra)
        elif app == "set" and "=" in arg and ch is not None:
            k, _, v = arg.partition("=")
            ch.variables[k] = v
        elif app == "record":
            # outbound-socket-record-silence*.esl: tests/fakes/fake_voicemail.py
            done_ev = await run_record(self, arg, base)
            if done_ev is not None:
                # What record leaves on the channel stays on its later events
                # (outbound-socket-record-silence*.esl: HANGUP .. HANGUP_COMPLETE).
                self.app_vars.update(
                    (k, unquote(v))
                    for k, v in done_ev.pairs
                    if k.startswith("variable_record_") or k == "variable_silence_hits_exhausted"
                )
            if done_ev is not None and not self.hung_up:
                self.send(done_ev)
            return
        if self.hung_up:
            return
        done = self.templates["CHANNEL_EXECUTE_COMPLETE"][0]
        self.send(
            done.render(self.subs, {**base, "Application-Response": response}, add=extra.items())
        )

    async def _gather(self, arg: str) -> dict[str, str]:
        parts = arg.split(" ")
        max_digits, timeout_ms, terms, prompt, var = (
            int(parts[1]),
            int(parts[3]),
            parts[4],
            parts[5],
            parts[7],
        )
        # Recorded: digits pressed before the step starts are flushed (the
        # transcript's 42# arrived early and read_result was "failure").
        self.digits.clear()
        self.send(self.ev("PLAYBACK_START", 0, **{"Playback-File-Path": prompt}))
        self.send(self.ev("PLAYBACK_STOP", 0, **{"Playback-File-Path": prompt}))
        # 65XXX keeps to its own recorded timeline (_Call._far_end_timeline);
        # far_end_digits is a test knob for other numbers.
        press = self.fs.far_end_digits.get(self.call.number)
        if press:
            self.fs._spawn(self.far_end_presses(press))
        # mod_dptools: <timeout> is the wait for a digit, and the optional 10th argument,
        # <digit_timeout> (the wait between digits), defaults to it: every key restarts
        # the wait (the engine sends no digit_timeout). Not one overall deadline: with
        # one, a slow caller (or a loaded test box) lost the last digits of a gather.
        loop = asyncio.get_running_loop()
        wait_s = timeout_ms / 1000 * self.fs.time_scale
        deadline, keyed = loop.time() + wait_s, 0
        while loop.time() < deadline and not self.hung_up:
            got = "".join(self.digits)
            if len(got) >= max_digits or any(t in got for t in terms if terms != "none"):
                break
            if len(got) > keyed:
                deadline, keyed = loop.time() + wait_s, len(got)
            await asyncio.sleep(0.005)
        got = "".join(self.digits)
        for t in terms if terms != "none" else "":
            got = got.split(t)[0]
        got = got[:max_digits]
        if got:
            return {f"variable_{var}": got, "variable_read_result": "success"}
        return {"variable_read_result": "failure"}

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """The far end (or uuid_kill) ends the call while the session runs."""
        await self._hangup(cause)

    async def _hangup(self, cause: str) -> None:
        if self.hung_up:
            return
        self.hung_up = True
        self.hung_up_event.set()
        self.send(self.ev("CHANNEL_HANGUP", 0, **{"Hangup-Cause": cause}))
        if self.on_hangup is not None:
            # The interrupted application's own EXECUTE_COMPLETE comes before the socket
            # app's (recorded for playback and eavesdrop; see fake_voicemail.run_record).
            hook, self.on_hangup = self.on_hangup, None
            hook()
        # Recorded on all six outbound sessions (*.esl.outbound): the async socket app's
        # park ends (CHANNEL_UNPARK), the app completes, then CHANNEL_STATE CS_HANGUP and
        # CS_REPORTING, then HANGUP_COMPLETE; myevents delivers all of them to the session.
        if not self.parked:
            self.send(self.ev("CHANNEL_UNPARK", 0, **{"Hangup-Cause": cause}))
        complete = self.templates["CHANNEL_EXECUTE_COMPLETE"][-1]  # the socket app's own
        over = {"Application-Response": self.last_response} if self.last_response else {}
        self.send(complete.render(self.subs, over))
        for state in self.templates["CHANNEL_STATE"]:  # CS_HANGUP, CS_REPORTING
            self.send(state.render(self.subs, {"Hangup-Cause": cause}))
        self.send(self.ev("CHANNEL_HANGUP_COMPLETE", 0, **{"Hangup-Cause": cause}))
        if self.writer is not None and not self.writer.is_closing():
            notice = (
                "Content-Type: text/disconnect-notice\n"
                f"Controlled-Session-UUID: {self.uid}\n"
                "Content-Disposition: linger\n"
                f"Channel-Name: {unquote(self.ev('CHANNEL_HANGUP').get('Channel-Name'))}\n"
                "Linger-Time: -1\nContent-Length: 0\n\n"
            )
            self.writer.write(notice.encode())
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()
            self.writer.close()
