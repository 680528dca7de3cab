"""The ``record`` application on an outbound-socket session (voicemail), as recorded.

Third batch, tests/fixtures/freeswitch-1.10/README.md rows ``outbound-socket-record-silence*``:
a 67XXX leg on the outbound socket runs ``answer``, then ``record /tmp/vm-x.wav 10 200 2``
(event-lock); 1 s into the take the caller "speaks" (2 s of tone), then sends silent RTP
(``-pcmu`` on PCMU, the plain file on G722) or no RTP at all (``-no-rtp``, G722).

What the recordings show, and what the fake therefore does:

- the outbound session (``myevents``) gets CHANNEL_EXECUTE and CHANNEL_EXECUTE_COMPLETE of
  ``record`` and nothing between: no RECORD_START/STOP, no PLAYBACK_*. RECORD_START and
  RECORD_STOP for the leg reach only an inbound connection subscribed to them;
- CHANNEL_EXECUTE_COMPLETE(record) carries ``Application-Response: _none_``,
  ``variable_silence_hits_exhausted: true`` and the take's ``variable_record_ms``,
  ``_samples``, ``_seconds``, ``_file_size`` and ``_record_file_size``;
- the silence argument counts in frames of ``rate * seconds / samples_per_packet``
  (switch_ivr_play_say.c): 2 gives 2 s of silence on PCMU but 4 s on G722, whose
  samples_per_packet counts its 8 kHz RTP clock (160 per 20 ms) while the file rate is 16 kHz;
- with no RTP after the speech, comfort-noise frames still count as silence hits but are
  not written: the file holds only the speech.

The fake picks the recording that matches the take (codec from the originate's
``absolute_codec_string``; the caller's RTP after speech from ``fs.voicemail_callers``) and
keeps its numbers: the take's timing and ``record_*`` values are the recorded ones, shifted
by what differs (the silence argument, the speech's length, the limit). Not recorded: a PCMU
caller with no RTP (the no-RTP recording's offsets at 8 kHz), a take ended by its limit
(``silence_hits_exhausted: false``), a take without a silence threshold, and the caller's
hangup or DTMF during the take. For the hang-up the fake does the least the other recordings
and the source support, marked INFERRED in ``run_record``: CHANNEL_HANGUP, then the record
app's CHANNEL_EXECUTE_COMPLETE with the take so far, then the rest of the hang-up.
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
import re
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.fakes.esl_transcripts import TEvent, events_of, outbound_session

if TYPE_CHECKING:
    from tests.fakes.fake_esl import OutboundLeg

PCMU_FILE = "outbound-socket-record-silence-pcmu.esl"
G722_FILE = "outbound-socket-record-silence.esl"
NO_RTP_FILE = "outbound-socket-record-silence-no-rtp.esl"

#: Frames per 20 ms packet as switch_ivr_play_say.c divides by them: 160 for PCMU, and 160
#: for G722 too (its RTP clock is 8 kHz although it samples at 16 kHz; README row
#: outbound-socket-record-silence.esl).
SAMPLES_PER_PACKET = 160
FRAME_S = 0.02
#: A WAV file's header (record_file_size = 44 + 2 * record_samples in all three recordings).
WAV_HEADER = 44

#: The codec headers a PCMU call's events carry, taken from the PCMU recording (the other
#: templates of the fake's outbound session come from a G722 call).
_CODEC_KEYS = (
    "Channel-Read-Codec-Name",
    "Channel-Read-Codec-Rate",
    "Channel-Read-Codec-Bit-Rate",
    "Channel-Write-Codec-Name",
    "Channel-Write-Codec-Rate",
    "Channel-Write-Codec-Bit-Rate",
    "variable_read_codec",
    "variable_read_rate",
    "variable_original_read_codec",
    "variable_original_read_rate",
    "variable_write_codec",
    "variable_write_rate",
    "variable_rtp_use_codec_name",
    "variable_rtp_use_codec_rate",
)


@dataclass(frozen=True)
class CallerSpeech:
    """What the caller sends during a take (default: the recorded caller)."""

    #: Seconds after the record app starts that the caller starts speaking (no RTP before).
    at_s: float = 1.0
    #: How long the caller speaks.
    length_s: float = 2.0
    #: Silent RTP after the speech (True) or no RTP at all (the no-RTP recording).
    rtp_after: bool = True
    #: Seconds after the record app starts that the caller hangs up (None: stays on). Not
    #: recorded; what the fake then sends is inferred (``run_record``).
    hangup_at_s: float | None = None


@dataclass(frozen=True)
class Take:
    """One recorded take, read from its transcripts."""

    file: str
    rate: int
    hits_arg: int
    speech_at_s: float
    speech_len_s: float
    start_delay_s: float
    stop_at_s: float
    record_ms: int
    rtp_after: bool
    start: TEvent
    stop: TEvent
    done: TEvent

    @property
    def silence_wait_s(self) -> float:
        return silence_wait_s(self.rate, self.hits_arg)

    @property
    def tail_s(self) -> float:
        """What the recording shows beyond speech + silence wait before RECORD_STOP."""
        return self.stop_at_s - (self.speech_at_s + self.speech_len_s + self.silence_wait_s)

    @property
    def written_offset_ms(self) -> float:
        """record_ms beyond the speech and the silence that was written."""
        written = self.speech_len_s + (self.silence_wait_s if self.rtp_after else 0.0)
        return self.record_ms - written * 1000


def silence_wait_s(rate: int, hits_arg: int) -> float:
    """switch_ivr_play_say.c: ``silence_hits = file rate * hits / samples_per_packet``
    frames of 20 ms (integer arithmetic)."""
    return rate * hits_arg // SAMPLES_PER_PACKET * FRAME_S


@functools.cache
def take(file: str) -> Take:
    events = events_of(file)
    leg = next(e.uid for e in events if e.name == "RECORD_START")
    execute = next(
        e
        for e in events
        if e.name == "CHANNEL_EXECUTE" and e.uid == leg and e.get("Application") == "record"
    )
    start = next(e for e in events if e.name == "RECORD_START" and e.uid == leg)
    stop = next(e for e in events if e.name == "RECORD_STOP" and e.uid == leg)
    playback = next(e for e in events if e.name == "PLAYBACK_START" and e.uid != leg)
    tone = re.search(r"%\((\d+),", playback.get("Playback-File-Path"))
    assert tone is not None
    # The caller's own CHANNEL_EXECUTE_COMPLETE(record), from the outbound session.
    done = next(
        ev
        for ev in outbound_session(f"{file}.outbound")
        if ev.name == "CHANNEL_EXECUTE_COMPLETE" and ev.get("Application") == "record"
    )
    return Take(
        file=file,
        rate=int(done.get("variable_read_rate")),
        hits_arg=int(execute.get("Application-Data").split()[3]),
        speech_at_s=(playback.ts - execute.ts) / 1e6,
        speech_len_s=int(tone.group(1)) / 1000,
        start_delay_s=(start.ts - execute.ts) / 1e6,
        stop_at_s=(stop.ts - execute.ts) / 1e6,
        record_ms=int(done.get("variable_record_ms")),
        rtp_after="silence_stream" in playback.get("Playback-File-Path"),
        start=start,
        stop=stop,
        done=done,
    )


def is_pcmu(variables: dict[str, str]) -> bool:
    return variables.get("absolute_codec_string", "").upper() == "PCMU"


@functools.cache
def _pcmu_codec_headers() -> dict[str, str]:
    done = take(PCMU_FILE).done
    return {k: done.get(k) for k in _CODEC_KEYS if done.get(k)}


def with_codec(ev: TEvent, variables: dict[str, str]) -> TEvent:
    """``ev`` with a PCMU call's codec headers (only those the event already has)."""
    if not is_pcmu(variables):
        return ev
    keys = {k for k, _ in ev.pairs}
    over = {k: v for k, v in _pcmu_codec_headers().items() if k in keys}
    return ev.render(overrides=over) if over else ev


