"""FreeSWITCH ESL events -> the engine's normalized :mod:`engine.pbx.base` events.

Pure: no I/O, the clock value comes in as ``now``. Kept apart from the driver
so it can be tested against the recorded transcripts directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from engine.pbx import base
from engine.pbx.freeswitch.causes import Q850_BY_SIP_FAILURE, q850_from_name
from engine.pbx.freeswitch.esl_codec import EslEvent


class _Common(TypedDict):
    switch: str
    call_id: str
    ts: float
    channel: str
    raw: Mapping[str, str]


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def hangup_fields(event: EslEvent) -> tuple[int, int | None, str]:
    """(Q.850 cause, SIP code, cause text) of a CHANNEL_HANGUP[_COMPLETE] event.

    Q.850: for a SIP failure response, Asterisk's number for that response
    (so both drivers agree: 503 is 34 on both); otherwise
    ``variable_hangup_cause_q850`` when FreeSWITCH set it (only on
    HANGUP_COMPLETE), else from the Hangup-Cause name. The SIP code is the
    final response the far end sent, ``variable_sip_term_status`` (486 busy,
    503 congestion, 200 for a call that was answered and cleared); a leg that
    never got a final response (no-answer, cancelled) has none.
    """
    text = event.get("Hangup-Cause")
    sip = _int_or_none(event.get("variable_sip_term_status"))
    if sip is not None and sip in Q850_BY_SIP_FAILURE:
        # Same number as the Asterisk driver for the same SIP failure (see causes.py).
        return Q850_BY_SIP_FAILURE[sip], sip, text
    q850 = _int_or_none(event.get("variable_hangup_cause_q850"))
    if q850 is None:
        q850 = q850_from_name(text)
    return q850, sip, text


@dataclass
class Normalizer:
    """Turns one switch's ESL events into normalized events, remembering just
    enough (which legs exist, which jobs belong to which originate) to decide
    between HungUp and OriginateFailed."""

    switch: str
    #: Job-UUID -> call_id of originates in flight.
    jobs: dict[str, str] = field(default_factory=dict)
    _created: set[str] = field(default_factory=set)
    _ringing: set[str] = field(default_factory=set)
    # Legs that hung up while their originate job had not reported yet: the
    # no-answer and busy transcripts show BACKGROUND_JOB arriving after the
    # leg's HANGUP_COMPLETE, and it must still see that a channel existed.
    _ended_before_job: set[str] = field(default_factory=set)
    #: Legs given hold music: uuid -> (class, stream). Their PLAYBACK_START/STOP of that
    #: stream are MohStarted/MohStopped; other playbacks (prompts) are not.
    moh: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Legs whose hold music is playing (its PLAYBACK_START came, its PLAYBACK_STOP not yet).
    moh_playing: set[str] = field(default_factory=set)

    def forget(self, call_id: str) -> None:
        self._created.discard(call_id)
        self._ringing.discard(call_id)
        self.moh.pop(call_id, None)
        self.moh_playing.discard(call_id)

    def __call__(self, event: EslEvent, now: float) -> list[base.PbxEvent]:
        name = event.name
        uid = event.unique_id
        common: _Common = {
            "switch": self.switch,
            "call_id": uid,
            "ts": now,
            "channel": event.get("Channel-Name"),
            "raw": event.headers,
        }
        if name == "CHANNEL_CREATE":
            self._created.add(uid)
            direction: Literal["inbound", "outbound"] = (
                "inbound" if event.get("Call-Direction") == "inbound" else "outbound"
            )
            return [
                base.ChannelCreated(
                    **common,
                    direction=direction,
                    caller_id_num=event.get("Caller-Caller-ID-Number"),
                    destination=event.get("Caller-Destination-Number"),
                )
            ]
        if name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"):
            # Both mean "the far end is alerting" (180 or 183 with early media);
            # report it once per leg.
            if uid in self._ringing:
                return []
            self._ringing.add(uid)
            return [base.Ringing(**common)]
        if name == "CHANNEL_ANSWER":
            return [base.Answered(**common)]
        if name == "CHANNEL_BRIDGE":
            other = event.get("Other-Leg-Unique-ID") or event.get("Bridge-B-Unique-ID")
            bridge_id = event.get("Channel-Call-UUID")
            out: list[base.PbxEvent] = [
                base.Bridged(**common, other_call_id=other, bridge_id=bridge_id)
            ]
            if other:
                # uuid_bridge fires ONE CHANNEL_BRIDGE, on the first leg only
                # (uuid-commands-live.esl, acd-moh-bridge-*.esl). Asterisk reports a
                # BridgeEnter per leg, so the other leg gets its own Bridged here.
                out.append(
                    base.Bridged(
                        switch=self.switch,
                        call_id=other,
                        ts=now,
                        raw=event.headers,
                        other_call_id=uid,
                        bridge_id=bridge_id,
                    )
                )
            return out
        if name == "CHANNEL_UNBRIDGE":
            return [base.Unbridged(**common, bridge_id=event.get("Channel-Call-UUID"))]
        if name == "DTMF":
            return [base.Dtmf(**common, digit=event.get("DTMF-Digit"))]
        if name in ("PLAYBACK_START", "PLAYBACK_STOP"):
            held = self.moh.get(uid)
            if held is None or event.get("Playback-File-Path") != held[1]:
                return []
            if name == "PLAYBACK_START":
                self.moh_playing.add(uid)
                return [base.MohStarted(**common, moh_class=held[0])]
            self.moh_playing.discard(uid)
            # The bridge breaks the music by itself (PLAYBACK_STOP, then the playback's
            # EXECUTE_COMPLETE says PLAYBACK ERROR: acd-moh-bridge-agent-hangs-up.esl).
            return [base.MohStopped(**common)]
        if name == "RECORD_START":
            return [base.RecordingStarted(**common, path=event.get("Record-File-Path"))]
        if name == "RECORD_STOP":
            return [base.RecordingStopped(**common, path=event.get("Record-File-Path"))]
        if name == "CHANNEL_HANGUP_COMPLETE":
            # HANGUP_COMPLETE, not HANGUP: only the former carries
            # variable_hangup_cause_q850 and the final SIP status.
            if uid in self.jobs.values():
                self._ended_before_job.add(uid)
                self._ringing.discard(uid)
            else:
                self.forget(uid)
            cause, sip, text = hangup_fields(event)
            return [base.HungUp(**common, cause=cause, sip_code=sip, cause_text=text)]
        if name == "BACKGROUND_JOB":
            return self._job(event, now)
        if name == "CUSTOM" and event.subclass == "sofia::gateway_state":
            return [self._gateway(event, now)]
        return []

    def _job(self, event: EslEvent, now: float) -> list[base.PbxEvent]:
        call_id = self.jobs.pop(event.get("Job-UUID"), None)
        if call_id is None:
            return []
        body = event.body.strip()
        created = call_id in self._created
        if call_id in self._ended_before_job:
            self._ended_before_job.discard(call_id)
            self.forget(call_id)
        if body.startswith("+OK") or created:
            # Placed, or failed after its channel existed: the leg's own
            # HANGUP_COMPLETE carries the real cause (busy shows USER_BUSY/486
            # there, and the job's "-ERR" text says nothing more).
            return []
        text = body.removeprefix("-ERR").strip() or "UNSPECIFIED"
        return [
            base.OriginateFailed(
                switch=self.switch,
                call_id=call_id,
                ts=now,
                cause=q850_from_name(text),
                cause_text=text,
                raw=event.headers,
            )
        ]

    def _gateway(self, event: EslEvent, now: float) -> base.TrunkStatus:
        ping = event.get("Ping-Status")
        state = event.get("State")
        status: Literal["reachable", "unreachable", "unknown"]
        if ping == "UP" or state == "REGED":
            status = "reachable"
        elif ping == "DOWN" or state in ("FAILED", "FAIL_WAIT", "UNREGED", "DOWN"):
            status = "unreachable"
        else:
            status = "unknown"
        return base.TrunkStatus(
            switch=self.switch,
            call_id="",
            ts=now,
            trunk=event.get("Gateway"),
            status=status,
            raw=event.headers,
        )
