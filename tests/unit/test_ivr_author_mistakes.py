"""A flow author's mistakes (the ivrwalk review): each is named at the right file and
line, a bad file never replaces a good flow, and a value with a trailing newline
never passes as a number to dial."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.core.errors import UnsafeValue
from engine.ivr.decide import transfer_problem
from engine.ivr.loader import FlowError, load_dir, parse_flow
from engine.ivr.model import Say
from engine.ivr.ports import TransferRequest
from engine.ivr.runtime import IvrRuntime
from engine.pbx.asterisk.driver import dial_string
from engine.pbx.base import DialTarget
from engine.speech.tts import TtsError
from tests.engine_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
MAIN = "name: main\nsteps:\n  - play: hello\n  - hangup\n"


def _runtime(directory: Path) -> IvrRuntime:
    return IvrRuntime(directory, tts_dir=directory / "tts")


def test_a_copied_file_that_keeps_the_name_does_not_replace_the_live_flow(
    tmp_path: Path,
) -> None:
    (tmp_path / "main.yaml").write_text(MAIN)
    runtime = _runtime(tmp_path)
    assert runtime.load() == []
    # `a-copy.yaml` sorts first; it used to become `main` and the real main.yaml was
    # the one rejected ("already used by a-copy.yaml").
    (tmp_path / "a-copy.yaml").write_text("name: main\nsteps:\n  - say: copied\n")
    errors = runtime.load()
    assert sorted(Path(e.source).name for e in errors) == ["a-copy.yaml", "main.yaml"]
    assert all("flow name 'main' is also used by" in str(e) for e in errors)
    assert runtime.flows["main"].source == str(tmp_path / "main.yaml")
    assert not any(isinstance(s, Say) for s in runtime.flows["main"].steps)


def test_a_yml_file_is_reported_not_skipped_in_silence(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(MAIN)
    (tmp_path / "sales.yml").write_text("name: sales\nsteps:\n  - hangup\n")
    flows, errors = load_dir(tmp_path)
    assert sorted(flows) == ["main"]
    assert [str(e) for e in errors] == [
        f"{tmp_path}/sales.yml:1: not loaded: flow files end in .yaml (rename it sales.yaml)"
    ]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        # An unclosed quote: the error was at the file's last line.
        (
            'name: x\nsteps:\n  - answer\n  - say: "unterminated\n  - hangup\n\n',
            4,
            "while scanning a quoted scalar: found unexpected end of stream (at line 7)",
        ),
        # An unclosed flow mapping, likewise.
        (
            "name: x\nsteps:\n  - answer\n  - gather: {into: x\n\n",
            4,
            "while parsing a flow mapping: expected ',' or '}'",
        ),
    ],
)
def test_a_yaml_error_at_the_end_is_named_where_it_began(
    text: str, line: int, fragment: str
) -> None:
    with pytest.raises(FlowError) as info:
        parse_flow(text, "ivr/x.yaml")
    assert info.value.line == line, str(info.value)
    assert fragment in str(info.value)


def test_a_chinese_step_id_is_told_ids_are_ascii() -> None:
    with pytest.raises(FlowError) as info:
        parse_flow("name: x\nsteps:\n  - id: 欢迎\n    hangup:\n", "ivr/x.yaml")
    assert info.value.line == 3
    assert "ASCII letters" in str(info.value) and "'欢迎'" in str(info.value)


@pytest.mark.parametrize("value", ["5551234\n", "+15551234\n"])
def test_a_number_with_a_trailing_newline_is_not_dialled(value: str) -> None:
    request = TransferRequest(leg="caller", flow="f", number=value, trunk_group="out")
    assert transfer_problem(request).startswith("not a number to dial")
    endpoint = TransferRequest(leg="caller", flow="f", endpoint="1001\n")
    assert transfer_problem(endpoint).startswith("not an endpoint name")
    # The driver's own check, the last one before the dial string.
    with pytest.raises(UnsafeValue):
        dial_string(DialTarget("trunk", "out", value))
    with pytest.raises(UnsafeValue):
        dial_string(DialTarget("endpoint", "1001\n"))


class _FailingTts:
    """A TTS engine that fails at call time (espeak-ng timing out, a full disk)."""

    engine = "espeak-ng"

    def voices(self) -> frozenset[str]:
        return frozenset({"en"})

    def render_sync(self, text: str, voice: str) -> Path:
        raise AssertionError("no static say in this flow")

    async def render(self, text: str, voice: str) -> Path:
        raise TtsError("espeak-ng timed out after 15 s")

    def prompt_name(self, path: Path) -> str:
        return str(path)


class _Session:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @property
    def call_id(self) -> str:
        return "c-1"

    @property
    def variables(self) -> Mapping[str, str]:
        return {"flow": "greet"}

    async def answer(self) -> None:
        self.calls.append("answer")

    async def play(self, prompt: str) -> None:
        self.calls.append(f"play {prompt}")

    async def get_digits(
        self, prompt: str, max_digits: int, timeout_s: float, terminators: str = "#"
    ) -> str:
        return "42"

    async def get_var(self, name: str) -> str | None:
        return None

    async def set_var(self, name: str, value: str) -> None:
        pass

    async def record(self, path: str, max_s: float, silence_s: float = 0) -> None:
        raise AssertionError("not used")

    async def hangup(self) -> None:
        self.calls.append("hangup")


class _Events:
    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []

    async def publish(self, data: Mapping[str, Any]) -> None:
        self.seen.append(data)


async def test_a_step_that_fails_at_call_time_ends_that_call_with_ivr_failed(
    tmp_path: Path,
) -> None:
    (tmp_path / "greet.yaml").write_text(
        "name: greet\nsteps:\n  - answer\n  - gather: {into: code, max_digits: 4}\n"
        "  - id: readback\n    say: 'You entered {code}.'\n  - hangup\n"
    )
    events = _Events()
    runtime = IvrRuntime(tmp_path, events, tts=_FailingTts())
    assert runtime.load() == []
    session = _Session()
    # It used to raise out of run(): no IvrFailed, the hang-up left to the switch server.
    result = await runtime.run(session)
    assert result.end == "failed"
    assert result.detail == "greet:readback: TtsError: espeak-ng timed out after 15 s"
    assert session.calls == ["answer", "hangup"]
    assert [e["type"] for e in events.seen] == ["IvrStarted", "IvrInput", "IvrFailed"]
    assert events.seen[-1]["reason"] == result.detail


def test_a_broken_expected_paths_file_is_named_and_counted(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(MAIN)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "a.yaml").write_text('flow: main\ncases:\n  - name: "x\n')
    (tests / "b.yaml").write_text(
        "flow: main\ncases:\n  - name: typo\n    inputs: ['dmtf:1']\n    expect: {end: hangup}\n"
    )
    # a.yaml used to end in a YAML traceback; b.yaml named neither file nor case.
    done = run_cli("ivr", "tests", "--dir", str(tmp_path))
    assert done.returncode == 1, done.stderr
    out = done.stdout.splitlines()
    assert out == [
        f"ERROR {tests}/a.yaml:3: not valid YAML: while scanning a quoted scalar: "
        "found unexpected end of stream (at line 4)",
        f"ERROR {tests}/b.yaml: cases[0].inputs: input 'dmtf:1': expected dtmf:<keys>, "
        "speech:<words>[@confidence] or silence",
        "0/2 passed",  # was "-1/0 passed"
    ]


@pytest.mark.parametrize(
    ("options", "line", "fragment"),
    [
        # The same keyword (as the menu folds it) in two options: the second is never chosen.
        (
            "input: both\n      options:\n        - {dtmf: '1', speech: [sales], goto: a}\n"
            "        - {dtmf: '2', speech: [buy, SALES], goto: a}\n",
            8,
            "options[1].speech[1]: keyword 'sales' already chooses options[0]",
        ),
        # A speech-only menu whose options have no keyword: an empty grammar.
        (
            "input: speech\n      options:\n        - {dtmf: '1', goto: a}\n",
            7,
            "options[0]: no speech: or intent:, and the menu's input is speech",
        ),
        # A keys-only menu with an option that only has keywords.
        (
            "input: dtmf\n      options:\n        - {dtmf: '1', goto: a}\n"
            "        - {speech: [agent], goto: a}\n",
            8,
            "options[1]: no dtmf:, and the menu's input is dtmf",
        ),
    ],
)
def test_a_menu_option_its_input_can_never_choose_is_refused(
    options: str, line: int, fragment: str
) -> None:
    text = (
        f"name: x\nsteps:\n  - menu:\n      say: Choose.\n      {options}  - id: a\n    hangup:\n"
    )
    with pytest.raises(FlowError) as info:
        parse_flow(text, "ivr/x.yaml")
    assert info.value.line == line, str(info.value)
    assert fragment in str(info.value)
