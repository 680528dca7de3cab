"""The IVR `say` step: loader validation with file:line, pre-render at load, keep the
previous good flow when rendering fails, and what the runtime asks the switch to play."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from engine.ivr.loader import FlowError, load_dir, parse_flow
from engine.ivr.model import Say
from engine.ivr.runtime import IvrRuntime
from engine.speech.cache import PromptCache
from engine.speech.espeak import EspeakNg
from engine.speech.wav import decode_wav

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/host-deps)"
)
ROOT = Path(__file__).resolve().parents[2]
VOICES = frozenset({"en", "en-us", "cmn", "cmn-latn-pinyin"})


class RecordingSession:
    """Records the CallSession calls a flow makes; the switch side is the integration test's."""

    def __init__(self, digits: str = "") -> None:
        self.calls: list[tuple[str, ...]] = []
        self._digits = digits

    @property
    def call_id(self) -> str:
        return "test-call"

    @property
    def variables(self) -> Mapping[str, str]:
        return {"flow": "greet"}

    async def answer(self) -> None:
        self.calls.append(("answer",))

    async def play(self, prompt: str) -> None:
        self.calls.append(("play", prompt))

    async def get_digits(
        self, prompt: str, max_digits: int, timeout_s: float, terminators: str = "#"
    ) -> str:
        self.calls.append(("get_digits", prompt))
        return self._digits

    async def get_var(self, name: str) -> str | None:
        return None

    async def set_var(self, name: str, value: str) -> None:
        self.calls.append(("set_var", name, value))

    async def record(self, path: str, max_s: float, silence_s: float = 0) -> None:
        raise AssertionError("not used")

    async def hangup(self) -> None:
        self.calls.append(("hangup",))


def test_say_forms_parse() -> None:
    flow = parse_flow(
        "name: x\nsteps:\n  - say: Hello there\n  - say:\n      text: ni3 hao3\n"
        "      voice: CMN-Latn-Pinyin\n",
        "ivr/x.yaml",
        VOICES,
    )
    assert flow.steps == (
        Say(text="Hello there", voice="en", line=3),
        Say(text="ni3 hao3", voice="CMN-Latn-Pinyin", line=4),
    )


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "name: x\nsteps:\n  - answer\n  - say:\n      text: hi\n      voice: cmn-latn-pinyn\n",
            6,
            "steps[1].say.voice: unknown TTS voice 'cmn-latn-pinyn'; did you mean cmn-latn-pinyin",
        ),
        ("name: x\nsteps:\n  - say: {voice: en}\n", 3, "steps[0].say.text: required"),
        ("name: x\nsteps:\n  - say:\n      text: '   '\n", 4, "expected some words to say"),
        (
            "name: x\nsteps:\n  - say: [a, b]\n",
            3,
            "steps[0].say: expected the text, or a mapping with text: and voice:",
        ),
        (
            "name: x\nsteps:\n  - say:\n      text: hi\n      speed: 2\n",
            5,
            "steps[0].say: unknown key 'speed'",
        ),
        (
            "name: x\nsteps:\n  - say:\n      text: hi\n      voice: 'en us'\n",
            5,
            "steps[0].say.voice: expected a TTS voice",
        ),
        ("name: x\nsteps:\n  - say: 'code {code'\n", 3, "bad {variable} template"),
        ("name: x\nsteps:\n  - say: 'hi {customer name}'\n", 3, "is not a variable name"),
        ('name: x\nsteps:\n  - say: "bell\\a"\n', 3, "contains a control character"),
        ("name: x\nsteps:\n  - say: " + "a" * 1001 + "\n", 3, "at most 1000 characters"),
    ],
)
def test_bad_say_names_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(FlowError) as info:
        parse_flow(text, "ivr/x.yaml", VOICES)
    assert str(info.value).startswith(f"ivr/x.yaml:{line}: "), str(info.value)
    assert info.value.line == line
    assert fragment in str(info.value)


def test_voice_is_not_checked_without_a_voice_list() -> None:
    flow = parse_flow("name: x\nsteps:\n  - say: {text: hi, voice: xx}\n", "x.yaml", None)
    assert flow.steps == (Say("hi", "xx", 3),)


