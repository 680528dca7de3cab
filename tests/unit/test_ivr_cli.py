"""The offline flow tester as issue 12 writes it: ``python -m engine ivr test FLOW --input
dtmf:1 --input speech:"sales" --webhook URL=FILE.json`` runs a shipped flow with no switch and
prints the path taken, the prompts and the variables (docs/ivr.md "Testing flows")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from tests.engine_cli import run_cli

# The CLI commands run here configure logging for the process (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("restore_logging")

ROOT = Path(__file__).resolve().parents[2]


def _ivr_test(*args: str) -> str:
    done = run_cli("ivr", "test", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _section(out: str, name: str) -> list[str]:
    lines = out.splitlines()
    start = lines.index(f"{name}:") + 1
    body: list[str] = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        body.append(line.strip())
    return body


def test_the_chinese_script_with_a_canned_crm_reply(tmp_path: Path) -> None:
    reply = tmp_path / "reply.json"
    reply.write_text(json.dumps({"interest_level": 0.9}))
    out = _ivr_test(
        "zh-offer",
        "--input",
        "speech:拒绝",
        "--webhook",
        f"http://127.0.0.1:8765/crm/interest={reply}",
    )
    assert [p.split(":", 1)[1] for p in _section(out, "path")] == [
        "answer@0",
        "greeting",
        "listen",
        "crm",
        "refusal",
        "offer",
        "goto@9",
        "check_interest",
        "senior_agent",
    ], out
    prompts = _section(out, "prompts")
    assert prompts[0].startswith("say[cmn-latn-pinyin]: nin2 hao3") and prompts[1] == "优惠介绍"
    variables = _section(out, "variables")
    assert "customer.response = 拒绝" in variables and "customer.interest_level = 0.9" in variables
    assert "end: queued (sales)" in out


def test_dtmf_then_speech_inputs_in_call_order() -> None:
    out = _ivr_test("support-triage", "--input", "dtmf:1", "--input", "speech:sales")
    steps = [p.split(":", 1)[1] for p in _section(out, "path")]
    assert steps[1] == "ask" and steps[-2:] == ["menu", "sales"], out
    variables = _section(out, "variables")
    assert "request = 1" in variables and "intent = pre_sale" in variables, out
    assert "end: queued (sales)" in out


def test_a_missing_flow_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to pass as "0 flow(s) loaded, 0 error(s)" / "0/0 passed", exit 0.
    missing = str(tmp_path / "ivrr")
    for argv in (["check"], ["tests"], ["test", "main"]):
        assert main(["ivr", *argv, "--dir", missing]) == 2
        assert f"--dir {missing}: no such directory" in capsys.readouterr().err


def test_a_broken_config_is_named_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(
        (ROOT / "telephony-config" / "engine.toml")
        .read_text()
        .replace('bind = "127.0.0.1:8080"', 'bnid = "127.0.0.1:8080"', 1)
    )
    for argv in (["check"], ["tests"], ["test", "main"]):
        assert main(["ivr", *argv, "--dir", str(ROOT / "ivr"), "--config", str(config)]) == 2
        assert f"{config}: api.bnid: unknown key" in capsys.readouterr().err


def test_check_notes_a_flow_named_unlike_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "main.yaml").write_text("name: mian\nsteps:\n  - hangup\n")
    (tmp_path / "other.yaml").write_text("name: other\nsteps:\n  - hangup\n")
    assert main(["ivr", "check", "--dir", str(tmp_path), "--config", str(tmp_path / "x")]) == 0
    out = capsys.readouterr()
    assert out.out == "2 flow(s) loaded, 0 error(s)\n"
    assert out.err.splitlines()[-1] == (
        f"{tmp_path / 'main.yaml'}: note: the flow is named 'mian', not 'main' like its file; "
        "calls must use 'mian'"
    )
    assert "other" not in out.err
