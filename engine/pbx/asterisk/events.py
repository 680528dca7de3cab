"""Translate AMI events into the normalized events of :mod:`engine.pbx.base`.

Pure: no I/O, no clock (``now`` is passed in). State is kept in one small
class, :class:`AmiEventTranslator`, because several facts only become known
across events (which channel name belongs to which call, the Q.850 cause a
``HangupRequest`` announced before a ``Hangup`` that says ``Cause: 0``, the
MixMonitor file name set by ``VarSet`` before ``MixMonitorStart``).

Identity. The engine originates with ``ChannelId: <call_id>``, so Asterisk
gives the outbound channel ``Uniqueid == call_id`` and every event of that leg
already carries our id. Channels Asterisk creates on its own (inbound calls, the
far side of a dial, Local channel halves) use their ``Uniqueid`` as call id.

What the recorded Asterisk 22.10.1 transcripts show, per carrier outcome
(outbound channel = the one Originate created; "far" = the loopback carrier):

=============  ================================  ===================================
outcome        outbound channel ``Hangup``        ``OriginateResponse``
=============  ================================  ===================================
answered       Cause 16 Normal Clearing, no Tech  Success, Reason 4
busy           Cause 17 User busy, TechCause 486  Failure, Reason **0** (not 5!)
congestion     Cause 34 congestion, TechCause 503 Failure, Reason 0
no answer      Cause 19 no answer, TechCause 480  Failure, Reason 3 (far leg: 487)
dead trunk     no channel at all                  Failure, Reason 0, Uniqueid unknown
DTMF / AGI     Cause **0** Unknown (answered,     Success, Reason 4
               hung up by the dialplan/AGI)
=============  ================================  ===================================

So the cause is taken from the outbound channel's ``Hangup`` (``Cause``,
``Cause-txt``, ``TechCause`` = the SIP final response), never from the
OriginateResponse ``Reason``, which collapses busy and congestion into 0.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from engine.pbx.base import (
    AmdResult,
    Answered,
    Bridged,
    ChannelCreated,
    Dtmf,
    HungUp,
    LiveChannel,
    MohStarted,
    MohStopped,
    OriginateFailed,
    PbxEvent,
    RecordingStarted,
    RecordingStopped,
    Ringing,
    TrunkStatus,
    Unbridged,
)

from .ami_codec import Event, EventFilter

__all__ = [
    "EVENT_FILTERS",
    "ORIGINATE_REASON_CAUSES",
    "AmiEventTranslator",
    "live_channel_from_event",
]

# Asterisk channel states (ChannelState header), from include/asterisk/channelstate.h.
_STATE_RING = "4"  # an inbound channel being offered to us
_STATE_RINGING = "5"  # the far end is ringing (we got 180/183)
_STATE_UP = "6"

#: OriginateResponse ``Reason`` (an AST_CONTROL_* frame number, not a cause) ->
#: (Q.850 cause, name), used ONLY when no channel was ever created, so there is
#: no Hangup to read the real cause from. Reason 0 means "the channel could not
#: even be requested": with PJSIP that is an endpoint without a reachable
#: contact (qualify says Unavailable), i.e. the trunk, not the number, is the
#: problem, so we report 38 NETWORK_OUT_OF_ORDER, which trunk failover treats as
#: "try another trunk".
ORIGINATE_REASON_CAUSES: Mapping[str, tuple[int, str]] = {
    "0": (38, "NETWORK_OUT_OF_ORDER"),
    "1": (18, "NO_USER_RESPONSE"),  # AST_CONTROL_HANGUP before anything happened
    "3": (19, "NO_ANSWER"),  # AST_CONTROL_RINGING, then the Originate timeout
    "5": (17, "USER_BUSY"),  # AST_CONTROL_BUSY
    "8": (34, "NORMAL_CIRCUIT_CONGESTION"),  # AST_CONTROL_CONGESTION
}

_UNKNOWN = "<unknown>"


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _clean(value: str | None) -> str:
    # Asterisk prints "<unknown>" for unset caller ids and unique ids.
    if value is None or value == _UNKNOWN:
        return ""
    return value


def live_channel_from_event(event: Event) -> LiveChannel | None:
    """One ``CoreShowChannel`` list item -> :class:`LiveChannel` (None if unusable)."""
    uid = _clean(event.get("Uniqueid"))
    chan = event.get("Channel") or ""
    if not uid or not chan:
        return None
    cs = event.get("ChannelState")
    state: Literal["ringing", "answered", "other"]
    if cs == _STATE_UP:
        state = "answered"
    elif cs in (_STATE_RING, _STATE_RINGING):
        state = "ringing"
    else:
        state = "other"
    return LiveChannel(
        call_id=uid,
        channel=chan,
        state=state,
        linked_id=_clean(event.get("Linkedid")),
        bridge_id=_clean(event.get("BridgeId")),
    )


class _Base(TypedDict):
    switch: str
    call_id: str
    ts: float
    channel: str
    raw: Mapping[str, str]


@dataclass(slots=True)
class _Chan:
    """What we remember about one live channel."""

    name: str
    answered: bool = False
    ringing: bool = False
    # From HangupRequest (NOT SoftHangupRequest, see _on_hangup_request).
    q850: int | None = None
    tech_cause: int | None = None
    mixmonitor_file: str = ""
    recording: str = ""
    amd_status: str = ""
    #: An AmdResult was already emitted: app_amd's VarSets and [engine-amd]'s UserEvent
    #: both carry the result (seen live on the sandbox), and a call gets one.
    amd_reported: bool = False
    bridges: set[str] = field(default_factory=set)


class AmiEventTranslator:
    """Stateful, I/O-free AMI -> normalized event translator for one switch.

    Call :meth:`translate` for every AMI :class:`Event` in wire order. Unknown
    events (including the Debian build's ``TestEvent``) yield ``[]``.
    """

    #: How many ended call ids to remember, so an OriginateResponse that arrives
    #: after its channel's Hangup (the no-answer transcript) is still recognised.
    ENDED_MEMORY = 4096

    def __init__(self, switch: str) -> None:
        self.switch = switch
        self._chans: dict[str, _Chan] = {}
        self._originates: dict[str, str] = {}  # ActionID -> call_id
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._bridges: dict[str, list[str]] = {}
        # Channels touched / ended while a resync list was being collected.
        self._resync_seen: set[str] | None = None
        self._resync_ended: set[str] | None = None

    # ---------------------------------------------------------------- queries

    def channel_of(self, call_id: str) -> str | None:
        """The current Asterisk channel name of ``call_id``, if it is live."""
        chan = self._chans.get(call_id)
        return chan.name if chan else None

    def live_call_ids(self) -> list[str]:
        return list(self._chans)

    # ---------------------------------------------------------------- inputs

    def expect_originate(self, action_id: str, call_id: str) -> None:
        """Remember which call an Originate ActionID is for (before sending it)."""
        self._originates[action_id] = call_id

    def forget_originate(self, action_id: str) -> None:
        """The Originate was never accepted; no OriginateResponse will come."""
        self._originates.pop(action_id, None)

    def begin_resync(self) -> None:
        """Call right before sending CoreShowChannels.

        Events keep flowing while the list is collected; channels created or
        ended in that window must survive :meth:`reset_from_live`.
        """
        self._resync_seen = set()
        self._resync_ended = set()

    def reset_from_live(self, live: list[LiveChannel]) -> None:
        """Replace the channel map with what a CoreShowChannels resync reported.

        Anything we remembered from before the link dropped is stale: channels
        that ended while we were disconnected sent their Hangup to nobody.
        """
        old = self._chans
        seen = self._resync_seen or set()
        ended = self._resync_ended or set()
        self._resync_seen = self._resync_ended = None
        live = [lc for lc in live if lc.call_id not in ended]
        self._chans = {uid: old[uid] for uid in seen if uid in old}
        for lc in live:
            if lc.call_id in self._chans:
                continue
            prev = old.get(lc.call_id)
            chan = _Chan(name=lc.channel)
            if prev is not None:
                chan.mixmonitor_file = prev.mixmonitor_file
                chan.recording = prev.recording
                # One AmdResult per call, across a link loss too.
                chan.amd_reported = prev.amd_reported
            chan.answered = lc.state == "answered"
            chan.ringing = lc.state == "ringing"
            self._chans[lc.call_id] = chan
        self._bridges = {}
        for lc in live:
            if lc.bridge_id:
                self._bridges.setdefault(lc.bridge_id, []).append(lc.call_id)
                self._chans[lc.call_id].bridges.add(lc.bridge_id)

    def amd_from_vars(self, call_id: str, status: str, cause: str, now: float) -> list[PbxEvent]:
        """The AmdResult of a live channel whose AMD() ended while nobody listened (engine
        restart, link loss): its AMDSTATUS/AMDCAUSE, read with Getvar. Once per channel,
        like the VarSet/UserEvent path (whichever comes first wins)."""
        chan = self._chans.get(call_id)
        if chan is None or chan.amd_reported or not status:
            return []
        chan.amd_status = ""
        chan.amd_reported = True
        return [
            AmdResult(
                switch=self.switch,
                call_id=call_id,
                ts=now,
                channel=chan.name,
                status=status,
                cause=cause,
            )
        ]

    def translate(self, event: Event, now: float) -> list[PbxEvent]:
        """Normalized events for one AMI event (often none)."""
        handler = _HANDLERS.get(event.name.lower())
        if handler is None:
            return []
        return handler(self, event, now)

    # ---------------------------------------------------------------- helpers

    def _base(self, event: Event, now: float, call_id: str, channel: str) -> _Base:
        return {
            "switch": self.switch,
            "call_id": call_id,
            "ts": now,
            "channel": channel,
            "raw": event.headers.to_dict(),
        }

    def _chan(self, event: Event) -> tuple[str, _Chan] | None:
        """(call_id, channel record) of the event's channel, learning it if new."""
        uid = _clean(event.get("Uniqueid"))
        name = event.get("Channel") or ""
        if not uid:
            return None
        if self._resync_seen is not None:
            self._resync_seen.add(uid)
        chan = self._chans.get(uid)
        if chan is None:
            if uid in self._ended:
                # Late event of a channel we already closed (e.g. a list item).
                return None
            chan = _Chan(name=name)
            self._chans[uid] = chan
        elif name and chan.name != name:
            chan.name = name
        return uid, chan

    def _mark_ended(self, uid: str) -> None:
        if self._resync_ended is not None:
            self._resync_ended.add(uid)
        self._chans.pop(uid, None)
        self._ended[uid] = None
        self._ended.move_to_end(uid)
        while len(self._ended) > self.ENDED_MEMORY:
            self._ended.popitem(last=False)

    # ---------------------------------------------------------------- handlers

    def _on_newchannel(self, event: Event, now: float) -> list[PbxEvent]:
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        # Asterisk creates a channel it *receives* in state Ring (4) and a
        # channel it *places* in state Down (0), which tells the direction
        # without knowing the dialplan. (Local channel ";2" halves count as
        # inbound, which is what they are from the dialplan's point of view.)
        state = event.get("ChannelState")
        direction: Literal["inbound", "outbound"] = (
            "inbound" if state == _STATE_RING else "outbound"
        )
        out: list[PbxEvent] = [
            ChannelCreated(
                **self._base(event, now, uid, chan.name),
                direction=direction,
                caller_id_num=_clean(event.get("CallerIDNum")),
                destination=_clean(event.get("Exten")),
            )
        ]
        if state == _STATE_UP:
            chan.answered = True
            out.append(Answered(**self._base(event, now, uid, chan.name)))
        return out

    def _on_newstate(self, event: Event, now: float) -> list[PbxEvent]:
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        state = event.get("ChannelState")
        base = self._base(event, now, uid, chan.name)
        # Each transition is reported once: Asterisk repeats Newstate for the
        # same state on some re-INVITEs and early-media updates.
        if state == _STATE_RINGING and not chan.ringing and not chan.answered:
            chan.ringing = True
            return [Ringing(**base)]
        if state == _STATE_UP and not chan.answered:
            chan.answered = True
            return [Answered(**base)]
        return []

    def _on_rename(self, event: Event, now: float) -> list[PbxEvent]:
        # Masquerades and some transfers rename a channel; AMI actions need the
        # new name, the call id (Uniqueid) stays.
        uid = _clean(event.get("Uniqueid"))
        new = event.get("Newname")
        chan = self._chans.get(uid)
        if chan is not None and new:
            chan.name = new
        return []

    def _on_hangup_request(self, event: Event, now: float) -> list[PbxEvent]:
        # HangupRequest carries a real Q.850 cause (ast_queue_hangup_with_cause)
        # and often the SIP code as TechCause. SoftHangupRequest looks alike but
        # its "Cause" is the AST_SOFTHANGUP_* *flag* (16 = app unload, 32 =
        # explicit...), not Q.850, so it is deliberately not handled here.
        got = self._chan(event)
        if got is None:
            return []
        _, chan = got
        cause = _int(event.get("Cause"))
        if cause:
            chan.q850 = cause
        tech = _int(event.get("TechCause"))
        if tech:
            chan.tech_cause = tech
        return []

    def _on_hangup(self, event: Event, now: float) -> list[PbxEvent]:
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        base = self._base(event, now, uid, chan.name)
        out: list[PbxEvent] = []
        if chan.amd_status and not chan.amd_reported:
            out.append(AmdResult(**base, status=chan.amd_status))
        if chan.recording:
            # MixMonitor closes its file when the channel goes away and Asterisk
            # 22 sends no MixMonitorStop for that case (see mixmonitor.ami).
            out.append(RecordingStopped(**base, path=chan.recording))
        cause = _int(event.get("Cause")) or 0
        cause_text = event.get("Cause-txt") or ""
        if cause == 0:
            # "Cause: 0 Unknown" is what Asterisk reports when the dialplan or
            # an AGI ended an answered call without setting a cause
            # (dtmf-from-far-end.ami, fastagi-ivr.ami). Prefer the cause an
            # earlier HangupRequest announced; otherwise an answered call that
            # simply ended is a normal clearing.
            if chan.q850:
                cause, cause_text = chan.q850, ""
            elif chan.answered:
                cause, cause_text = 16, "Normal Clearing"
        sip = _int(event.get("TechCause")) or chan.tech_cause
        out.append(HungUp(**base, cause=cause, sip_code=sip, cause_text=cause_text))
        for bridge_id in chan.bridges:
            members = self._bridges.get(bridge_id)
            if members and uid in members:
                members.remove(uid)
        self._mark_ended(uid)
        return out

    def _on_originate_response(self, event: Event, now: float) -> list[PbxEvent]:
        action_id = event.action_id or ""
        call_id = self._originates.pop(action_id, None)
        if call_id is None:
            return []
        if (event.get("Response") or "").lower() == "success":
            return []
        if call_id in self._chans or call_id in self._ended:
            # A channel existed, so its own Hangup carries the true cause
            # (before or after this event); Reason would say 0 for busy.
            return []
        reason = event.get("Reason") or "0"
        cause, text = ORIGINATE_REASON_CAUSES.get(reason, (38, "NETWORK_OUT_OF_ORDER"))
        self._ended[call_id] = None
        return [
            OriginateFailed(
                **self._base(event, now, call_id, ""),
                cause=cause,
                cause_text=f"{text} (OriginateResponse Failure, Reason {reason})",
            )
        ]

    def _on_bridge_enter(self, event: Event, now: float) -> list[PbxEvent]:
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        bridge_id = event.get("BridgeUniqueid") or ""
        members = self._bridges.setdefault(bridge_id, [])
        # The first member already in the bridge is the "other" party: the
        # channel that entered first gets other_call_id="" because nobody was
        # there yet; the second one names the first.
        other = next((m for m in members if m != uid), "")
        if uid not in members:
            members.append(uid)
        chan.bridges.add(bridge_id)
        base = self._base(event, now, uid, chan.name)
        return [Bridged(**base, other_call_id=other, bridge_id=bridge_id)]

    def _on_bridge_leave(self, event: Event, now: float) -> list[PbxEvent]:
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        bridge_id = event.get("BridgeUniqueid") or ""
        members = self._bridges.get(bridge_id)
        if members and uid in members:
            members.remove(uid)
        chan.bridges.discard(bridge_id)
        base = self._base(event, now, uid, chan.name)
        return [Unbridged(**base, bridge_id=bridge_id)]

    def _on_bridge_destroy(self, event: Event, now: float) -> list[PbxEvent]:
        self._bridges.pop(event.get("BridgeUniqueid") or "", None)
        return []

    def _on_dtmf_end(self, event: Event, now: float) -> list[PbxEvent]:
        # DTMFBegin/DTMFEnd come in pairs; only End has the final digit duration,
        # and reporting once per digit is what consumers want.
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        digit = event.get("Digit") or ""
        if not digit:
            return []
        direction: Literal["received", "sent"] = (
            "sent" if (event.get("Direction") or "").lower() == "sent" else "received"
        )
        base = self._base(event, now, uid, chan.name)
        return [Dtmf(**base, digit=digit, direction=direction)]

    def _on_varset(self, event: Event, now: float) -> list[PbxEvent]:
        var = (event.get("Variable") or "").upper()
        if var not in ("AMDSTATUS", "AMDCAUSE", "MIXMONITOR_FILENAME"):
            return []
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        value = event.get("Value") or ""
        if var == "MIXMONITOR_FILENAME":
            # MixMonitorStart does not say which file; app_mixmonitor sets this
            # variable just before it (mixmonitor.ami).
            chan.mixmonitor_file = value
            return []
        if var == "AMDSTATUS":
            # AMD() sets AMDSTATUS then AMDCAUSE (amd-machine.ami); wait for the
            # cause so one AmdResult carries both. A hangup in between flushes it.
            chan.amd_status = value
            return []
        status = chan.amd_status
        if not status or chan.amd_reported:
            return []
        chan.amd_status = ""
        chan.amd_reported = True
        base = self._base(event, now, uid, chan.name)
        return [AmdResult(**base, status=status, cause=value)]

    def _on_user_event(self, event: Event, now: float) -> list[PbxEvent]:
        # Dialplans may also publish the AMD result explicitly:
        #   UserEvent(AmdResult,Status: ${AMDSTATUS},Cause: ${AMDCAUSE})
        if (event.get("UserEvent") or "").lower() != "amdresult":
            return []
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        status = event.get("Status") or event.get("AMDSTATUS") or ""
        if not status or chan.amd_reported:
            chan.amd_status = ""
            return []
        chan.amd_status = ""
        chan.amd_reported = True
        cause = event.get("Cause") or event.get("AMDCAUSE") or ""
        base = self._base(event, now, uid, chan.name)
        return [AmdResult(**base, status=status, cause=cause)]

    def _on_mixmonitor_start(self, event: Event, now: float) -> list[PbxEvent]:
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        chan.recording = chan.mixmonitor_file
        base = self._base(event, now, uid, chan.name)
        return [RecordingStarted(**base, path=chan.recording)]

    def _on_mixmonitor_stop(self, event: Event, now: float) -> list[PbxEvent]:
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        path = chan.recording or chan.mixmonitor_file
        chan.recording = ""
        base = self._base(event, now, uid, chan.name)
        return [RecordingStopped(**base, path=path)]

    def _on_moh_start(self, event: Event, now: float) -> list[PbxEvent]:
        # res_musiconhold: MusicOnHoldStart carries the class actually playing.
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        base = self._base(event, now, uid, chan.name)
        return [MohStarted(**base, moh_class=event.get("Class") or "")]

    def _on_moh_stop(self, event: Event, now: float) -> list[PbxEvent]:
        got = self._chan(event)
        if got is None:
            return []
        uid, chan = got
        return [MohStopped(**self._base(event, now, uid, chan.name))]

    def _on_contact_status(self, event: Event, now: float) -> list[PbxEvent]:
        # res_pjsip qualify results. "AOR" is the trunk's AOR, which our
        # pjsip.conf names like the endpoint. RoundtripUsec is microseconds.
        aor = event.get("AOR") or ""
        status = (event.get("ContactStatus") or "").lower()
        mapped: Literal["reachable", "unreachable", "unknown"]
        if status == "reachable":
            mapped = "reachable"
        elif status in ("unreachable", "removed"):
            mapped = "unreachable"
        else:
            mapped = "unknown"
        rtt_us = _int(event.get("RoundtripUsec"))
        rtt = rtt_us / 1000.0 if rtt_us and mapped == "reachable" else None
        base = self._base(event, now, "", "")
        return [TrunkStatus(**base, trunk=aor, status=mapped, rtt_ms=rtt)]

    def _on_peer_status(self, event: Event, now: float) -> list[PbxEvent]:
        # Older-style PeerStatus, which res_pjsip still emits: "Peer: PJSIP/name".
        peer = event.get("Peer") or ""
        if "/" in peer:
            peer = peer.split("/", 1)[1]
        status = (event.get("PeerStatus") or "").lower()
        mapped: Literal["reachable", "unreachable", "unknown"]
        if status in ("reachable", "registered"):
            mapped = "reachable"
        elif status in ("unreachable", "unregistered", "rejected"):
            mapped = "unreachable"
        else:
            mapped = "unknown"
        base = self._base(event, now, "", "")
        return [TrunkStatus(**base, trunk=peer, status=mapped)]


#: Every AMI event the translator reads, spelled as Asterisk sends it (event
#: names are case-sensitive in filters; lookups here fold case).
_HANDLED = {
    "Newchannel": AmiEventTranslator._on_newchannel,
    "Newstate": AmiEventTranslator._on_newstate,
    "Rename": AmiEventTranslator._on_rename,
    "HangupRequest": AmiEventTranslator._on_hangup_request,
    "Hangup": AmiEventTranslator._on_hangup,
    "OriginateResponse": AmiEventTranslator._on_originate_response,
    "BridgeEnter": AmiEventTranslator._on_bridge_enter,
    "BridgeLeave": AmiEventTranslator._on_bridge_leave,
    "BridgeDestroy": AmiEventTranslator._on_bridge_destroy,
    "DTMFEnd": AmiEventTranslator._on_dtmf_end,
    "VarSet": AmiEventTranslator._on_varset,
    "UserEvent": AmiEventTranslator._on_user_event,
    "MixMonitorStart": AmiEventTranslator._on_mixmonitor_start,
    "MixMonitorStop": AmiEventTranslator._on_mixmonitor_stop,
    "MusicOnHoldStart": AmiEventTranslator._on_moh_start,
    "MusicOnHoldStop": AmiEventTranslator._on_moh_stop,
    "ContactStatus": AmiEventTranslator._on_contact_status,
    "PeerStatus": AmiEventTranslator._on_peer_status,
}
_HANDLERS = {name.lower(): handler for name, handler in _HANDLED.items()}

#: The only values of the header that the handler of these events reads; any
#: other event of that name is dropped at once, so Asterisk need not send it.
#: (A call makes ~13 VarSets, for RTP statistics, SIPDOMAIN, PLAYBACKSTATUS...
#: and none of them matters here.) Values are the exact names app_amd,
#: app_mixmonitor and our dialplan's UserEvent use.
_ONLY_WITH = {
    "VarSet": ("Variable", ("AMDSTATUS", "AMDCAUSE", "MIXMONITOR_FILENAME")),
    "UserEvent": ("UserEvent", ("AmdResult",)),
}

#: What Asterisk should send the engine: exactly the events above. Sent as
#: ``Filter`` actions after every Login (AmiClient ``event_filters``) and kept
#: as ``eventfilter`` lines for user ``engine`` in
#: telephony-config/asterisk/manager.conf. On the sandbox this cuts the
#: events of one answered call from ~47 (Newexten per dialplan step, VarSet,
#: DialBegin/State/End, SoftHangupRequest, TestEvent...) to ~10.
EVENT_FILTERS: tuple[EventFilter, ...] = tuple(
    EventFilter(name, header, value)
    for name in _HANDLED
    for header, values in [_ONLY_WITH.get(name, ("", ("",)))]
    for value in values
)
