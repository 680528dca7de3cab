"""What the fake FreeSWITCH writes for ``uuid_record``: the file of the third batch's recordings.

Recorded (tests/fixtures/freeswitch-1.10/README.md, "Third batch", record-mask-unmask.esl and
record-stereo-pause-resume.esl, 1.10.12):

- the WAV is 16-bit PCM at the call's rate (16 kHz on these G722 calls), mono, or two channels
  with ``RECORD_STEREO=true`` (channel 1: what the leg read from its far end; channel 2: what
  it sent, silent on these calls);
- the file's rate is the leg's codec rate: 16 kHz on the G722 calls, 8 kHz on a PCMU leg
  (eavesdrop-whisper-agent.agent.wav, eavesdrop-barge.agent.wav: the agent's SIPp leg);
- on a PARKED leg its first 0.5 s are missing: the file starts 0.5 s after ``start`` (the
  mask sent 2.1 s after the start begins at 1.6 s in the file; record.esl and
  record-stereo-pause-resume.esl lose 0.52 s too). On a BRIDGED leg nothing is lost: in
  eavesdrop-whisper-agent/-barge/-dtmf-mode-switch.esl ``record_ms`` is the time from
  RECORD_START to RECORD_STOP within 60 ms, on both legs (eavesdrop-listen.esl and
  -whisper-agent-caller-silent.esl: the caller's leg too; their agent legs, with no RTP
  either way and no comfort noise, lost 0.44 s: not modelled);
- ``mask``..``unmask`` stays in the file as digital silence (0 exactly);
- ``pause``..``resume`` is left out of the file;
- the far end's audio is the 69XXX tone: the recorded file's own samples (0.1..1.5 s) are
  what the fake writes, repeated.

Not recorded: the recording of a leg that hangs up while recording. FreeSWITCH closes the media
bug on hangup (switch_ivr_async.c, record_callback SWITCH_ABC_TYPE_CLOSE), which fires
RECORD_STOP with the file complete, before CHANNEL_HANGUP_COMPLETE; the fake does that.
"""

from __future__ import annotations

import functools
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.fakes.esl_transcripts import TRANSCRIPTS

RATE = 16000
#: Recorded: the file starts this long after uuid_record start.
START_LOSS_S = 0.5


@functools.cache
def _tone() -> np.ndarray:
    with wave.open(str(TRANSCRIPTS / "record-mask-unmask.wav"), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    # 0.1..1.5 s: the unmasked tone (`sox trim 0.1 1.4`: 439 Hz, max 0.315). Cut at a whole
    # number of 440 Hz periods' worth of zero crossings so the repeats join smoothly.
    piece = pcm[int(0.1 * RATE) : int(1.5 * RATE)]
    up = np.nonzero((piece[:-1] < 0) & (piece[1:] >= 0))[0]
    return piece[up[0] + 1 : up[-1] + 1].copy()


@dataclass
class FakeRecording:
    path: str
    started: float
    stereo: bool
    #: (time, "mask"|"unmask"|"pause"|"resume"), in the loop's clock
    marks: list[tuple[float, str]] = field(default_factory=list)
    #: the far end sends audio (69XXX); others are silent
    tone: bool = True
    #: the leg's codec rate (Channel-Read-Codec-Rate): the file's rate
    rate: int = RATE
    #: seconds missing at the start: START_LOSS_S on a parked leg, 0 on a bridged one
    start_loss: float = START_LOSS_S

    def samples(self, stopped: float) -> np.ndarray:
        rate = self.rate
        n_total = max(0, round((stopped - self.started - self.start_loss) * rate))
        t0 = self.started + self.start_loss
        keep = np.ones(n_total, dtype=bool)
        silent = np.zeros(n_total, dtype=bool)
        for kind_on, kind_off, arr in (("mask", "unmask", silent), ("pause", "resume", keep)):
            since: float | None = None
            for when, kind in [*self.marks, (stopped, "end")]:
                if kind == kind_on and since is None:
                    since = when
                elif kind in (kind_off, "end") and since is not None:
                    a = max(0, round((since - t0) * rate))
                    b = max(0, round((when - t0) * rate))
                    if arr is keep:
                        arr[a:b] = False
                    else:
                        arr[a:b] = True
                    since = None
        if self.tone:
            # the recorded 16 kHz tone; at 8 kHz every other sample (440 Hz: no aliasing)
            tone = _tone() if rate == RATE else _tone()[:: RATE // rate]
            reps = n_total // len(tone) + 1
            audio = np.tile(tone, reps)[:n_total].astype("<i2")
        else:
            audio = np.zeros(n_total, dtype="<i2")
        audio[silent] = 0
        kept = audio[keep]
        # FreeSWITCH writes whole 20 ms frames: every recorded record_samples is a multiple
        # of rate / 50 (92480, 58880, 17280 at 16 kHz; 25600, 25760 at 8 kHz).
        return kept[: len(kept) - len(kept) % (rate // 50)]

    def write(self, stopped: float) -> dict[str, str]:
        """Write the file; the RECORD_STOP variables FreeSWITCH reports for it (recorded
        names; ``record_completion_cause`` was ``success-maxtime`` in both recordings)."""
        mono = self.samples(stopped)
        frames = np.stack([mono, np.zeros_like(mono)], axis=1) if self.stereo else mono
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2 if self.stereo else 1)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(frames.astype("<i2").tobytes())
        n = len(mono)
        return {
            "variable_record_ms": str(n * 1000 // self.rate),
            "variable_record_samples": str(n),
            "variable_record_seconds": str(n // self.rate),
            "variable_record_file_size": str(path.stat().st_size),
            "variable_record_completion_cause": "success-maxtime",
        }
