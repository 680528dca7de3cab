"""An engineer's config mistakes (a walk through telephony-config/engine.toml): each one is
reported on one line that names the key path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config, parse_config
from engine.core.errors import ConfigError
from tests.engine_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "telephony-config" / "engine.toml").read_text(encoding="utf-8")

CAMPAIGN = """
[[campaigns]]
name = "winter"
[campaigns.spec]
trunk_group = "sandbox-outbound"
queue = "sales"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "engine.toml")
    return info.value.problems


def edited(old: str, new: str, text: str = SHIPPED) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_duplicate_campaign_is_worded_like_every_other_duplicate() -> None:
    got = problems(SHIPPED + CAMPAIGN + CAMPAIGN)
    assert got == ["campaigns[1].name: 'winter' is already used by campaigns[0]"]


def test_unknown_campaign_references_list_what_exists() -> None:
    text = SHIPPED + edited('queue = "sales"', 'queue = "salse"', CAMPAIGN)
    text = edited('trunk_group = "sandbox-outbound"\nqueue', 'trunk_group = "sandbox"\nqueue', text)
    assert problems(text) == [
        "campaigns[0].spec.queue: unknown queue 'salse' (queues: sales, tech)",
        "campaigns[0].spec.trunk_group: unknown trunk group 'sandbox' "
        "(trunk groups: sandbox-outbound)",
    ]


def test_unknown_switch_is_worded_alike_everywhere() -> None:
    text = edited('switch = "asterisk-1"\ntarget = "self-trunk"', 'switch = "pbx"\ntarget = "self"')
    assert problems(text) == ["trunks[2].switch: unknown switch 'pbx' (switches: asterisk-1)"]
    text = edited("[recordings.switches.asterisk-1]", "[recordings.switches.pbx2]")
    text = edited("[recordings.queues.sales]", "[recordings.queues.sals]", text)
    assert problems(text) == [
        "recordings.switches.pbx2: unknown switch 'pbx2' (switches: asterisk-1)",
        "recordings.queues.sals: unknown queue 'sals' (queues: sales, tech)",
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("host", "127.0.0.1:5038"),  # the port pasted into the host
        ("host", ""),
        ("host", "pbx 1.example"),
        ("agi_host", "agi://10.0.0.5"),
    ],
)
def test_switch_host_must_be_a_host_alone(key: str, value: str) -> None:
    old = f'{key} = "127.0.0.1"'
    (got,) = problems(edited(old, f"{key} = {value!r}".replace("'", '"')))
    assert got.startswith(f"switches[0].{key}: expected a host name or IP address alone")


@pytest.mark.parametrize("host", ["10.0.0.5", "pbx1.example.com", "::1", "localhost"])
def test_switch_host_accepts_names_and_addresses(host: str) -> None:
    cfg = parse_config(edited('host = "127.0.0.1"', f'host = "{host}"'), "engine.toml")
    assert cfg.switches[0].host == host


def test_redis_url_in_the_file_is_checked() -> None:
    (got,) = problems(edited('redis_url = ""', 'redis_url = "localhost:6379"'))
    assert got.startswith("storage.redis_url: expected a redis:// (or rediss://, unix://) URL")
    (got,) = problems(edited('redis_url = ""', 'redis_url = "redis://cache:port/0"'))
    assert got.startswith("storage.redis_url: ") and "port must be a number" in got
    assert "cache:port" in got  # host:port only; a password would stay hidden


def test_bad_redis_url_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(SHIPPED)
    monkeypatch.setenv("ENGINE_REDIS_URL", "localhost:6379")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == "ENGINE_REDIS_URL (environment)"
    assert info.value.problems[0].startswith("expected a redis://")
    monkeypatch.setenv("ENGINE_REDIS_URL", "rediss://:pw@cache1:6380/2")
    assert load_config(path).storage.redis_url.get_secret_value().endswith("cache1:6380/2")


def test_check_config_prints_one_line_per_problem_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(SHIPPED + CAMPAIGN + CAMPAIGN)
    run = run_cli("check-config", str(path))
    assert run.returncode == 2
    assert run.stderr.splitlines()[1:] == [
        f"  {path}: campaigns[1].name: 'winter' is already used by campaigns[0]"
    ]


