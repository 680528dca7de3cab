"""The IVR's live speech input: ``menu``/``gather`` steps with speech on a real call.

:class:`TapSpeechInput` implements :class:`engine.ivr.ports.SpeechInput`. One turn:

1. open the switch's media tap on the session's leg (:class:`AudioSocketTurns` on
   Asterisk, :class:`UnicastTurns` on FreeSWITCH);
2. start the prompt (on Asterisk over the same AudioSocket, so speech can stop it:
   barge-in);
3. :func:`engine.speech.listen.listen`: the endpointer on the loop, the ASR plugin in its
   worker process, restricted to the menu's keywords; DTMF races it when the step takes keys;
4. close the tap (the AGI session or the parked leg goes on) and map the result to
   :class:`~engine.ivr.ports.Heard`. A result below the plugin's rejection threshold, or
   speech that names no keyword, comes back as speech with no text and confidence 0, so
   the step's retry (invalid) branch runs whatever its own ``min_confidence``.

The plugin is the step's ``asr:`` (or the flow's), else the one configured for the step's
language, else ``default_plugin``. Sessions no tap handles fall back to keys only
(:class:`engine.ivr.ports.DtmfOnlySpeech`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engine.ivr.ports import DtmfOnlySpeech, Heard, ListenRequest
from engine.pbx.asterisk.audiosocket import AudioSocketServer, AudioSocketStream
from engine.pbx.base import CallSession, HangupDuringSession
from engine.pbx.freeswitch.media_tap import TapStream
from engine.pbx.freeswitch.outbound import FreeSwitchCallSession
from engine.speech.asr.base import SpeechResult, SpeechStatus
from engine.speech.listen import Pools, listen
from engine.speech.source import AudioSource, PromptPlayer
from engine.speech.wav import TELEPHONY_RATE, WavError, decode_wav, resample

log = logging.getLogger(__name__)

#: The longest utterance a turn waits for before cutting and recognising it.
MAX_UTTERANCE_S = 15.0


class SpeechUnavailable(Exception):
    """The media tap could not be opened on a live call (a switch setup problem, not the
    caller): the turn falls back to keys only, and the reason is logged."""


class Turn(Protocol):
    """One listening turn on an open tap."""

    @property
    def source(self) -> AudioSource: ...

    async def start_prompt(self, prompt: str) -> PromptPlayer | None:
        """Start ``prompt`` (may be ``""``); the player whose ``stop`` is barge-in, or None
        when the prompt was played to its end before listening (no barge-in possible)."""
        ...

    async def next_digit(self) -> str:
        """The caller's next DTMF key (waits)."""
        ...


class TurnOpener(Protocol):
    def handles(self, session: CallSession) -> bool: ...

    def open(self, session: CallSession) -> contextlib.AbstractAsyncContextManager[Turn]: ...


