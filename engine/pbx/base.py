"""The one interface every domain uses to talk to a media server.

Domains import only this module, never ``pbx.asterisk`` or ``pbx.freeswitch``.
Drivers translate switch-specific wire events into the normalized, frozen event
types below; each event keeps the raw headers it was built from for debugging.

Identity: ``call_id`` is the engine's id of one call leg. For calls we place it
is chosen *before* the originate is written (Asterisk ``ChannelId``, FreeSWITCH
``origination_uuid``), so the first event of the leg already carries it. For
legs the switch creates on its own (inbound calls, the far side of a dial) it is
the switch's unique id of the channel.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from engine.speech.amd.params import AmdOverrides

# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DialTarget:
    """Where an originated leg goes, in switch-neutral terms.

    ``kind="trunk"``: ``number`` through the SIP trunk ``name`` (PJSIP endpoint
    on Asterisk, sofia gateway on FreeSWITCH). ``kind="endpoint"``: a registered
    endpoint/user ``name``; ``number`` is ignored. ``kind="raw"``: ``name`` is a
    switch-native dial string passed through unchanged (expert use).
    """

    kind: Literal["trunk", "endpoint", "raw"]
    name: str
    number: str = ""


@dataclass(frozen=True, slots=True)
class Park:
    """After answer, hold the call in the engine's park extension."""

    kind: ClassVar[str] = "park"


@dataclass(frozen=True, slots=True)
class DialplanTarget:
    """After answer, continue in the switch dialplan (context/exten/priority)."""

    context: str
    exten: str
    priority: int = 1
    kind: ClassVar[str] = "dialplan"


@dataclass(frozen=True, slots=True)
class IvrTarget:
    """After answer, run the engine IVR flow ``flow`` (FastAGI / outbound socket)."""

    flow: str
    kind: ClassVar[str] = "ivr"


@dataclass(frozen=True, slots=True)
class Amd:
    """After answer, detect a person or an answering machine, report it as one
    :class:`AmdResult` on the leg, then hold the leg parked and silent until the
    engine acts (redirect, bridge, play, hangup).

    Asterisk: app_amd ``AMD()`` in ``[engine-amd]`` (dialplans/asterisk/engine.conf).
    FreeSWITCH 1.10 has no AMD module: the leg is parked and its audio is streamed to
    the engine (ESL ``unicast``), where ``engine.speech.amd`` decides (docs/amd.md).

    ``params``: this call's parameters (a campaign's ``amd.profile`` / ``amd.params``); None
    or an empty :class:`AmdOverrides` is the switch's own (amd.conf / the driver's AmdParams).
    Asterisk passes them as AMD()'s positional arguments, FreeSWITCH to the detector.
    """

    params: AmdOverrides | None = None
    kind: ClassVar[str] = "amd"

    @property
    def overrides(self) -> AmdOverrides:
        return self.params if self.params is not None else AmdOverrides()


Then = Park | DialplanTarget | IvrTarget | Amd


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    call_id: str
    target: DialTarget
    then: Then
    caller_id_num: str = ""
    caller_id_name: str = ""
    timeout_s: float = 30.0
    variables: Mapping[str, str] = field(default_factory=dict)


class SpyMode(enum.StrEnum):
    """What a supervisor on an agent's call does (docs/supervisor.md).

    ``listen``: hears both parties, nobody hears the supervisor. ``whisper`` (coach): the
    agent hears the supervisor, the caller does not. ``barge``: both parties hear the
    supervisor. The supervisor always hears both parties.
    """

    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


@dataclass(frozen=True, slots=True)
class SpyRequest:
    """Ring the supervisor's ``target`` and, once answered, put that leg on the call of the
    leg ``spied_call_id`` (the agent's leg) in ``mode``. ``call_id`` is the engine's id of the
    supervisor's leg, chosen before the originate as for every leg (``OriginateRequest``)."""

    call_id: str
    target: DialTarget
    spied_call_id: str
    mode: SpyMode
    caller_id_num: str = ""
    caller_id_name: str = ""
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class RecordingFormat:
    """How a driver's recordings are written: ``extension`` is appended to the path the
    domain chose; ``container`` "wav" (a header says rate and channels) or "raw" (16-bit
    little-endian PCM at ``rate`` Hz with ``channels`` interleaved channels)."""

    extension: str
    container: Literal["wav", "raw"]
    rate: int = 0
    channels: int = 1


