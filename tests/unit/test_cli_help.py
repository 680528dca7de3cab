"""Every ``python -m engine ... --help`` is written for a user: no reStructuredText markup or
developer notes from module docstrings (``simulate --help`` printed two docstrings, with
":func:`add_simulate_parser`" and "The main CLI calls ...")."""

from __future__ import annotations

import argparse

from engine.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += _parsers(child, f"{path} {name}")
    return out


def test_no_help_page_shows_developer_markup() -> None:
    pages = _parsers(build_parser(), "engine")
    assert len(pages) > 20
    bad = {
        path: marker
        for path, parser in pages
        for marker in ("``", ":func:", ":class:", "The main CLI")
        if marker in parser.format_help()
    }
    assert bad == {}
