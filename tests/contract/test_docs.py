"""docs/contract-suite.md must show the tables the suite really uses (no drift)."""

from __future__ import annotations

from pathlib import Path

from tests.contract.drivers import render_quirks_table, render_targets_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract-suite.md"


def test_doc_embeds_the_quirks_and_targets_tables() -> None:
    text = DOC.read_text()
    assert render_quirks_table() in text, "regenerate the quirks table in the doc"
    assert render_targets_table() in text, "regenerate the targets table in the doc"