# --------------------------------------------------------------------------
# Normalized events
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PbxEvent:
    """Base of every normalized event. ``ts`` is the engine clock (seconds)."""

    switch: str
    call_id: str
    ts: float
    channel: str = ""
    raw: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    type: ClassVar[str] = "PbxEvent"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form without the raw headers."""
        # Field by field, not asdict(self): asdict deep-copies ``raw`` (every
        # header of the switch's event) only for it to be dropped, which made
        # this the costliest step of publishing an event.
        data: dict[str, Any] = {}
        for f in fields(self):
            if f.name != "raw":
                data[f.name] = _plain(getattr(self, f.name))
        data["type"] = self.type
        return data


def _plain(value: Any) -> Any:
    """What ``asdict`` makes of a field value, for the types events hold."""
    if isinstance(value, str | int | float | enum.Enum) or value is None:
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelCreated(PbxEvent):
    direction: Literal["inbound", "outbound"] = "outbound"
    caller_id_num: str = ""
    destination: str = ""
    type: ClassVar[str] = "ChannelCreated"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ringing(PbxEvent):
    type: ClassVar[str] = "Ringing"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered(PbxEvent):
    type: ClassVar[str] = "Answered"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bridged(PbxEvent):
    other_call_id: str = ""
    bridge_id: str = ""
    type: ClassVar[str] = "Bridged"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbridged(PbxEvent):
    bridge_id: str = ""
    type: ClassVar[str] = "Unbridged"


@dataclass(frozen=True, slots=True, kw_only=True)
class MohStarted(PbxEvent):
    """Hold music started on the leg (``moh_start``). ``moh_class`` is the class the
    engine asked for."""

    moh_class: str = ""
    type: ClassVar[str] = "MohStarted"


@dataclass(frozen=True, slots=True, kw_only=True)
class MohStopped(PbxEvent):
    """Hold music on the leg stopped: ``moh_stop``, a bridge, a redirect or the hangup."""

    type: ClassVar[str] = "MohStopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class Dtmf(PbxEvent):
    digit: str
    direction: Literal["received", "sent"] = "received"
    type: ClassVar[str] = "Dtmf"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted(PbxEvent):
    path: str
    type: ClassVar[str] = "RecordingStarted"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStopped(PbxEvent):
    path: str
    type: ClassVar[str] = "RecordingStopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class AmdResult(PbxEvent):
    status: str  # HUMAN | MACHINE | NOTSURE | HANGUP
    cause: str = ""
    type: ClassVar[str] = "AmdResult"


@dataclass(frozen=True, slots=True, kw_only=True)
class HungUp(PbxEvent):
    """A leg ended. ``cause`` is Q.850; ``sip_code`` is the SIP final response
    the far end sent, when there was one; ``cause_text`` is the switch's name
    for the cause (``USER_BUSY``, ``Normal Clearing``...)."""

    cause: int
    sip_code: int | None = None
    cause_text: str = ""
    type: ClassVar[str] = "HungUp"


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateFailed(PbxEvent):
    """The switch could not place the leg at all and no channel was created
    (dead trunk, unknown endpoint). Carries the best cause we could infer."""

    cause: int
    sip_code: int | None = None
    cause_text: str = ""
    type: ClassVar[str] = "OriginateFailed"


TrunkReachability = Literal["reachable", "unreachable", "unknown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkStatus(PbxEvent):
    """Reachability report for a trunk; ``call_id`` is empty."""

    trunk: str
    status: TrunkReachability
    rtt_ms: float | None = None
    type: ClassVar[str] = "TrunkStatus"


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    SYNCING = "syncing"  # connected, rebuilding the live-call view; no new work yet
    UP = "up"
    DOWN = "down"  # lost; reconnecting with backoff
    REJECTED = "rejected"  # credentials refused; no retry until reconfigured
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkChanged(PbxEvent):
    """The control link to the switch changed state; ``call_id`` is empty."""

    state: LinkState
    reason: str = ""
    type: ClassVar[str] = "LinkChanged"


@dataclass(frozen=True, slots=True)
class LiveChannel:
    """One channel the switch reports as alive during a resync."""

    call_id: str
    channel: str
    state: Literal["ringing", "answered", "other"]
    linked_id: str = ""
    bridge_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resynced(PbxEvent):
    """Emitted after (re)connect once the live-call view is rebuilt."""

    live: tuple[LiveChannel, ...] = ()
    type: ClassVar[str] = "Resynced"


# --------------------------------------------------------------------------
# Driver interface
# --------------------------------------------------------------------------


@runtime_checkable
class PbxDriver(Protocol):
    """Control of one media server. Every method raises
    :class:`engine.core.errors.PbxUnavailable` when the link is not UP and
    :class:`engine.core.errors.ActionFailed` when the switch refuses or does
    not answer in time. None of them re-sends an originate on its own."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...  # "asterisk" | "freeswitch"

    @property
    def state(self) -> LinkState: ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def events(self) -> AsyncIterator[PbxEvent]: ...

    async def originate(self, request: OriginateRequest) -> None: ...
    async def hangup(self, call_id: str, cause: int = 16) -> None: ...
    async def answer(self, call_id: str) -> None: ...
    async def redirect(self, call_id: str, target: DialplanTarget | Park | IvrTarget) -> None: ...
    async def bridge(self, call_id: str, other_call_id: str, *, keep_call: bool = False) -> None:
        """Join two answered legs (``Bridged``; ``Unbridged`` when the bridge ends).

        When one leg hangs up, the other is hung up too; with ``keep_call`` only
        ``other_call_id``'s hangup leaves ``call_id`` up, parked and silent, so it can be
        held (``moh_start``) and offered again: the ACD caller whose agent hung up. A
        hangup of ``call_id`` always ends ``other_call_id``.
        """
        ...

    async def moh_start(self, call_id: str, moh_class: str = "default") -> None:
        """Play hold music class ``moh_class`` to an answered leg until ``moh_stop``,
        a ``bridge`` or a redirect (``MohStarted`` / ``MohStopped``)."""
        ...

    async def moh_stop(self, call_id: str) -> None:
        """Stop hold music; the leg stays up, parked and silent. Not for a bridged leg."""
        ...

    async def play(self, call_id: str, prompt: str) -> None: ...
    async def send_dtmf(self, call_id: str, digits: str) -> None: ...
    def record_format(self, stereo: bool) -> RecordingFormat:
        """What :meth:`record_start` writes for ``stereo``: the file extension to give the
        path, and how to read the file (docs/recordings.md)."""
        ...

    async def record_start(
        self, call_id: str, path: str, *, stereo: bool = False, append: bool = False
    ) -> None:
        """Record the leg to ``path`` (``RecordingStarted``). ``stereo``: channel 1 is what the
        leg receives from its far end, channel 2 what is sent to it. ``append``: continue an
        existing file (a resume after a gap pause, where the switch has no native pause)."""
        ...

    async def record_stop(self, call_id: str, path: str) -> None: ...

    async def record_mute(self, call_id: str, path: str, muted: bool) -> None:
        """Pause with silence: the file keeps its timeline, the muted stretch is digital
        silence (Asterisk ``MixMonitorMute``, FreeSWITCH ``uuid_record mask|unmask``)."""
        ...

    async def record_pause(
        self, call_id: str, path: str, paused: bool, *, stereo: bool = False
    ) -> None:
        """Pause leaving a gap: nothing is written while paused (FreeSWITCH ``uuid_record
        pause|resume``; Asterisk stops the MixMonitor and resumes by appending)."""
        ...

    async def get_var(self, call_id: str, name: str) -> str | None: ...
    async def set_var(self, call_id: str, name: str, value: str) -> None: ...
    async def live_calls(self) -> list[LiveChannel]: ...

    async def spy(self, request: SpyRequest) -> None:
        """Ring a supervisor's endpoint into a listen / whisper / barge session on an
        agent's leg (Asterisk ``ChanSpy``, FreeSWITCH ``eavesdrop``). Returns once the
        switch took the originate; the supervisor's leg then reports its own events under
        ``request.call_id`` (Ringing, Answered, HungUp / OriginateFailed) and ends by itself
        when the spied leg ends."""
        ...

    async def spy_mode(self, call_id: str, mode: SpyMode) -> None:
        """Switch a running spy session (the supervisor's leg ``call_id``) to ``mode``
        without ringing the supervisor again: the mode digit is received on the
        supervisor's leg, as if dialled (ChanSpy ``d``: 4/5/6; eavesdrop: 0/2/3)."""
        ...

    async def trunk_status(self) -> Mapping[str, TrunkReachability]:
        """Reachability of every trunk the switch knows, by its own name for it
        (PJSIP endpoint / sofia gateway), read from the switch now."""
        ...