def _pick(pcmu: bool, caller: CallerSpeech) -> Take:
    if not caller.rtp_after:
        return take(NO_RTP_FILE)  # recorded on G722 only
    return take(PCMU_FILE if pcmu else G722_FILE)


def _values(ms: int, rate: int, by_silence: bool) -> dict[str, str]:
    samples = ms * rate // 1000
    size = str(WAV_HEADER + 2 * samples)
    return {
        "variable_silence_hits_exhausted": "true" if by_silence else "false",
        "variable_record_record_file_size": size,
        "variable_record_file_size": size,
        "variable_record_seconds": str(ms // 1000),
        "variable_record_ms": str(ms),
        "variable_record_samples": str(samples),
    }


def write_take(files: dict[str, bytes] | None, path: str, vals: dict[str, str], rate: int) -> None:
    """The file the switch leaves for a take (only when a test asked for files: ``files`` is
    then ``FakeFreeSwitch.voicemail_files``, which also keeps its bytes): a WAV of
    ``variable_record_samples`` samples at the call's rate, a 330 Hz tone (not recorded
    audio: the recordings hold no file contents)."""
    if files is None:
        return
    samples = int(vals["variable_record_samples"])
    pcm = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 330 * i / rate)))
        for i in range(samples)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    data = buf.getvalue()
    Path(path).write_bytes(data)
    files[path] = data


