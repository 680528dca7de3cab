"""The switch recordings the tests replay are copies of the shared reference set
(/work/shared/fixtures, recorded from the real Asterisk 22 and FreeSWITCH 1.10.12): each
shared file must be in tests/fixtures byte for byte. A README may have lines added by the
project (asterisk-22 documents its own doctor.ami recording) but keeps every shared line
in order; a file only the project has must be named in its set's README (X.sent with X)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path("/work/shared/fixtures")
LOCAL = Path(__file__).resolve().parent.parent / "fixtures"
SETS = sorted(p.name for p in SHARED.iterdir() if p.is_dir()) if SHARED.is_dir() else []


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _in_order(lines: list[bytes], within: list[bytes]) -> bool:
    rest = iter(within)
    return all(any(line == other for other in rest) for line in lines)


@pytest.mark.skipif(not SETS, reason="no shared fixtures on this machine")
@pytest.mark.parametrize("name", SETS)
def test_shared_fixtures_are_copied_byte_identical(name: str) -> None:
    shared, local = SHARED / name, LOCAL / name
    assert local.is_dir(), f"tests/fixtures/{name} missing"
    missing = sorted(_files(shared) - _files(local))
    assert missing == [], f"not copied into tests/fixtures/{name}: {missing}"
    differ = []
    for rel in sorted(_files(shared)):
        mine, theirs = (local / rel).read_bytes(), (shared / rel).read_bytes()
        if rel == "README.md":
            if not _in_order(theirs.split(b"\n"), mine.split(b"\n")):
                differ.append(rel)
        elif mine != theirs:
            differ.append(rel)
    assert differ == [], f"tests/fixtures/{name} differs from the shared copy: {differ}"
    readme = (local / "README.md").read_text()
    undeclared = [
        rel
        for rel in sorted(_files(local) - _files(shared))
        if Path(rel).name.removesuffix(".sent") not in readme  # X.sent goes with X
    ]
    assert undeclared == [], f"project-only files not named in the README: {undeclared}"
