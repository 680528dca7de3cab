"""Pure parts of the migration runner: file loading and the apply plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store.errors import MigrationError
from engine.store.pg.migrations import (
    MIGRATIONS_DIR,
    AppliedMigration,
    checksum,
    load_migrations,
    plan,
)


def write(d: Path, name: str, sql: str) -> Path:
    p = d / name
    p.write_text(sql, encoding="utf-8")
    return p


def test_shipped_migrations_load_in_order() -> None:
    migs = load_migrations(MIGRATIONS_DIR)
    assert [m.version for m in migs] == list(range(1, len(migs) + 1))
    assert migs[0].name == "init"
    assert "CREATE TABLE cdr" in migs[0].sql


def test_files_sorted_by_version_and_non_sql_ignored(tmp_path: Path) -> None:
    write(tmp_path, "0010_later.sql", "SELECT 10;")
    write(tmp_path, "0002_second.sql", "SELECT 2;")
    write(tmp_path, "README.md", "not a migration")
    migs = load_migrations(tmp_path)
    assert [(m.version, m.name) for m in migs] == [(2, "second"), (10, "later")]


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "abcd_x.sql"])
def test_bad_file_name_is_rejected_with_the_file(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, "SELECT 1;")
    with pytest.raises(MigrationError, match="bad migration file name") as exc:
        load_migrations(tmp_path)
    assert name in str(exc.value)


def test_duplicate_version_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "SELECT 1;")
    write(tmp_path, "0001_b.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="duplicate migration version 0001"):
        load_migrations(tmp_path)


def test_empty_and_non_utf8_files_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, "0001_empty.sql", "  \n")
    with pytest.raises(MigrationError, match=r"0001_empty\.sql: migration file is empty"):
        load_migrations(tmp_path)
    (tmp_path / "0001_empty.sql").unlink()
    (tmp_path / "0001_latin1.sql").write_bytes(b"SELECT '\xe9';")
    with pytest.raises(MigrationError, match="not valid UTF-8"):
        load_migrations(tmp_path)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        load_migrations(tmp_path / "nope")


def test_checksum_ignores_crlf_but_not_content() -> None:
    assert checksum("SELECT 1;\nSELECT 2;\n") == checksum("SELECT 1;\r\nSELECT 2;\r\n")
    assert checksum("SELECT 1;") != checksum("SELECT 2;")


def test_plan_returns_only_pending(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "SELECT 1;")
    write(tmp_path, "0002_b.sql", "SELECT 2;")
    migs = load_migrations(tmp_path)
    applied = [AppliedMigration(1, "a", migs[0].checksum)]
    assert [m.version for m in plan(migs, applied)] == [2]
    assert plan(migs, [*applied, AppliedMigration(2, "b", migs[1].checksum)]) == []
    assert [m.version for m in plan(migs, [])] == [1, 2]


def test_plan_refuses_changed_applied_migration(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "SELECT 1;")
    migs = load_migrations(tmp_path)
    with pytest.raises(MigrationError, match=r"0001_a\.sql was changed after it was applied"):
        plan(migs, [AppliedMigration(1, "a", checksum("SELECT 0;"))])


def test_plan_refuses_database_newer_than_code(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "SELECT 1;")
    migs = load_migrations(tmp_path)
    applied = [AppliedMigration(1, "a", migs[0].checksum), AppliedMigration(2, "b", "x")]
    with pytest.raises(MigrationError, match="0002_b applied but there is no such file"):
        plan(migs, applied)
