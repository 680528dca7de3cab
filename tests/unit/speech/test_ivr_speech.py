"""The IVR's live speech input on Asterisk's path, with no Asterisk: a session whose
``EXEC AudioSocket`` behaves like app_audiosocket (connects to the engine's AudioSocket
server, sends the call's UUID, streams the caller's 20 ms slin frames, plays back what the
engine sends, returns when the engine sends the hangup message). The flow's menu goes
tap -> VAD -> pocketsphinx worker -> branch; speech stops the prompt (barge-in)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engine.ivr.decide import menu_choice
from engine.ivr.ports import Heard, ListenRequest
from engine.ivr.runtime import IvrRuntime
from engine.ivr.speech_input import AudioSocketTurns, PromptFiles, TapSpeechInput, to_heard
from engine.ivr.tester import TextSpeaker
from engine.pbx.asterisk.audiosocket import (
    KIND_DTMF,
    KIND_HANGUP,
    KIND_SLIN,
    KIND_UUID,
    AudioSocketServer,
    Decoder,
    encode,
)
from engine.pbx.base import HangupDuringSession
from engine.speech.asr.base import Alternative, SpeechResult, SpeechStatus
from engine.speech.listen import Pools
from engine.speech.wav import Pcm, decode_wav, encode_wav
from tests.speech_audio import HAVE_TOOLS, spoken_wav

FLOW = """\
name: speech-menu
steps:
  - answer
  - id: menu
    menu:
      say: "Say billing or operator."
      options:
        - {dtmf: "1", speech: [billing], goto: billing}
        - {dtmf: "2", speech: [operator], goto: operator}
      retries: 1
      timeout_s: 3
      into: choice
      on_invalid: bad
      on_timeout: bad
  - id: billing
    say: "Billing."
  - hangup
  - id: operator
    say: "Operator."
  - hangup
  - id: bad
    say: "Goodbye."
  - hangup
