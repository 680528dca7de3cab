"""listen() over in-memory audio: barge-in, a prompt that cannot be stopped, hangup, and the
vosk plugin's Korean model on a spoken keyword (both plugins in their worker processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from engine.speech.asr.base import SpeechStatus
from engine.speech.listen import Pools, listen
from engine.speech.source import ArraySource
from engine.speech.wav import decode_wav
from tests.speech_audio import HAVE_TOOLS, spoken_wav

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")

MENU = ["billing", "operator", "cancel", "repair", "payment"]


class Prompt:
    def __init__(self, fail: bool = False) -> None:
        self.stopped = 0
        self.fail = fail

    async def stop(self) -> None:
        self.stopped += 1
        if self.fail:
            raise RuntimeError("prompt already over")


@pytest.fixture(scope="module")
async def pools() -> AsyncIterator[Pools]:
    p = Pools(size=1)
    yield p
    await p.stop()


def _source(text: str, voice: str = "en-us") -> ArraySource:
    pcm = decode_wav(spoken_wav(text, voice))
    return ArraySource(pcm.samples, pcm.rate)


async def test_speech_stops_the_prompt_once_and_is_recognised(pools: Pools) -> None:
    prompt = Prompt()
    r = await listen(
        _source("operator please"),
        pools=pools,
        plugin="pocketsphinx",
        keywords=MENU,
        barge_in=prompt,
    )
    assert prompt.stopped == 1
    assert r.barged_in
    assert (r.status, r.keyword) == (SpeechStatus.OK, "operator"), r


async def test_a_prompt_that_cannot_stop_does_not_cost_the_answer(pools: Pools) -> None:
    r = await listen(
        _source("give me billing"),
        pools=pools,
        plugin="pocketsphinx",
        keywords=MENU,
        barge_in=Prompt(fail=True),
    )
    assert r.keyword == "billing", r


async def test_the_stream_ending_before_speech_is_hangup(pools: Pools) -> None:
    silence = np.zeros(8000, dtype=np.int16)
    r = await listen(ArraySource(silence, 8000), pools=pools, plugin="pocketsphinx", no_input_s=5)
    assert r.status is SpeechStatus.HANGUP


async def test_vosk_korean_keyword(pools: Pools) -> None:
    r = await listen(
        _source("환불", "ko"), pools=pools, plugin="vosk", keywords=["영업", "환불", "보험"]
    )
    assert r.keyword == "환불", r
    assert r.plugin == "vosk"


async def test_bad_arguments_are_refused(pools: Pools) -> None:
    with pytest.raises(ValueError, match="keywords"):
        await listen(_source("operator"), pools=pools, plugin="pocketsphinx", keywords=[" "])
    with pytest.raises(ValueError, match="no_input_s"):
        await listen(_source("operator"), pools=pools, plugin="pocketsphinx", no_input_s=0)


async def test_vosk_decodes_the_same_audio_the_same_way(pools: Pools) -> None:
    # Kaldi's dither drew from the worker's rand() state, so what the worker decoded before
    # changed the lattice scores (and near-ties) of the next utterance (round 5).
    kws = ["영업", "환불", "보험", "문의", "해지"]
    first = await listen(_source("보험 주세요", "ko+m4"), pools=pools, plugin="vosk", keywords=kws)
    await listen(_source("네 문의", "ko+f1"), pools=pools, plugin="vosk", keywords=kws)
    again = await listen(_source("보험 주세요", "ko+m4"), pools=pools, plugin="vosk", keywords=kws)
    assert first.alternatives, first
    assert (again.text, again.confidence, again.alternatives) == (
        first.text,
        first.confidence,
        first.alternatives,
    )
