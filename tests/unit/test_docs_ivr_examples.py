"""Every IVR example of the docs loads through the engine's flow loader (the one of
``python -m engine ivr check``), so what call-flow authors copy never rots.

The rule that turns a fragment (a few steps shown out of their flow) into a flow is in
tests/doc_examples.py and docs/ivr.md "Examples in these docs". A failure names the doc's line.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from pathlib import Path

import pytest

from engine.cli import ivr_catalog
from engine.ivr.expr import compile_expr
from engine.ivr.loader import load_dir
from engine.ivr.queueing import QueueCatalog
from engine.ivr.tester import TextSpeaker
from engine.speech.tts import TtsError
from tests.doc_examples import ROOT, Block, block_kind, check_ivr_block, fenced_blocks, yaml_blocks

DOCS = [ROOT / "docs" / "ivr.md", ROOT / "README.md", ROOT / "docs" / "campaigns.md"]
BLOCKS = list(yaml_blocks(DOCS))


@functools.cache
def _voices() -> Collection[str] | None:
    try:
        return TextSpeaker().voices()
    except TtsError:  # no espeak-ng: voices are not checked, as `ivr check` does
        return None


@functools.cache
def _catalog() -> QueueCatalog | None:
    return ivr_catalog(ROOT / "telephony-config" / "engine.toml")


def _check(block: Block) -> list[str]:
    return check_ivr_block(block, _voices(), _catalog())


def test_the_docs_hold_the_examples_this_test_is_about() -> None:
    # An extractor that silently found nothing would pass everything.
    assert len(BLOCKS) >= 20
    kinds = [block_kind(b) for b in BLOCKS]
    assert {"flow", "fragment", "cases"} <= set(kinds)
    assert "unknown" not in kinds, [b.where for b in BLOCKS if block_kind(b) == "unknown"]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_every_yaml_example_loads(block: Block) -> None:
    problems = _check(block)
    assert not problems, "\n".join(problems)


def test_every_expression_example_compiles() -> None:
    text = (ROOT / "docs" / "ivr.md").read_text(encoding="utf-8")
    heading = text[: text.index("## Expressions")].count("\n") + 1
    block = next(b for b in fenced_blocks(ROOT / "docs" / "ivr.md") if b.line > heading)
    lines = [line for line in block.text.splitlines() if line.strip()]
    assert block.lang == "" and len(lines) >= 5
    for line in lines:
        compile_expr(line)


# The flows behind the load errors docs/ivr.md lists (its block of `ivr/x.yaml:<line>: ...`
# lines), in its order: each must still fail at that line with that text.
ERROR_FLOWS = [
    """name: x
variables:
  customer.level: 0
steps:
  - answer
  - gather: {prompt: beep, into: code, max_digits: 1}
  - if: custmer.level > 3
    then: bye
  - id: bye
    hangup:
""",
    """name: x
steps:
  - answer
  - say:
      text: "Hello."
      voice: en
  - say: "Goodbye."
  - hangup

  # left behind after an edit, with nothing leading to it:

  - say: "never heard"
""",
    """name: x
steps:
  - id: top
    set: {tries: "1"}
  - goto: top
""",
    """name: x
variables:
  score: 0
steps:
  - answer
  - say:
      text: "Hello."
      voice: en
  - if: score = 1
    then: bye
  - id: bye
    hangup:
""",
]


def test_the_documented_load_errors_are_what_the_loader_says(tmp_path: Path) -> None:
    blocks = fenced_blocks(ROOT / "docs" / "ivr.md")
    (block,) = [b for b in blocks if b.text.startswith("ivr/x.yaml:")]
    documented = block.text.splitlines()
    assert len(documented) == len(ERROR_FLOWS)
    said = []
    for i, text in enumerate(ERROR_FLOWS):
        directory = tmp_path / str(i)
        directory.mkdir()
        (directory / "x.yaml").write_text(text, encoding="utf-8")
        flows, errors = load_dir(directory, _voices(), _catalog())
        assert not flows and len(errors) == 1, errors
        said.append(f"ivr/x.yaml:{errors[0].line}: {str(errors[0]).split(': ', 1)[1]}")
    assert said == documented


# ------------------------------------------------- the checker itself, on broken copies


def _doc(tmp_path: Path, text: str) -> list[Block]:
    path = tmp_path / "doc.md"
    path.write_text(text, encoding="utf-8")
    return list(yaml_blocks([path]))


def test_a_broken_whole_flow_fails_at_the_docs_line(tmp_path: Path) -> None:
    (block,) = _doc(
        tmp_path,
        "# Title\n\ntext\n\n```yaml\nname: x\nsteps:\n  - answer\n"
        '  - say: "Hello {custmer.name}"\n  - hangup\n```\n',
    )
    (problem,) = _check(block)
    assert problem.startswith(f"{tmp_path / 'doc.md'}:9: unknown variable 'custmer.name'")


def test_a_whole_flow_gets_no_stubs(tmp_path: Path) -> None:
    (block,) = _doc(tmp_path, "```yaml\nname: x\nsteps:\n  - goto: nowhere\n```\n")
    (problem,) = _check(block)
    assert ":4: steps[0].goto: no step has id 'nowhere'" in problem


def test_a_fragment_is_wrapped_and_its_names_stubbed(tmp_path: Path) -> None:
    (block,) = _doc(
        tmp_path,
        "```yaml\n  - if: customer.level > 3\n    then: vip\n  ...\n"
        "  - goto: {flow: billing, node: balance}\n"
        '  - say: "{greeting}"\n```\n',
    )
    assert block_kind(block) == "fragment"
    assert _check(block) == []


def test_a_broken_fragment_fails_at_the_docs_line(tmp_path: Path) -> None:
    (block,) = _doc(
        tmp_path,
        "intro\n```yaml\n  - answer\n"
        "  - gather: {prompt: beep, into: code, max_digits: lots}\n```\n",
    )
    (problem,) = _check(block)
    assert problem.startswith(f"{tmp_path / 'doc.md'}:4: ")
    assert "max_digits" in problem


def test_a_fragment_with_an_unknown_step_kind_fails(tmp_path: Path) -> None:
    (block,) = _doc(tmp_path, "```yaml\n  - answer\n  - sya: hello\n```\n")
    (problem,) = _check(block)
    assert ":3: " in problem and "sya" in problem


def test_steps_that_are_no_list_fail(tmp_path: Path) -> None:
    # The shape docs/ivr.md had before this test: `steps: ...` as a placeholder.
    (block,) = _doc(tmp_path, "```yaml\nname: ko-menu\nasr: vosk\nsteps: ...\n```\n")
    (problem,) = _check(block)
    assert problem.endswith(":4: steps: expected a non-empty list")


def test_an_invalid_example_must_fail_with_the_error_the_doc_names(tmp_path: Path) -> None:
    flow = "name: x\nsteps:\n  - if: custmer.level > 3\n    then: vip\n  - id: vip\n    hangup:\n"
    good, wrong, loads = _doc(
        tmp_path,
        f"```yaml\n# invalid: unknown variable 'custmer.level'\n{flow}```\n"
        f"```yaml\n# invalid: some other error\n{flow}```\n"
        "```yaml\n# invalid: anything\nname: y\nsteps:\n  - answer\n```\n",
    )
    assert block_kind(good) == "invalid"
    assert _check(good) == []
    (problem,) = _check(wrong)
    assert "expected an error with 'some other error'" in problem
    (problem,) = _check(loads)
    assert "marked invalid but loads" in problem


def test_a_test_file_example_runs_against_the_shipped_flows(tmp_path: Path) -> None:
    (block,) = _doc(
        tmp_path,
        "```yaml\nflow: zh-offer\ncases:\n  - name: wrong path\n"
        '    inputs: ["speech:拒绝"]\n    webhooks: {"http://127.0.0.1:8765/crm/interest": '
        "{interest_level: 0.3}}\n    expect:\n      path: [greeting, goodbye]\n```\n",
    )
    assert block_kind(block) == "cases"
    (problem,) = _check(block)
    assert "case 'wrong path'" in problem and "path" in problem