"""
# The menu's prompt: long, so that barge-in on a loaded machine still comes before its end.
PROMPT_S = 20.0


class AudioSocketCaller:
    """An AGI session whose ``EXEC AudioSocket`` is a far end as app_audiosocket."""

    environment = SimpleNamespace(channel="PJSIP/test-1")

    def __init__(self, audio: np.ndarray | None, dtmf: str = "") -> None:
        self._audio = audio
        self._dtmf = dtmf
        self.prompt_frames = 0
        self.played: list[str] = []
        self.apps: list[str] = []
        self.channel_vars: dict[str, str] = {}

    @property
    def call_id(self) -> str:
        return "1700000000.1"

    @property
    def variables(self) -> Mapping[str, str]:
        return {}

    async def answer(self) -> None:
        pass

    async def play(self, prompt: str) -> None:
        self.played.append(prompt)

    async def get_digits(self, prompt: str, n: int, t: float, term: str = "#") -> str:
        raise AssertionError("a speech step must not fall back to keys only")

    async def hangup(self) -> None:
        pass

    async def set_var(self, name: str, value: str) -> None:
        self.channel_vars[name] = value

    async def get_var(self, name: str) -> str | None:
        return self.channel_vars.get(name)

    async def exec(self, app: str, data: str = "") -> Any:
        self.apps.append(app)
        assert app == "AudioSocket"
        call, _, address = data.partition(",")
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(encode(KIND_UUID, uuid.UUID(call).bytes))
        ended = asyncio.Event()
        dec = Decoder()

        async def hear() -> None:
            while data := await reader.read(4096):
                for m in dec.feed(data):
                    if m.kind == KIND_SLIN:
                        self.prompt_frames += 1
                    elif m.kind == KIND_HANGUP:
                        ended.set()
                        return

        listener = asyncio.ensure_future(hear())
        if self._dtmf:
            for key in self._dtmf:
                writer.write(encode(KIND_DTMF, key.encode()))
        audio = self._audio if self._audio is not None else np.zeros(8000 * 6, np.int16)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k, at in enumerate(range(0, len(audio), 160)):
            if ended.is_set():
                break
            delay = start + k * 0.005 - loop.time()  # 4x real time
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(encode(KIND_SLIN, audio[at : at + 160].astype("<i2").tobytes()))
        await asyncio.wait_for(ended.wait(), 10)
        await listener
        writer.close()
        return SimpleNamespace(code=200, result="0")


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return np.asarray(3000 * np.sin(2 * np.pi * 440 * t), dtype=np.int16)


@pytest.fixture
async def speech() -> AsyncIterator[tuple[TapSpeechInput, AudioSocketServer]]:
    pools = Pools(size=1)
    async with AudioSocketServer() as server:
        turns = AudioSocketTurns(server, lambda prompt: tone(PROMPT_S))
        try:
            yield TapSpeechInput(pools, [turns]), server
        finally:
            await pools.stop()


def runtime(tmp_path: Path, speech: TapSpeechInput) -> IvrRuntime:
    (tmp_path / "speech-menu.yaml").write_text(FLOW)
    rt = IvrRuntime(tmp_path, tts=TextSpeaker(), speech=speech)
    assert rt.load() == []
    return rt


def steps(path: list[str]) -> list[str]:
    return [p.split(":", 1)[1] for p in path]


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")
async def test_a_spoken_keyword_takes_its_branch_and_stops_the_prompt(
    tmp_path: Path, speech: tuple[TapSpeechInput, AudioSocketServer]
) -> None:
    listener, _ = speech
    caller = AudioSocketCaller(decode_wav(spoken_wav("i want operator", lead_ms=900)).samples)
    result = await runtime(tmp_path, listener).run(caller, "speech-menu")  # type: ignore[arg-type]
    assert steps(result.path) == ["answer@0", "menu", "operator", "hangup@5"], result
    assert result.variables["choice"] == "2"  # an option's value is its key
    assert result.variables["speech.text"] == "operator"
    last = listener.last
    assert last is not None and last.status is SpeechStatus.OK and last.barged_in
    assert last.plugin == "pocketsphinx" and last.keyword == "operator"
    # Barge-in: the prompt (20 s = 1000 frames) was cut once the caller spoke (~0.9 s in),
    # before its end. How many frames went out first depends on how fast the recognizer's
    # voice detection runs on a loaded machine (all of a 4 s prompt went out at load 10),
    # so only the cut itself is asserted, not how early it came.
    assert 0 < caller.prompt_frames < PROMPT_S * 50
    # The menu prompt went over the socket; only the branch's own say was played by AGI.
    assert caller.apps == ["AudioSocket"] and caller.played == ["say[en]: Operator."]


async def test_a_key_on_the_socket_wins_the_race_with_speech(
    tmp_path: Path, speech: tuple[TapSpeechInput, AudioSocketServer]
) -> None:
    listener, server = speech
    caller = AudioSocketCaller(None, dtmf="1")
    result = await runtime(tmp_path, listener).run(caller, "speech-menu")  # type: ignore[arg-type]
    assert steps(result.path) == ["answer@0", "menu", "billing", "hangup@3"], result
    assert result.variables["choice"] == "1"
    assert server.rejected == 0


async def test_silence_times_out_then_the_timeout_branch(
    tmp_path: Path, speech: tuple[TapSpeechInput, AudioSocketServer]
) -> None:
    listener, _ = speech
    caller = AudioSocketCaller(np.zeros(8000 * 8, np.int16))
    result = await runtime(tmp_path, listener).run(caller, "speech-menu")  # type: ignore[arg-type]
    assert steps(result.path) == ["answer@0", "menu", "bad", "hangup@7"], result
    assert caller.apps == ["AudioSocket", "AudioSocket"]  # one turn per try (retries: 1)


async def test_no_audiosocket_on_the_switch_falls_back_to_keys(
    tmp_path: Path, speech: tuple[TapSpeechInput, AudioSocketServer]
) -> None:
    """app_audiosocket not loaded: EXEC returns -2 at once. A setup problem, not the
    caller's: the turn takes keys instead (logged), and the flow goes on."""
    listener, _ = speech

    class NoAudioSocket(AudioSocketCaller):
        hung_up = False

        async def exec(self, app: str, data: str = "") -> Any:
            self.apps.append(app)
            return SimpleNamespace(code=200, result="-2")

        async def get_digits(self, prompt: str, n: int, t: float, term: str = "#") -> str:
            self.played.append(f"get_digits {prompt}")
            return "1"

    caller = NoAudioSocket(None)
    result = await runtime(tmp_path, listener).run(caller, "speech-menu")  # type: ignore[arg-type]
    assert steps(result.path) == ["answer@0", "menu", "billing", "hangup@3"], result
    assert caller.apps == ["AudioSocket"]
    assert caller.played[0] == "get_digits say[en]: Say billing or operator."


