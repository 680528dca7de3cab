"""What the media tap of either switch gives the speech code: the caller's audio, frame by
frame, and (where the switch lets the engine speak on the same path) a way to play a prompt
that speech can cut short.

One engine-side path: the FreeSWITCH ``unicast`` tap (:mod:`engine.pbx.freeswitch.media_tap`)
and the Asterisk AudioSocket (:mod:`engine.pbx.asterisk.audiosocket`) both implement
:class:`AudioSource`; AMD and :func:`engine.speech.listen.listen` read only this.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt


class AudioSource(Protocol):
    @property
    def rate(self) -> int:
        """Samples per second of what ``read`` returns."""

    @property
    def closed(self) -> bool: ...

    async def read(self, timeout_s: float) -> npt.NDArray[np.int16] | None:
        """The next frame (mono int16), or None when the stream ended or nothing came in
        ``timeout_s``."""


class PromptPlayer(Protocol):
    """A prompt being played to the caller; ``stop`` is barge-in."""

    async def stop(self) -> None: ...


class ArraySource:
    """An :class:`AudioSource` over samples already in memory (offline tester, unit tests,
    tuning): 20 ms frames, as fast as they are read, then closed."""

    def __init__(self, samples: npt.NDArray[np.int16], rate: int) -> None:
        self._samples = samples
        self._rate = rate
        self._at = 0
        self._step = rate // 50

    @property
    def rate(self) -> int:
        return self._rate

    @property
    def closed(self) -> bool:
        return self._at >= len(self._samples)

    async def read(self, timeout_s: float) -> npt.NDArray[np.int16] | None:
        if self.closed:
            return None
        frame = self._samples[self._at : self._at + self._step]
        self._at += self._step
        return frame