def test_doctor_names_a_missing_key_file_and_ivr_dir(tmp_path: Path) -> None:
    from engine.doctor.probes import referenced_files
    from engine.doctor.verdicts import Status

    (tmp_path / "kek").write_text("k1:" + "00" * 32 + "\n")
    text = edited('default_policy = "on_demand"', 'default_policy = "on_demand"\nkek_file = "kek"')
    text = edited('ivr_dir = "../ivr"', 'ivr_dir = "ivrr"', text)
    text = edited(
        "idempotency_ttl_s", 'tls_cert = "c.pem"\ntls_key = "k.pem"\nidempotency_ttl_s', text
    )
    path = tmp_path / "engine.toml"
    path.write_text(text)
    got = {f.check: (f.status, f.message) for f in referenced_files(load_config(path))}
    assert got == {
        "api.tls_cert": (Status.FAIL, f"{tmp_path / 'c.pem'} does not exist"),
        "api.tls_key": (Status.FAIL, f"{tmp_path / 'k.pem'} does not exist"),
        "recordings.kek_file": (Status.OK, f"{tmp_path / 'kek'} is a readable file"),
        "engine.ivr_dir": (Status.WARN, f"{tmp_path / 'ivrr'} does not exist"),
    }


WINDOW = CAMPAIGN + "[campaigns.spec.window]\n"


@pytest.mark.parametrize("bad", ['"25:00"', '"9:00"', '"17:60"', "09:30:15"])
def test_an_impossible_window_time_says_what_a_time_looks_like(bad: str) -> None:
    (got,) = problems(SHIPPED + WINDOW + f"start = {bad}\n")
    assert got.startswith(
        'campaigns[0].spec.window.start: expected a 24-hour time "HH:MM", 00:00 to 23:59'
    )


def test_an_unquoted_toml_time_is_that_wall_clock_minute() -> None:
    cfg = parse_config(SHIPPED + WINDOW + "start = 08:30:00\nend = 21:00:00\n", "engine.toml")
    assert (cfg.campaigns[0].spec.window.start, cfg.campaigns[0].spec.window.end) == (
        "08:30",
        "21:00",
    )


def test_relaxing_a_skill_the_queue_does_not_require_names_the_skills() -> None:
    text = edited("relax_skills = { sales = 3 }", "relax_skills = { salse = 3 }")
    assert problems(text) == [
        "queues[0]: overflow[0].relax_skills.salse: unknown skill 'salse' (skills: sales); "
        "only a skill the queue requires can be relaxed"
    ]


async def test_a_bad_reload_names_the_file_and_keeps_the_running_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from engine.app import Engine

    path = tmp_path / "engine.toml"
    path.write_text(SHIPPED)
    engine = Engine(load_config(path), path)
    running = engine.config
    path.write_text(edited("[trunk_health]", "[trunk_health"))
    report = await engine.reload()
    (error,) = report["config"]["errors"]
    assert report["config"]["valid"] is False
    line = SHIPPED.splitlines().index("[trunk_health]") + 1
    assert error.startswith(f"{path}: not valid TOML: ") and f"(at line {line}," in error
    path.write_text(SHIPPED)
    monkeypatch.setenv("ENGINE_REDIS_URL", "cache1:6379")  # the environment, not the file
    report = await engine.reload()
    (error,) = report["config"]["errors"]
    assert error.startswith("ENGINE_REDIS_URL (environment): expected a redis://")
    assert engine.config is running


def test_a_single_bracket_header_for_a_list_says_double_brackets() -> None:
    (got,) = problems(edited("[[trunk_groups]]", "[trunk_groups]"))
    assert got == (
        "trunk_groups: expected a list of tables: write [[trunk_groups]] (double brackets) "
        "per entry"
    )
    (got,) = problems(
        edited("  [[queues.overflow]]\n  after_s = 120.0", "  [queues.overflow]\n  after_s = 120.0")
    )
    assert got.startswith(
        "queues[1].overflow: expected a list of tables: write [[queues.overflow]]"
    )