class PromptFiles:
    """A prompt name as the switch knows it (``<prefix>/<stem>``) back to the 8 kHz samples
    of the engine's own file (the TTS cache writes ``<directory>/<stem>.wav``), so the
    engine can play it over the tap. Other sound names give None."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix.rstrip("/")

    def __call__(self, prompt: str) -> npt.NDArray[np.int16] | None:
        head, _, stem = prompt.rpartition("/")
        if not stem or head != self.prefix or "/" in stem or stem.startswith("."):
            return None
        try:
            pcm = decode_wav((self.directory / f"{stem}.wav").read_bytes())
        except (OSError, WavError):
            return None
        if pcm.rate != TELEPHONY_RATE:
            pcm = resample(pcm, TELEPHONY_RATE)
        return pcm.samples


class _AudioSocketTurn:
    def __init__(
        self,
        session: CallSession,
        stream: AudioSocketStream,
        prompt_audio: Callable[[str], npt.NDArray[np.int16] | None],
    ) -> None:
        self._session = session
        self._stream = stream
        self._prompt_audio = prompt_audio

    @property
    def source(self) -> AudioSource:
        return self._stream

    async def start_prompt(self, prompt: str) -> PromptPlayer | None:
        if not prompt:
            return None
        samples = self._prompt_audio(prompt)
        # None: a stock sound, not one of the engine's files; TapSpeechInput had the
        # switch play it before opening the turn (AudioSocketTurns.plays_itself).
        return None if samples is None else self._stream.play(samples)

    async def next_digit(self) -> str:
        return await self._stream.next_dtmf()


class AudioSocketTurns:
    """Asterisk: ``EXEC AudioSocket(<uuid>,<engine>)`` on the AGI session for one turn.

    The application holds the channel while the engine reads the caller's frames and sends
    the prompt's; the engine ends it with an AudioSocket hangup message and the AGI session
    goes on with the next step (app_audiosocket returns 0)."""

    def __init__(
        self,
        server: AudioSocketServer,
        prompt_audio: Callable[[str], npt.NDArray[np.int16] | None],
        *,
        advertise_host: str = "",
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.server = server
        self.prompt_audio = prompt_audio
        self.advertise_host = advertise_host
        self.connect_timeout_s = connect_timeout_s

    def handles(self, session: CallSession) -> bool:
        return callable(getattr(session, "exec", None)) and hasattr(session, "environment")

    def plays_itself(self, prompt: str) -> bool:
        return not prompt or self.prompt_audio(prompt) is not None

    @contextlib.asynccontextmanager
    async def open(self, session: CallSession) -> AsyncIterator[Turn]:
        stream = self.server.expect()
        data = self.server.application_data(stream, self.advertise_host)
        app = asyncio.ensure_future(session.exec("AudioSocket", data))  # type: ignore[attr-defined]
        try:
            connected = asyncio.ensure_future(stream.wait_connected(self.connect_timeout_s))
            done, _ = await asyncio.wait({app, connected}, return_when=asyncio.FIRST_COMPLETED)
            if connected not in done:
                connected.cancel()
                reply = app.result()  # raises HangupDuringSession when the caller left
                if getattr(session, "hung_up", False):
                    raise HangupDuringSession("the caller hung up before the speech turn")
                # -2: app_audiosocket not loaded; -1 on a live channel: it could not
                # connect to the engine (address, firewall).
                raise SpeechUnavailable(
                    "AudioSocket ended before connecting to the engine "
                    f"(result {getattr(reply, 'result', '?')}; is app_audiosocket loaded and "
                    f"{data.partition(',')[2]} reachable from Asterisk?)"
                )
            try:
                connected.result()
            except TimeoutError:
                raise SpeechUnavailable(
                    f"Asterisk did not connect to the AudioSocket server within "
                    f"{self.connect_timeout_s} s ({data.partition(',')[2]})"
                ) from None
            yield _AudioSocketTurn(session, stream, self.prompt_audio)
        finally:
            await stream.hangup()
            self.server.forget(stream.call_uuid)
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    await app
            except TimeoutError:
                app.cancel()
                log.warning("AudioSocket application did not return after hangup")
            except HangupDuringSession:
                if not stream.closed_by_far_end:
                    raise


class _UnicastTurn:
    def __init__(self, session: CallSession, source: AudioSource) -> None:
        self._session = session
        self._source = source

    @property
    def source(self) -> AudioSource:
        return self._source

    async def start_prompt(self, prompt: str) -> PromptPlayer | None:
        return None  # played by TapSpeechInput through the session before the turn

    async def next_digit(self) -> str:
        # The tap carries audio only; keys come as DTMF events on the outbound socket
        # (myevents), queued by the session while no application runs.
        if isinstance(self._session, FreeSwitchCallSession):
            return await self._session.next_dtmf()
        await asyncio.Event().wait()  # no key source: speech decides the turn (cancelled)
        raise AssertionError("unreachable")


class TapOpener(Protocol):
    def open_tap_of(self, call_id: str) -> TapStream | None: ...

    async def open_audio_tap(self, call_id: str) -> TapStream: ...


class UnicastTurns:
    """FreeSWITCH: the driver's ESL ``unicast`` tap on the session's leg (the outbound
    socket in ``async full`` mode parks the leg between commands, and park is where
    FreeSWITCH feeds a unicast tap, as in unicast-*.esl). The prompt plays first through
    the session: the recordings show no tap audio while ``playback`` runs, so a speech turn
    on FreeSWITCH has no barge-in."""

    def __init__(self, drivers: Callable[[CallSession], TapOpener | None]) -> None:
        self._drivers = drivers

    def handles(self, session: CallSession) -> bool:
        return self._drivers(session) is not None

    def plays_itself(self, prompt: str) -> bool:
        return not prompt

    @contextlib.asynccontextmanager
    async def open(self, session: CallSession) -> AsyncIterator[Turn]:
        driver = self._drivers(session)
        if driver is None:
            raise RuntimeError(f"no FreeSWITCH driver for {session.call_id}")
        if isinstance(session, FreeSwitchCallSession):
            session.flush_dtmf()
        tap = driver.open_tap_of(session.call_id)
        if tap is not None:
            # The leg's tap from an earlier turn still runs (a unicast lasts while the leg
            # is parked; a second sendmsg would start a second stream). Skip what it
            # carried between the turns.
            tap.drain()
        else:
            tap = await driver.open_audio_tap(session.call_id)
        # Not closed after the turn: the driver frees the tap when the leg hangs up or
        # leaves park (as for AMD).
        yield _UnicastTurn(session, tap)


class _Opener(TurnOpener, Protocol):
    def plays_itself(self, prompt: str) -> bool: ...


class TapSpeechInput:
    """:class:`engine.ivr.ports.SpeechInput` over the media taps and the ASR plugins."""

    def __init__(
        self,
        pools: Pools,
        openers: Sequence[_Opener],
        *,
        default_plugin: str = "pocketsphinx",
        plugin_by_language: Mapping[str, str] | None = None,
    ) -> None:
        self.pools = pools
        self.openers = tuple(openers)
        self.default_plugin = default_plugin
        self.plugin_by_language = dict(plugin_by_language or {})
        self._keys_only = DtmfOnlySpeech()
        #: The most recent turn's full result, of whichever call (tests and debugging).
        self.last: SpeechResult | None = None

    def plugin_for(self, request: ListenRequest) -> str:
        if request.plugin:
            return request.plugin
        lang = request.language.lower()
        for key in (lang, lang.split("-")[0]):
            if key in self.plugin_by_language:
                return self.plugin_by_language[key]
        return self.default_plugin

    async def listen(self, session: CallSession, request: ListenRequest) -> Heard:
        opener = next((o for o in self.openers if o.handles(session)), None)
        if opener is None:
            return await self._keys_only.listen(session, request)
        if request.prompt and not opener.plays_itself(request.prompt):
            await session.play(request.prompt)
            prompt = ""
        else:
            prompt = request.prompt
        try:
            async with opener.open(session) as turn:
                return await self._turn(turn, prompt, request)
        except SpeechUnavailable as err:
            log.error("speech step on %s: %s; taking keys only", session.call_id, err)
            return await self._keys_only.listen(session, replace(request, prompt=prompt))

    async def _turn(self, turn: Turn, prompt: str, request: ListenRequest) -> Heard:
        player = await turn.start_prompt(prompt)
        heard_speech = asyncio.ensure_future(
            listen(
                turn.source,
                pools=self.pools,
                plugin=self.plugin_for(request),
                keywords=list(request.keywords) or None,
                no_input_s=request.speech_timeout_s,
                max_s=MAX_UTTERANCE_S,
                barge_in=player,
            )
        )
        if not request.dtmf:
            result = await heard_speech
        else:
            keys = asyncio.ensure_future(self._digits(turn, request))
            done, _ = await asyncio.wait({heard_speech, keys}, return_when=asyncio.FIRST_COMPLETED)
            if keys in done and keys.result():
                heard_speech.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heard_speech
                if player is not None:
                    await player.stop()
                return Heard("dtmf", digits=keys.result())
            keys.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keys
            result = await heard_speech
        self.last = result
        return to_heard(result)

    async def _digits(self, turn: Turn, request: ListenRequest) -> str:
        got = ""
        while len(got) < request.max_digits:
            try:
                async with asyncio.timeout(request.timeout_s if got else None):
                    key = await turn.next_digit()
            except TimeoutError:
                break
            if key in request.terminators:
                break
            got += key
        return got


def to_heard(result: SpeechResult) -> Heard:
    """The plugin's result as the flow sees it. Only ``ok`` carries its confidence: a
    rejected result (below the plugin's threshold, or no keyword) is speech with
    confidence 0 and no text (what was heard stays in the alternatives), so menus and
    gathers take their invalid (retry) branch whatever their own ``min_confidence``."""
    alts = tuple((a.text, a.confidence) for a in result.alternatives)
    if result.status is SpeechStatus.HANGUP:
        raise HangupDuringSession("the caller hung up while speaking to a speech step")
    if result.status is SpeechStatus.NO_INPUT:
        return Heard("timeout")
    if result.status is SpeechStatus.OK:
        text = result.keyword or result.text
        return Heard(
            "speech",
            text=text,
            confidence=result.confidence,
            alternatives=alts,
            barged_in=result.barged_in,
        )
    if result.status is SpeechStatus.ERROR:
        log.error("speech step: ASR failed: %s", result.detail)
    if result.text and not any(t == result.text for t, _ in alts):
        alts = ((result.text, result.confidence), *alts)
    return Heard("speech", text="", confidence=0.0, alternatives=alts, barged_in=result.barged_in)
