"""``contacts import`` / ``dnc import`` refuse a region code that is not one before anything
opens PostgreSQL, as ``?region=`` does on the API (docs/contacts.md): a typo used to reject
every number written without +CC, or to pass unnoticed when each had one."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main


@pytest.mark.parametrize(
    "command", [["contacts", "import", "--campaign", "tour"], ["dnc", "import"]]
)
def test_an_unknown_region_is_a_usage_error(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contacts = tmp_path / "list.csv"
    contacts.write_text("phone\n2025557001\n")
    with pytest.raises(SystemExit) as exit_:
        main([*command, str(contacts), "--region", "XX", "--config", str(tmp_path / "no.toml")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --region: expected a region code phonenumbers knows" in err
    assert "got 'XX'" in err
