"""Voice activity detection and endpointing: 20 ms frames in, one decision out (sans-IO).

Energy, not a model: a telephone leg's noise floor is steady enough that a frame's RMS
against an adaptive floor separates speech from silence, it costs microseconds per frame on
the event loop, and it needs no package. The recogniser never decides when the caller has
finished; this does, so every plugin ends utterances the same way and the latency is the
same knob (``end_silence_ms``) everywhere.

Rules (times are counted in audio, never on a clock, so the same audio always gives the same
decision, live or in a test):

- a frame is *voiced* when its RMS exceeds ``max(min_rms, floor * ratio)``; the floor follows
  unvoiced frames (slow rise, fast fall), so a line hiss does not count as speech;
- speech *starts* after ``start_ms`` of voiced frames in a row (a click is not a caller);
- speech *ends* after ``end_silence_ms`` of unvoiced frames in a row after a start;
- ``no_input_ms`` of audio with no start ends with NO_INPUT; ``max_speech_ms`` of speech
  ends with MAX_SPEECH (the caller never paused).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class VadEvent(enum.StrEnum):
    NONE = "none"
    SPEECH_START = "speech-start"
    SPEECH_END = "speech-end"
    NO_INPUT = "no-input"
    MAX_SPEECH = "max-speech"


@dataclass(frozen=True, slots=True)
class VadParams:
    """Chosen on the tuning half of the ASR corpus (docs/speech.md); the held-out half only
    reports."""

    min_rms: float = 300.0
    ratio: float = 3.0
    start_ms: int = 60
    end_silence_ms: int = 300
    no_input_ms: int = 5000
    max_speech_ms: int = 15000

    def __post_init__(self) -> None:
        for name in ("start_ms", "end_silence_ms", "no_input_ms", "max_speech_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VadParams.{name}: expected a positive number of ms")
        if self.min_rms <= 0 or self.ratio < 1:
            raise ValueError("VadParams: min_rms must be > 0 and ratio >= 1")


class Endpointer:
    """Feed frames in order; the first terminal event (END, NO_INPUT, MAX_SPEECH) is final."""

    def __init__(self, params: VadParams, rate: int) -> None:
        if rate <= 0:
            raise ValueError(f"Endpointer: sample rate must be positive, got {rate}")
        self.params = params
        self.rate = rate
        self.floor = params.min_rms / params.ratio
        self.in_speech = False
        self.done: VadEvent | None = None
        #: Audio seen so far, and where speech started / last voiced frame ended (in samples).
        self.samples = 0
        self.speech_start: int | None = None
        self.last_voiced_end: int | None = None
        self._voiced_run = 0
        self._silent_run = 0

    def _ms(self, samples: int) -> float:
        return samples * 1000.0 / self.rate

    def feed(self, frame: npt.NDArray[np.int16]) -> VadEvent:
        if self.done is not None or len(frame) == 0:
            return VadEvent.NONE
        n = len(frame)
        rms = float(np.sqrt(np.mean(np.square(frame.astype(np.float64)))))
        voiced = rms > max(self.params.min_rms, self.floor * self.params.ratio)
        if not voiced:
            # Track the floor on unvoiced frames only: falls fast, rises slowly.
            self.floor = rms if rms < self.floor else 0.95 * self.floor + 0.05 * rms
        start_of_frame = self.samples
        self.samples += n
        if voiced:
            self._voiced_run += n
            self._silent_run = 0
            self.last_voiced_end = self.samples
        else:
            self._silent_run += n
            self._voiced_run = 0
        if not self.in_speech:
            if voiced and self._ms(self._voiced_run) >= self.params.start_ms:
                self.in_speech = True
                self.speech_start = start_of_frame + n - self._voiced_run
                return VadEvent.SPEECH_START
            if self._ms(self.samples) >= self.params.no_input_ms:
                return self._end(VadEvent.NO_INPUT)
            return VadEvent.NONE
        if self._ms(self._silent_run) >= self.params.end_silence_ms:
            return self._end(VadEvent.SPEECH_END)
        assert self.speech_start is not None
        if self._ms(self.samples - self.speech_start) >= self.params.max_speech_ms:
            return self._end(VadEvent.MAX_SPEECH)
        return VadEvent.NONE

    def _end(self, event: VadEvent) -> VadEvent:
        self.done = event
        return event