def test_shipped_flows_have_english_and_mandarin_says_with_installed_voices() -> None:
    flows, errors = load_dir(ROOT / "ivr", EspeakNg().voices())
    assert errors == []
    says = [s for f in flows.values() for s in f.steps if isinstance(s, Say)]
    assert {s.voice for s in says} >= {"en", "cmn-latn-pinyin"}


def runtime_for(tmp_path: Path, flow_text: str) -> tuple[IvrRuntime, Path]:
    flows = tmp_path / "ivr"
    flows.mkdir(exist_ok=True)
    (flows / "greet.yaml").write_text(flow_text)
    tts_dir = tmp_path / "sounds" / "engine-tts"
    tts_dir.parent.mkdir(exist_ok=True)
    return IvrRuntime(flows, tts_dir=tts_dir, tts_prefix="engine-tts"), tts_dir


def _renders(runtime: IvrRuntime) -> int:
    assert isinstance(runtime.tts, PromptCache)
    return runtime.tts.renders


GREET = (
    "name: greet\nsteps:\n  - answer\n  - say: Welcome.\n"
    "  - say: {text: 'ni3 hao3', voice: cmn-latn-pinyin}\n  - hangup\n"
)


async def test_load_prerenders_and_the_call_plays_the_rendered_files(tmp_path: Path) -> None:
    runtime, tts_dir = runtime_for(tmp_path, GREET)
    assert runtime.load() == []
    rendered = sorted(tts_dir.glob("*.wav"))
    assert len(rendered) == 2  # both prompts exist before any call
    assert all(decode_wav(p.read_bytes()).rate == 8000 for p in rendered)

    session = RecordingSession()
    await runtime.handle(session)
    played = [c[1] for c in session.calls if c[0] == "play"]
    assert [c[0] for c in session.calls] == ["answer", "play", "play", "hangup"]
    # The switch is given "<prefix>/<hash>" without extension; each names a rendered file.
    assert all(p.startswith("engine-tts/") for p in played)
    assert sorted(tts_dir / (p.split("/", 1)[1] + ".wav") for p in played) == rendered
    assert _renders(runtime) == 2  # the call itself rendered nothing


async def test_template_say_renders_at_call_time(tmp_path: Path) -> None:
    flow = (
        "name: greet\nsteps:\n  - gather: {into: code, max_digits: 4}\n"
        "  - say: 'You entered {code}.'\n"
    )
    runtime, tts_dir = runtime_for(tmp_path, flow)
    assert runtime.load() == [] and list(tts_dir.glob("*.wav")) == []
    await runtime.handle(RecordingSession(digits="42"))
    await runtime.handle(RecordingSession(digits="42"))
    assert _renders(runtime) == 1  # same digits, same file
    await runtime.handle(RecordingSession(digits="7"))
    assert _renders(runtime) == 2 and len(list(tts_dir.glob("*.wav"))) == 2


async def test_render_failure_on_reload_keeps_the_previous_good_flow(tmp_path: Path) -> None:
    runtime, tts_dir = runtime_for(tmp_path, GREET)
    assert await runtime.reload() == []
    good = runtime.flows["greet"]
    # Same file, a new prompt, and the prompt directory replaced by a plain file (a bad
    # volume mount, say): the new text cannot be written anywhere the switch can read.
    (tmp_path / "ivr" / "greet.yaml").write_text(GREET.replace("Welcome.", "Hello again."))
    shutil.rmtree(tts_dir)
    tts_dir.write_text("not a directory")
    errors = await runtime.reload()
    assert len(errors) == 1
    assert str(errors[0]).startswith(f"{tmp_path / 'ivr' / 'greet.yaml'}:4: steps[1].say: ")
    assert "cannot render" in str(errors[0]) and "cannot write prompts to" in str(errors[0])
    assert runtime.flows["greet"] is good


def test_unwritable_prompt_directory_rejects_the_flow_at_its_say_line(tmp_path: Path) -> None:
    flows = tmp_path / "ivr"
    flows.mkdir()
    (flows / "greet.yaml").write_text(GREET)
    runtime = IvrRuntime(flows, tts_dir=tmp_path / "missing" / "engine-tts")
    errors = runtime.load()
    assert [e.line for e in errors] == [4]
    assert "cannot write prompts to" in str(errors[0])
    assert "greet" not in runtime.flows
