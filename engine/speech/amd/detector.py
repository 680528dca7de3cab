"""app_amd's decision rules, on frames of 16-bit audio.

This is the algorithm of Asterisk 22's ``apps/app_amd.c`` (``isAnsweringMachine``) so that a
call decides the same on either switch: each 20 ms frame is silence when its mean absolute
sample is below ``silence_threshold`` (``ast_dsp_silence``); runs of voice and silence drive
the state machine below, in app_amd's order of checks, and the causes are spelled as
app_amd spells them (``MAXWORDS-3-2``, ``LONGGREETING-1500-1500``, ``HUMAN-800-800``,
``INITIALSILENCE-2500-2500``, ``MAXWORDLENGTH-5000``, ``TOOLONG-5000``,
``NOAUDIODATA-0``). Frame lengths are in whole milliseconds, as app_amd counts them.

Pure and synchronous: the caller feeds audio as it arrives and asks :meth:`expire` when its
own clock says ``total_analysis_time`` has passed (app_amd's wall-clock limit, for audio
that stalls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.speech.amd.params import AmdParams

Status = Literal["HUMAN", "MACHINE", "NOTSURE", "HANGUP"]

#: app_amd reads 20 ms frames from the channel; the tap delivers the same.
FRAME_MS = 20


@dataclass(frozen=True, slots=True)
class AmdVerdict:
    status: Status
    cause: str
    #: Milliseconds of audio analysed when the decision was taken.
    audio_ms: int


def frame_is_silent(samples: npt.NDArray[np.int16], threshold: int) -> bool:
    """``ast_dsp_silence``: the mean absolute sample below the threshold."""
    if len(samples) == 0:
        return True
    return int(np.abs(samples.astype(np.int32)).sum()) // len(samples) < threshold


class AmdDetector:
    """One call's analysis. Feed audio with :meth:`feed` until it returns a verdict."""

    def __init__(self, params: AmdParams | None = None, *, resumed: bool = False) -> None:
        """``resumed``: the analysis restarts on a call answered earlier whose first audio
        was not heard (the engine restarted mid-analysis). The greeting may be over, so
        the initial-silence rule would take a person who already said hello and now waits
        for a machine: the analysis starts as if in the greeting (silence reaching
        ``after_greeting_silence`` -> HUMAN; words and voice time -> MACHINE, as usual)."""
        self.params = params or AmdParams()
        self.resumed = resumed
        self.verdict: AmdVerdict | None = None
        self._pending = np.zeros(0, dtype=np.int16)
        self._rate = 0
        self._frames = 0
        self._total_ms = 0
        self._dsp_silence = 0  # the DSP's running silence, reset by a voiced frame
        self._silence_ms = 0
        self._voice_ms = 0
        self._consecutive_voice_ms = 0
        self._words = 0
        # app_amd starts in STATE_IN_WORD: speech at the very start counts as a word only
        # after a first between-words silence.
        self._in_word = True
        self._in_initial_silence = not resumed
        self._in_greeting = resumed

    @property
    def audio_ms(self) -> int:
        return self._total_ms

    def feed(self, samples: npt.NDArray[np.int16], rate: int) -> AmdVerdict | None:
        """Analyse ``samples`` (mono, ``rate`` Hz); the verdict once there is one (later
        audio is ignored)."""
        if self.verdict is not None:
            return self.verdict
        if rate <= 0 or rate % 1000:
            raise ValueError(f"AMD audio rate {rate}: expected a whole number of kHz")
        if rate != self._rate:
            self._pending = np.zeros(0, dtype=np.int16)
            self._rate = rate
        buf = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        size = rate * FRAME_MS // 1000
        whole = len(buf) - len(buf) % size
        for start in range(0, whole, size):
            verdict = self._frame(buf[start : start + size], rate)
            if verdict is not None:
                self.verdict = verdict
                self._pending = np.zeros(0, dtype=np.int16)
                return verdict
        self._pending = buf[whole:]
        return None

    def expire(self) -> AmdVerdict:
        """The caller's clock passed ``total_analysis_time``: NOTSURE, as app_amd's
        real-time check says it (NOAUDIODATA when no frame ever came)."""
        if self.verdict is None:
            reason = "TOOLONG" if self._frames else "NOAUDIODATA"
            self.verdict = AmdVerdict("NOTSURE", f"{reason}-{self._total_ms}", self._total_ms)
        return self.verdict

    def hangup(self) -> AmdVerdict:
        """The call ended during the analysis: HANGUP with no cause, like app_amd."""
        if self.verdict is None:
            self.verdict = AmdVerdict("HANGUP", "", self._total_ms)
        return self.verdict

    def _frame(self, frame: npt.NDArray[np.int16], rate: int) -> AmdVerdict | None:
        p = self.params
        length = len(frame) * 1000 // rate
        self._frames += 1
        self._total_ms += length
        if self._total_ms >= p.total_analysis_time:
            return self._done("NOTSURE", f"TOOLONG-{self._total_ms}")
        if frame_is_silent(frame, p.silence_threshold):
            self._dsp_silence += length
            self._silence_ms = self._dsp_silence
            if self._silence_ms >= p.between_words_silence:
                self._in_word = False
                self._consecutive_voice_ms = 0
            if self._in_initial_silence and self._silence_ms >= p.initial_silence:
                return self._done(
                    "MACHINE", f"INITIALSILENCE-{self._silence_ms}-{p.initial_silence}"
                )
            if self._in_greeting and self._silence_ms >= p.after_greeting_silence:
                return self._done("HUMAN", f"HUMAN-{self._silence_ms}-{p.after_greeting_silence}")
            return None
        self._dsp_silence = 0
        self._consecutive_voice_ms += length
        self._voice_ms += length
        if self._consecutive_voice_ms >= p.min_word_length and not self._in_word:
            self._words += 1
            self._in_word = True
        if self._consecutive_voice_ms >= p.maximum_word_length:
            return self._done("MACHINE", f"MAXWORDLENGTH-{self._consecutive_voice_ms}")
        if self._words > p.maximum_number_of_words:
            return self._done("MACHINE", f"MAXWORDS-{self._words}-{p.maximum_number_of_words}")
        if self._in_greeting and self._voice_ms >= p.greeting:
            return self._done("MACHINE", f"LONGGREETING-{self._voice_ms}-{p.greeting}")
        if self._voice_ms >= p.min_word_length:
            self._silence_ms = 0
        if self._consecutive_voice_ms >= p.min_word_length and not self._in_greeting:
            self._in_initial_silence = False
            self._in_greeting = True
        return None

    def _done(self, status: Status, cause: str) -> AmdVerdict:
        return AmdVerdict(status, cause, self._total_ms)
