"""Every ```toml example of the docs is a valid ``engine.toml``, by the checks of
``python -m engine check-config`` (``engine.config.validate_config``), so what operators copy
never rots.

How a block is read (tests/doc_examples.py, README.md "Configuration"):

- it must be TOML by itself;
- with ``[api]`` and ``[[switches]]`` it is a whole engine.toml, validated as it is;
- otherwise it is a fragment, merged into the shipped telephony-config/engine.toml first: a table
  (``[api]``, ``[recordings.queues.sales]``) key by key, a key of the block replacing the shipped
  value; an entry of a top-level array of tables (``[[campaigns]]``, ``[[trunks]]``,
  ``[[queues]]``) replaces the shipped entry of the same ``name`` (``[[agents]]``: ``id``) or is
  appended. ``[[queues.overflow]]`` alone names no queue and is a problem;
- a block that shows a mistake on purpose starts with ``# invalid: <text>`` and must fail with
  a problem containing ``<text>``.

A failure names the doc's line: the block's line setting the key the problem names, else its
first line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_examples import ROOT, Block, check_config_block, toml_blocks
from tests.engine_cli import run_cli

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = list(toml_blocks(DOCS))


def test_the_docs_hold_the_examples_this_test_is_about() -> None:
    # An extractor that silently found nothing would pass everything.
    files = {b.where.split(":")[0] for b in BLOCKS}
    assert {"docs/campaigns.md", "docs/trunks.md", "docs/acd.md", "docs/recordings.md"} <= files
    assert len(BLOCKS) >= 15
    assert any(b.text.startswith("[[campaigns]]") for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_every_toml_example_is_a_valid_config(block: Block) -> None:
    problems = check_config_block(block)
    assert not problems, "\n".join(problems)


# ------------------------------------------------- the checker itself, on broken copies


def _blocks(tmp_path: Path, text: str) -> list[Block]:
    path = tmp_path / "doc.md"
    path.write_text(text, encoding="utf-8")
    return list(toml_blocks([path]))


CAMPAIGN = """[[campaigns]]
name = "winter-sale"
[campaigns.spec]
trunk_group = "sandbox-outbound"
queue = "sales"
[campaigns.spec.window]
days = ["mon", "tue"]
"""


def test_a_campaign_fragment_is_merged_into_the_shipped_file(tmp_path: Path) -> None:
    (block,) = _blocks(tmp_path, f"```toml\n{CAMPAIGN}```\n")
    assert check_config_block(block) == []


def test_a_broken_campaign_fragment_fails_at_the_docs_line(tmp_path: Path) -> None:
    broken = CAMPAIGN.replace('queue = "sales"', 'queue = "slaes"')
    (block,) = _blocks(tmp_path, f"# Title\n\ntext\n\n```toml\n{broken}```\n")
    (problem,) = check_config_block(block)
    assert problem == (
        f"{tmp_path / 'doc.md'}:10: campaigns[0].spec.queue: unknown queue 'slaes' "
        "(queues: sales, tech)"
    )


def test_a_wrong_type_or_unknown_key_fails(tmp_path: Path) -> None:
    typed, unknown = _blocks(
        tmp_path,
        '```toml\n[reports]\nrefresh_s = "often"\n```\n'
        "```toml\n[recordings]\nretention_dayz = 30\n```\n",
    )
    (problem,) = check_config_block(typed)
    assert problem.startswith(f"{tmp_path / 'doc.md'}:3: reports.refresh_s: ")
    assert "valid number" in problem
    (problem,) = check_config_block(unknown)
    assert ":7: recordings.retention_dayz: unknown key" in problem


def test_a_named_entry_replaces_the_shipped_one_and_a_table_merges(tmp_path: Path) -> None:
    # The shipped self-trunk, given again: no "appears twice"; [api] without tokens keeps them.
    replaced, merged, twice = _blocks(
        tmp_path,
        '```toml\n[[trunks]]\nname = "self-trunk"\nswitch = "asterisk-1"\n'
        'target = "self-trunk"\nmax_channels = 2\nmax_cps = 1\n```\n'
        '```toml\n[api]\nbind = "0.0.0.0:8443"\n```\n'
        '```toml\n[[trunks]]\nname = "other"\nswitch = "asterisk-1"\n'
        'target = "self-trunk"\nmax_channels = 2\nmax_cps = 1\n```\n',
    )
    assert check_config_block(replaced) == []
    assert check_config_block(merged) == []
    # Appended beside the shipped self-trunk: the same carrier connection twice.
    problem = check_config_block(twice)[0]
    assert ":17: trunks[3].target: 'self-trunk' on 'asterisk-1' is already trunk" in problem


def test_an_array_entry_without_its_parent_fails(tmp_path: Path) -> None:
    (block,) = _blocks(tmp_path, "```toml\n[[queues.overflow]]\nafter_s = 30.0\n```\n")
    (problem,) = check_config_block(block)
    assert problem.endswith(
        ":2: [queues] is an array of tables in engine.toml: name its entry "
        "([[queues]] and name = ...)"
    )


def test_not_toml_fails(tmp_path: Path) -> None:
    (block,) = _blocks(tmp_path, '```toml\n[api\nbind = "x"\n```\n')
    (problem,) = check_config_block(block)
    assert ":2: not valid TOML" in problem


def test_an_invalid_example_must_fail_with_the_error_the_doc_names(tmp_path: Path) -> None:
    bad = CAMPAIGN.replace('"tue"', '"tsu"')
    good, wrong, valid = _blocks(
        tmp_path,
        f"```toml\n# invalid: window.days[1]\n{bad}```\n"
        f"```toml\n# invalid: some other error\n{bad}```\n"
        f"```toml\n# invalid: anything\n{CAMPAIGN}```\n",
    )
    assert check_config_block(good) == []
    (problem,) = check_config_block(wrong)
    assert "expected an error with 'some other error'" in problem
    (problem,) = check_config_block(valid)
    assert "marked invalid but is valid" in problem


WHOLE = """[api]
tokens = ["0123456789abcdef0123"]
[[switches]]
kind = "asterisk"
name = "pbx1"
username = "engine"
secret = "s3cret-value"
port = 99999
"""


def test_a_whole_file_is_checked_alone_as_check_config_does(tmp_path: Path) -> None:
    # Not merged: the shipped file's trunks (on asterisk-1) would fail on switch pbx1. And the
    # problems are check-config's own, word for word.
    (block,) = _blocks(tmp_path, f"```toml\n{WHOLE}```\n")
    (problem,) = check_config_block(block)
    config = tmp_path / "engine.toml"
    config.write_text(WHOLE, encoding="utf-8")
    result = run_cli("check-config", str(config))
    assert result.returncode == 2
    said = [line.strip().removeprefix(f"{config}: ") for line in result.stderr.splitlines()[1:]]
    assert said == ["switches[0].port: Input should be less than 65536 (got 99999)"]
    assert problem == f"{tmp_path / 'doc.md'}:9: {said[0]}"