async def run_record(leg: OutboundLeg, arg: str, base: dict[str, str]) -> TEvent | None:
    """Play one ``record <path> <limit> [<thresh> <hits>]`` on ``leg``; the
    CHANNEL_EXECUTE_COMPLETE to send, or None when the leg hung up during the take (its
    completion was then sent by the hang-up itself, see ``completion_at_hangup``)."""
    fs = leg.fs
    parts = arg.split()
    path = parts[0] if parts else ""
    limit_s = float(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0.0
    thresh = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    hits = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 3  # source: default 3
    pcmu = is_pcmu(leg.call.variables)
    caller = fs.voicemail_callers.get(leg.call.number, CallerSpeech())
    rec = _pick(pcmu, caller)
    rate = 8000 if pcmu else 16000

    speech_end = caller.at_s + caller.length_s
    wait = silence_wait_s(rate, hits)
    stop_at = speech_end + wait + rec.tail_s if thresh else float("inf")
    by_silence = not limit_s or stop_at <= limit_s
    if not by_silence:
        stop_at = limit_s

    def written_ms(end_s: float) -> int:
        """record_ms of a take that ended ``end_s`` after the app started."""
        spoken = max(0.0, min(caller.length_s, end_s - caller.at_s))
        # Silent RTP is written until the silence ends the take (or, without a threshold,
        # the limit does); without RTP nothing after the speech is written.
        silent_until = min(wait, end_s - speech_end) if thresh else end_s - speech_end
        silent = max(0.0, silent_until) if caller.rtp_after else 0.0
        if spoken + silent <= 0:
            return 0  # no RTP came before the speech: nothing was written
        return max(0, round(rec.written_offset_ms + (spoken + silent) * 1000))

    values = _values(written_ms(stop_at), rate, by_silence)
    subs = [(re.compile(re.escape(rec.start.uid)), leg.uid)]
    done_subs = [
        (re.compile(re.escape(rec.done.uid)), leg.uid),
        (re.compile(r"(?<!\d)6706[89](?!\d)|(?<!\d)67070(?!\d)"), leg.call.number),
    ]
    loop = asyncio.get_running_loop()
    began = loop.time()
    #: When the caller's own hang-up (``hangup_at_s``) ended the take: its exact time.
    scheduled_end: list[float] = []

    def completion(vals: dict[str, str]) -> TEvent:
        over = {
            **base,
            "Application-Response": "_none_",
            "variable_current_application_data": arg,
            **vals,
        }
        return with_codec(rec.done.render(done_subs, over), leg.call.variables)

    def completion_at_hangup() -> None:
        """INFERRED, not recorded (no transcript has a hang-up during ``record``): every
        recorded application that a hang-up interrupted (playback in
        originate-answered-engine-hangup.esl, eavesdrop in eavesdrop-listen.esl, the socket
        app in the outbound sessions) sent its CHANNEL_EXECUTE_COMPLETE right after
        CHANNEL_HANGUP and before CHANNEL_HANGUP_COMPLETE; and switch_ivr_record_file
        (switch_ivr_play_say.c) leaves its loop when the channel goes, then sets
        record_ms / _samples / _file_size for what it wrote and fires RECORD_STOP. So: the
        take so far, ``silence_hits_exhausted: false``, right after the leg's hang-up."""
        end_s = scheduled_end[0] if scheduled_end else (loop.time() - began) / fs.time_scale
        vals = _values(written_ms(end_s), rate, by_silence=False)
        write_take(fs.voicemail_files, path, vals, rate)
        fs.emit(rec.stop.render(subs, {"Record-File-Path": path, **vals}))
        leg.send(completion(vals))

    async def until(at_s: float) -> bool:
        delay = began + at_s * fs.time_scale - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return not leg.hung_up

    leg.on_hangup = completion_at_hangup
    try:
        # Recorded: RECORD_START/STOP fire for the leg, but myevents does not subscribe to
        # them, so they reach only inbound connections (fs.emit), never the outbound socket.
        if not await until(rec.start_delay_s):
            return None
        fs.emit(rec.start.render(subs, {"Record-File-Path": path}))
        if caller.hangup_at_s is not None and caller.hangup_at_s < stop_at:
            if await until(caller.hangup_at_s):
                scheduled_end.append(caller.hangup_at_s)
                await leg.hangup()  # sends the completion (completion_at_hangup)
            return None
        if stop_at == float("inf"):
            # No silence detection and no limit (not recorded): the take runs until the
            # caller hangs up, whose hang-up sends the completion.
            await leg.hung_up_event.wait()
            return None
        if not await until(stop_at):
            return None
    finally:
        leg.on_hangup = None
    write_take(fs.voicemail_files, path, values, rate)
    fs.emit(rec.stop.render(subs, {"Record-File-Path": path, **values}))
    return completion(values)
