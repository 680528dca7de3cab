"""Config validation: every error names the file, the key path and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config, parse_config
from engine.core.errors import ConfigError
from tests.engine_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "telephony-config" / "engine.toml"

GOOD = """
[api]
tokens = ["0123456789abcdef0123"]
[[switches]]
kind = "asterisk"
name = "pbx1"
username = "engine"
secret = "s3cret-value"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.toml")
    assert info.value.path == "cfg.toml"
    return info.value.problems


def test_sample_config_is_valid() -> None:
    cfg = load_config(SAMPLE)
    assert [s.name for s in cfg.switches] == ["asterisk-1"]
    assert cfg.api.port == 8080
    assert cfg.resolve(cfg.engine.ivr_dir) == (ROOT / "telephony-config" / "../ivr")


def test_minimal_config_gets_defaults() -> None:
    cfg = parse_config(GOOD, "cfg.toml")
    sw = cfg.switches[0]
    assert (sw.host, sw.port, sw.action_timeout_s) == ("127.0.0.1", 5038, 5.0)
    assert cfg.fastagi.port == 4573


def test_wrong_type_names_key_and_expectation() -> None:
    got = problems(GOOD.replace('name = "pbx1"', 'name = "pbx1"\nport = "abc"'))
    assert got == [
        "switches[0].port: Input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')"
    ]


def test_unknown_key_is_an_error() -> None:
    got = problems(GOOD + "actoin_timeout_s = 3\n")
    assert got == [
        "switches[0].actoin_timeout_s: unknown key "
        "(check the spelling; see telephony-config/engine.toml)"
    ]


def test_missing_required_section() -> None:
    got = problems('[[switches]]\nkind="asterisk"\nname="a"\nusername="u"\nsecret="s"\n')
    assert got == ["api: required key is missing"]


def test_bad_bind_and_short_token() -> None:
    got = problems(
        GOOD.replace("[api]", '[api]\nbind = "localhost"').replace(
            '"0123456789abcdef0123"', '"short"'
        )
    )
    assert "api.bind: expected HOST:PORT, e.g. 127.0.0.1:8080 (got 'localhost')" in got
    assert "api.tokens: each API token must be at least 16 characters" in got
    assert not any("short" in p for p in got), "secrets must not be echoed"


def test_duplicate_switch_names() -> None:
    twice = GOOD + GOOD.split("[[switches]]", 1)[1].join(["[[switches]]", ""])
    # One line naming the entry and the first one (it was split in two, neither with a place).
    assert problems(twice) == ["switches[1].name: 'pbx1' is already used by switches[0]"]


def test_unknown_switch_kind() -> None:
    got = problems(GOOD.replace('kind = "asterisk"', 'kind = "yate"'))
    assert len(got) == 1 and got[0].startswith("switches[0]: ")
    assert "'asterisk', 'freeswitch'" in got[0]


def test_toml_syntax_error_has_line() -> None:
    got = problems("[api\ntokens=1")
    assert got[0].startswith("not valid TOML:") and "line 1" in got[0]


def test_env_overrides_storage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(GOOD)
    monkeypatch.setenv("ENGINE_PG_DSN", "postgresql://u:p@db/x")
    cfg = load_config(path)
    assert cfg.storage.postgres_dsn.get_secret_value() == "postgresql://u:p@db/x"


def test_check_config_cli_ok() -> None:
    result = run_cli("check-config", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_and_run_refuse_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('username = "engine"', "username = 5"))
    for args in (("check-config", str(bad)), ("run", "--config", str(bad))):
        result = run_cli(*args)
        assert result.returncode == 2
        assert (
            f"{bad}: switches[0].username: Input should be a valid string (got 5)" in result.stderr
        )


def test_storage_write_round_default_and_bounds() -> None:
    assert parse_config(GOOD, "cfg.toml").storage.write_round_s == 0.1
    cfg = parse_config(GOOD + "[storage]\nwrite_round_s = 0.25\n", "cfg.toml")
    assert cfg.storage.write_round_s == 0.25
    found = problems(GOOD + "[storage]\nwrite_round_s = 2.5\n")
    assert any("storage.write_round_s" in p for p in found), found


def test_ivr_messages_go_where_the_recordings_service_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # make run's config: the IVR `record` step writes into the one recordings switch
    # directory, so its messages are sealed and listed (docs/recordings.md "Voicemail").
    from engine.wiring.ivr import _ivr_recordings_dir

    monkeypatch.delenv("ENGINE_IVR_RECORDINGS_DIR", raising=False)
    cfg = load_config(SAMPLE)
    assert _ivr_recordings_dir(cfg) == "/var/spool/asterisk/monitor/engine"
    # The key wins; with no recordings switch the runtime's own default applies.
    with_key = GOOD.replace("[api]", '[engine]\nivr_recordings_dir = "/srv/vm"\n[api]')
    assert _ivr_recordings_dir(parse_config(with_key, "cfg.toml")) == "/srv/vm"
    assert _ivr_recordings_dir(parse_config(GOOD, "cfg.toml")) == ""
    bad = GOOD.replace("[api]", '[engine]\nivr_recordings_dir = "/srv/../etc"\n[api]')
    assert problems(bad) == ["engine.ivr_recordings_dir: must not contain '..' (got '/srv/../etc')"]


@pytest.mark.parametrize(
    ("days", "problem"),
    [
        (
            '["tsu"]',
            "days[0]: Input should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun' "
            "(got 'tsu')",
        ),
        (
            '["mon", "tsu"]',
            "days[1]: Input should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or "
            "'sun' (got 'tsu')",
        ),
        ("[]", "days: at least one day is needed, of mon, tue, wed, thu, fri, sat, sun"),
    ],
)
def test_a_misspelt_campaign_day_is_one_problem(days: str, problem: str) -> None:
    # The second problem was "Tuple should have at least 1 item after validation, not 0".
    campaign = (
        '[[campaigns]]\nname = "winter-sale"\n[campaigns.spec]\n'
        'trunk_group = "sandbox-outbound"\nqueue = "sales"\n'
        f"[campaigns.spec.window]\ndays = {days}\n"
    )
    got = problems(SAMPLE.read_text(encoding="utf-8") + "\n" + campaign)
    assert got == [f"campaigns[0].spec.window.{problem}"]