@pytest.mark.parametrize(
    ("status", "confidence", "kind", "outcome"),
    [
        (SpeechStatus.OK, 0.9, "speech", "ok"),
        (SpeechStatus.LOW_CONFIDENCE, 0.3, "speech", "invalid"),
        (SpeechStatus.NO_MATCH, 0.8, "speech", "invalid"),
        (SpeechStatus.ERROR, 0.0, "speech", "invalid"),
        (SpeechStatus.NO_INPUT, 0.0, "timeout", "timeout"),
    ],
)
def test_results_map_to_the_branch(
    status: SpeechStatus, confidence: float, kind: str, outcome: str
) -> None:
    from engine.ivr.loader import parse_flow
    from engine.ivr.model import Menu

    flow = parse_flow(FLOW, "ivr/speech-menu.yaml")
    menu = flow.steps[1]
    assert isinstance(menu, Menu)
    result = SpeechResult(
        status,
        text="i want operator" if status is not SpeechStatus.NO_INPUT else "",
        confidence=confidence,
        alternatives=(Alternative("i want operator", confidence),),
        keyword="operator" if status is SpeechStatus.OK else None,
    )
    heard = to_heard(result)
    assert heard.kind == kind
    # min_confidence 0: a rejected result is still not a choice (the retry branch).
    choice, got = menu_choice(menu.options, heard, "", 0.0)
    assert got == outcome
    assert (choice is not None) == (outcome == "ok")
    if status is SpeechStatus.LOW_CONFIDENCE:
        assert heard.alternatives[0] == ("i want operator", 0.3)


def test_a_hangup_while_listening_ends_the_flow() -> None:
    with pytest.raises(HangupDuringSession):
        to_heard(SpeechResult(SpeechStatus.HANGUP))


def test_the_plugin_is_the_steps_then_the_languages_then_the_default() -> None:
    listener = TapSpeechInput(Pools(), [], plugin_by_language={"ko": "vosk"})
    ask = ListenRequest(prompt="", dtmf=False, speech=True)
    assert listener.plugin_for(ask) == "pocketsphinx"
    assert listener.plugin_for(ListenRequest("", False, True, language="ko-KR")) == "vosk"
    assert listener.plugin_for(ListenRequest("", False, True, plugin="vosk")) == "vosk"


def test_prompt_files_resolve_only_the_engines_own_prompts(tmp_path: Path) -> None:
    (tmp_path / "abc.wav").write_bytes(encode_wav(Pcm(16000, tone(0.5).repeat(2))))
    files = PromptFiles(tmp_path, "engine-tts")
    got = files("engine-tts/abc")
    assert got is not None and len(got) == 4000  # 16 kHz file resampled to 8 kHz
    assert files("beep") is None
    assert files("engine-tts/../etc/passwd") is None
    assert files("engine-tts/missing") is None


async def test_no_tap_for_the_session_falls_back_to_keys_only() -> None:
    listener = TapSpeechInput(Pools(), [])

    class Keys:
        async def get_digits(self, prompt: str, n: int, t: float, term: str = "#") -> str:
            return "2"

    heard = await listener.listen(Keys(), ListenRequest("p", dtmf=True, speech=True))  # type: ignore[arg-type]
    assert heard == Heard("dtmf", digits="2")


# ------------------------------------------------------------------ FreeSWITCH


