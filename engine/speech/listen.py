"""The one entry point the IVR's speech input calls: listen to the caller, return what they
said (docs/speech.md, "Speech input").

    result = await listen(source, plugin="pocketsphinx", keywords=["sales", "support"],
                          no_input_s=5, max_s=10, barge_in=prompt)

The event loop does only cheap work: it reads 20 ms frames from the tap, runs the energy
endpointer on them (:mod:`.vad`) and writes them to an ASR worker process (:mod:`.asr.pool`)
as they come, so decoding runs in parallel with the caller speaking. Frames from a little
before the detected start are kept (``PREROLL_MS``) so the first phoneme is not cut.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.speech.asr.base import Alternative, SpeechResult, SpeechStatus, match_keyword
from engine.speech.asr.pool import AsrUnavailable, RecognizerPool
from engine.speech.source import AudioSource, PromptPlayer
from engine.speech.vad import Endpointer, VadEvent, VadParams

log = logging.getLogger(__name__)

PREROLL_MS = 200
#: Below this a result is LOW_CONFIDENCE (the flow's retry branch); per plugin, because their
#: scales differ. Chosen on the tuning half of the corpus (docs/speech.md).
DEFAULT_MIN_CONFIDENCE: Mapping[str, float] = {"pocketsphinx": 0.5, "vosk": 0.5}


@dataclass
class Pools:
    """One warm pool per plugin, made on first use (the composition root owns it)."""

    size: int = 2
    model_dirs: Mapping[str, str] = field(default_factory=dict)
    _pools: dict[str, RecognizerPool] = field(default_factory=dict)

    def get(self, plugin: str) -> RecognizerPool:
        from engine.speech.asr import PLUGINS

        if plugin not in PLUGINS:
            raise ValueError(f"ASR plugin {plugin!r} is unknown; expected one of {PLUGINS}")
        pool = self._pools.get(plugin)
        if pool is None:
            pool = RecognizerPool(plugin, size=self.size, model_dir=self.model_dirs.get(plugin))
            self._pools[plugin] = pool
        return pool

    async def stop(self) -> None:
        for pool in self._pools.values():
            await pool.stop()


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


async def listen(
    source: AudioSource,
    *,
    pools: Pools,
    plugin: str,
    keywords: Sequence[str] | None = None,
    no_input_s: float = 5.0,
    max_s: float = 15.0,
    barge_in: PromptPlayer | None = None,
    min_confidence: float | None = None,
    vad: VadParams | None = None,
) -> SpeechResult:
    """Listen for one utterance on ``source`` and recognise it with ``plugin``.

    ``keywords``: a menu; the recogniser is restricted to them and the result's ``keyword``
    names the one said (``NO_MATCH`` when none). ``barge_in``: the prompt playing now; it is
    stopped as soon as speech starts. Never raises for what the caller did; a plugin that
    cannot run gives ``ERROR`` with the reason in ``detail``.
    """
    if no_input_s <= 0 or max_s <= 0:
        raise ValueError("listen: no_input_s and max_s must be positive")
    kws = [_norm(k) for k in keywords] if keywords else None
    if kws is not None and any(not k for k in kws):
        raise ValueError("listen: keywords must not be empty strings")
    params = vad or VadParams()
    params = VadParams(
        min_rms=params.min_rms,
        ratio=params.ratio,
        start_ms=params.start_ms,
        end_silence_ms=params.end_silence_ms,
        no_input_ms=int(no_input_s * 1000),
        max_speech_ms=int(max_s * 1000),
    )
    threshold = (
        min_confidence if min_confidence is not None else DEFAULT_MIN_CONFIDENCE.get(plugin, 0.3)
    )
    ep = Endpointer(params, source.rate)
    preroll: deque[bytes] = deque(maxlen=max(1, PREROLL_MS // 20))
    barged = False
    try:
        pool = pools.get(plugin)
    except ValueError as err:
        return SpeechResult(SpeechStatus.ERROR, plugin=plugin, detail=str(err))
    try:
        async with pool.utterance(source.rate, kws) as utt:
            last_voiced_at: float | None = None
            event = VadEvent.NONE
            # Frames can stall (no RTP); the endpointer counts audio, so also bound wall time.
            deadline = time.monotonic() + no_input_s + max_s + 2.0
            while True:
                frame = await source.read(max(0.0, deadline - time.monotonic()))
                now = time.monotonic()
                if frame is None:
                    if source.closed:
                        return SpeechResult(SpeechStatus.HANGUP, plugin=plugin, barged_in=barged)
                    event = VadEvent.NO_INPUT if not ep.in_speech else VadEvent.MAX_SPEECH
                    break
                pcm = frame.astype("<i2").tobytes()
                event = ep.feed(frame)
                if ep.last_voiced_end == ep.samples:
                    last_voiced_at = now
                if event is VadEvent.SPEECH_START:
                    if barge_in is not None and not barged:
                        barged = True
                        try:
                            await barge_in.stop()
                        except Exception as err:
                            # A prompt that cannot be stopped (already ended, switch
                            # refused) must not cost the caller's answer.
                            log.warning("barge-in: could not stop the prompt: %s", err)
                    for old in preroll:
                        utt.accept(old)
                    preroll.clear()
                if ep.in_speech:
                    utt.accept(pcm)
                else:
                    preroll.append(pcm)
                if event in (VadEvent.SPEECH_END, VadEvent.NO_INPUT, VadEvent.MAX_SPEECH):
                    break
            if event is VadEvent.NO_INPUT:
                return SpeechResult(SpeechStatus.NO_INPUT, plugin=plugin, barged_in=barged)
            hyp = await utt.finish()
            done = time.monotonic()
    except AsrUnavailable as err:
        return SpeechResult(SpeechStatus.ERROR, plugin=plugin, detail=str(err), barged_in=barged)
    speech_s = (
        0.0
        if ep.speech_start is None or ep.last_voiced_end is None
        else (ep.last_voiced_end - ep.speech_start) / source.rate
    )
    return map_result(
        plugin,
        hyp.text,
        hyp.confidence,
        hyp.alternatives,
        kws,
        threshold,
        latency_s=None if last_voiced_at is None else done - last_voiced_at,
        speech_s=speech_s,
        barged_in=barged,
    )


def map_result(
    plugin: str,
    text: str,
    confidence: float,
    alternatives: Sequence[Alternative],
    keywords: Sequence[str] | None,
    min_confidence: float,
    *,
    latency_s: float | None = None,
    speech_s: float = 0.0,
    barged_in: bool = False,
) -> SpeechResult:
    """A recogniser's hypothesis to the flow's result (pure).

    With keywords, the confidence is that of the keyword: the summed confidence of the
    alternatives that name it, so two alternatives that agree on "sales" but differ in
    the filler words do not halve each other.
    """
    text = _norm(text)
    alts = tuple(Alternative(_norm(a.text), a.confidence) for a in alternatives)
    common = {"plugin": plugin, "latency_s": latency_s, "speech_s": speech_s}
    if not text:
        return SpeechResult(SpeechStatus.NO_MATCH, alternatives=alts, barged_in=barged_in, **common)  # type: ignore[arg-type]
    keyword = None
    conf = confidence
    if keywords:
        keyword = match_keyword(text, keywords)
        if keyword is None:
            return SpeechResult(
                SpeechStatus.NO_MATCH,
                text=text,
                confidence=confidence,
                alternatives=alts,
                barged_in=barged_in,
                **common,  # type: ignore[arg-type]
            )
        agreeing = sum(a.confidence for a in alts if match_keyword(a.text, keywords) == keyword)
        conf = max(confidence, min(1.0, agreeing))
    status = SpeechStatus.OK if conf >= min_confidence else SpeechStatus.LOW_CONFIDENCE
    return SpeechResult(
        status,
        text=text,
        confidence=round(conf, 4),
        alternatives=alts,
        keyword=keyword,
        barged_in=barged_in,
        **common,  # type: ignore[arg-type]
    )
