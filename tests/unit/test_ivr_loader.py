"""IVR flow files: good ones load, bad ones fail with file:line, reload keeps the last good one."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.ivr.loader import FlowError, load_dir, parse_flow
from engine.ivr.model import Gather, Hangup, Play
from engine.ivr.runtime import IvrRuntime

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_flows_load() -> None:
    flows, errors = load_dir(ROOT / "ivr")
    assert errors == []
    main = flows["main"]
    assert isinstance(main.steps[-1], Hangup)
    gather = next(s for s in main.steps if isinstance(s, Gather))
    assert (gather.into, gather.max_digits, gather.terminators) == ("code", 4, "#")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "name: x\nsteps:\n  - answer\n  - gather:\n      into: pin\n      max_digits: four\n",
            6,
            "steps[1].gather.max_digits: expected an integer 1-32 (got 'four')",
        ),
        ("name: x\nsteps:\n  - answer\n  - dance\n", 4, "steps[1]: unknown step 'dance'"),
        ("name: x\nsteps: []\n", 2, "steps: expected a non-empty list"),
        ("steps:\n  - answer\n", 1, "flow: 'name:' is required"),
        (
            "name: x\nsteps:\n  - play: ../../etc/passwd\n",
            3,
            "steps[0].play: expected a sound file name",
        ),
        ("name: x\nsteps:\n  - gather: {prompt: beep}\n", 3, "steps[0].gather.into: required"),
        ("name: x\nsteps:\n  - answer\n  bad: [\n", 4, "not valid YAML"),
        ("name: x\ncolour: red\nsteps:\n  - answer\n", 2, "flow: unknown key 'colour'"),
    ],
)
def test_bad_flow_names_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(FlowError) as info:
        parse_flow(text, "ivr/x.yaml")
    assert info.value.line == line, str(info.value)
    assert str(info.value).startswith(f"ivr/x.yaml:{line}: ")
    assert fragment in str(info.value)


def test_bad_reload_keeps_previous_good_version(tmp_path: Path) -> None:
    path = tmp_path / "menu.yaml"
    path.write_text("name: menu\nsteps:\n  - play: hello\n")
    runtime = IvrRuntime(tmp_path)
    assert runtime.load() == []
    assert isinstance(runtime.flows["menu"].steps[0], Play)
    path.write_text("name: menu\nsteps:\n  - play: [oops\n")
    errors = runtime.load()
    assert len(errors) == 1 and errors[0].source == str(path)
    assert runtime.flows["menu"].steps == (Play("hello", 3),)
    path.write_text("name: menu\nsteps:\n  - play: goodbye\n")
    assert runtime.load() == []
    assert runtime.flows["menu"].steps == (Play("goodbye", 3),)