async def _freeswitch_menu(
    tmp_path: Path, number: str, audio: bytes, press: str = ""
) -> tuple[Any, TapSpeechInput, list[str]]:
    """Run the menu flow on an outbound-socket session of the fake FreeSWITCH whose far
    end says ``audio`` on the unicast tap (and presses ``press`` once the tap runs)."""
    from engine.ivr.speech_input import UnicastTurns
    from engine.pbx import base
    from engine.pbx.freeswitch.driver import FreeSwitchDriver
    from engine.pbx.freeswitch.media_tap import MediaTap
    from engine.pbx.freeswitch.outbound import OutboundServer
    from tests.fakes.fake_esl import FakeFreeSwitch
    from tests.harness import wait_for
    from tests.unit.test_freeswitch_amd import free_udp_ports

    (tmp_path / "speech-menu.yaml").write_text(FLOW)
    holder: dict[str, FreeSwitchDriver] = {}
    pools = Pools(size=1)
    listener = TapSpeechInput(pools, [UnicastTurns(lambda session: holder.get("fs"))])
    rt = IvrRuntime(tmp_path, tts=TextSpeaker(), speech=listener)
    assert rt.load() == []
    results = []
    finished = asyncio.Event()
    call_id = f"11111111-2222-4333-8444-5555555{number}"

    async def handle(session: Any) -> None:
        results.append(await rt.run(session))
        finished.set()

    try:
        async with OutboundServer(handle, "127.0.0.1", 0, reply_timeout=5) as server:
            fs = FakeFreeSwitch(time_scale=0.05, carrier_socket=("127.0.0.1", server.port))
            fs.tap_audio[number] = audio
            async with fs:
                drv = FreeSwitchDriver(
                    "fs1",
                    fs.host,
                    fs.port,
                    fs.password,
                    ivr_host="127.0.0.1",
                    ivr_port=server.port,
                    media_tap=MediaTap(ports=free_udp_ports(2)),
                )
                holder["fs"] = drv
                await drv.start()
                try:
                    await drv.wait_up(5)
                    await drv.originate(
                        base.OriginateRequest(
                            call_id=call_id,
                            target=base.DialTarget("trunk", "carrier", number),
                            then=base.IvrTarget("speech-menu"),
                        )
                    )
                    if press:
                        await wait_for(lambda: bool(fs.taps), timeout_s=10, what="the tap")
                        session = fs.channels[call_id].session
                        assert session is not None
                        await session.far_end_presses(press)
                    await asyncio.wait_for(finished.wait(), 20)
                finally:
                    await drv.stop()
                sent = [c for c in fs.received if "call-command: unicast" in c]
    finally:
        await pools.stop()
    (result,) = results
    assert all(c.startswith(f"sendmsg {call_id}") for c in sent)
    return result, listener, sent


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")
async def test_freeswitch_outbound_session_hears_speech_on_the_unicast_tap(
    tmp_path: Path,
) -> None:
    """The flow runs on the outbound socket (outbound-socket-ivr.esl); the speech turn
    opens the driver's unicast tap on the leg (sendmsg unicast, as in unicast-*.esl) after
    the prompt has played, and the keyword takes its branch."""
    audio = spoken_wav("billing please", lead_ms=1200)
    result, listener, sent = await _freeswitch_menu(tmp_path, "61005", audio)
    assert steps(result.path)[:3] == ["answer@0", "menu", "billing"], result
    assert listener.last is not None and listener.last.keyword == "billing"
    assert len(sent) == 1


async def test_freeswitch_a_key_during_a_speech_turn_wins(tmp_path: Path) -> None:
    """The DTMF event (as recorded in outbound-socket-gather-success.esl) arrives on the
    socket while the leg listens on the tap: the key decides the turn."""
    silence = encode_wav(Pcm(8000, np.zeros(8000 * 6, np.int16)))
    result, listener, sent = await _freeswitch_menu(tmp_path, "61006", silence, press="2")
    assert len(sent) == 1
    assert steps(result.path)[:3] == ["answer@0", "menu", "operator"], result
    assert result.variables["choice"] == "2"
    assert listener.last is None  # no recognition finished: the key won


def test_asr_plugin_is_checked_at_load_with_file_and_line() -> None:
    from engine.ivr.loader import FlowError, parse_flow
    from engine.ivr.model import Menu

    flow = parse_flow(FLOW.replace("name: speech-menu\n", "name: speech-menu\nasr: vosk\n"), "x")
    assert flow.asr == "vosk"
    step = parse_flow(FLOW.replace("      retries: 1", "      asr: vosk\n      retries: 1"), "x")
    assert isinstance(step.steps[1], Menu) and step.steps[1].asr == "vosk"
    bad = FLOW.replace("      retries: 1", "      asr: whisper\n      retries: 1")
    with pytest.raises(FlowError) as info:
        parse_flow(bad, "f.yaml")
    assert str(info.value).startswith("f.yaml:10: steps[1].menu.asr: expected one of")
    assert "'whisper'" in str(info.value)