@runtime_checkable
class ResumesAmd(Protocol):
    """A driver that can give an :class:`AmdResult` for an ``Amd()`` leg it did not place:
    a call taken over after a restart (or a link loss) before its result was heard. Both
    drivers implement it; the calls service asks after each resync (engine/calls/recovery.py).
    """

    async def resume_amd(
        self, call_id: str, *, answered: bool, params: AmdOverrides | None = None
    ) -> None:
        """Make sure the leg gets its one AmdResult: at its answer (``answered`` False), or
        now from what the switch still knows, or from a resumed analysis. ``params``: the
        call's own AMD parameters (``Amd.params``, kept in the live-call registry)."""
        ...


@dataclass(frozen=True, slots=True)
class RecordedTake:
    """What the switch said about a finished :meth:`CallSession.record` take (None where it
    said nothing: Asterisk's ``RECORD FILE`` reports no length)."""

    #: Length of the audio in the file (FreeSWITCH ``variable_record_ms``).
    duration_ms: int | None = None
    #: Size of the file in bytes (FreeSWITCH ``variable_record_file_size``).
    size_bytes: int | None = None
    #: True when silence ended the take, False when it ended otherwise (limit, key).
    ended_by_silence: bool | None = None


@runtime_checkable
class CallSession(Protocol):
    """Per-call IVR façade: FastAGI on Asterisk, outbound socket on FreeSWITCH.

    Every method runs one step on the channel and returns when the switch says
    the step finished. ``HangupDuringSession`` is raised once the caller is gone.
    """

    @property
    def call_id(self) -> str: ...

    @property
    def variables(self) -> Mapping[str, str]: ...  # channel vars known at session start

    async def answer(self) -> None: ...
    async def play(self, prompt: str) -> None: ...
    async def get_digits(
        self, prompt: str, max_digits: int, timeout_s: float, terminators: str = "#"
    ) -> str: ...
    async def get_var(self, name: str) -> str | None: ...
    async def set_var(self, name: str, value: str) -> None: ...
    async def record(
        self, path: str, max_s: float, silence_s: float = 0
    ) -> RecordedTake | None: ...
    async def hangup(self) -> None: ...


class HangupDuringSession(Exception):
    """The caller hung up while an IVR step was running."""


class HangupDuringRecord(HangupDuringSession):
    """The caller hung up during a :meth:`CallSession.record` take: the usual end of a
    voicemail. The switch keeps what it recorded up to the hang-up, and ``take`` is what it
    said about it (Asterisk ``200 result=-1 (hangup) endpos=<samples>``; FreeSWITCH the
    ``record`` app's CHANNEL_EXECUTE_COMPLETE after CHANNEL_HANGUP), or None when it said
    nothing before the session ended. Code that only knows ``HangupDuringSession`` still
    ends the flow as on any hang-up."""

    def __init__(self, message: str, take: RecordedTake | None) -> None:
        super().__init__(message)
        self.take = take
