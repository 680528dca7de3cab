"""``[storage]`` for Redis Sentinel and a PostgreSQL DSN naming several hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config, parse_config
from engine.core.errors import ConfigError
from engine.store.redis.client import RedisStore
from engine.store.redis.sentinel import SentinelSettings, sentinel_settings

GOOD = """
[api]
tokens = ["0123456789abcdef0123"]
[[switches]]
kind = "asterisk"
name = "pbx1"
username = "engine"
secret = "s3cret-value"
[storage]
"""


def problems(storage: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD + storage, "cfg.toml")
    return info.value.problems


def test_sentinels_give_the_store_its_settings() -> None:
    cfg = parse_config(
        GOOD
        + 'redis_sentinels = ["10.0.0.1:26379", "sentinel-b", "[::1]:26380"]\n'
        + 'redis_sentinel_master = "mymaster"\nredis_password = "pw"\nredis_db = 2\n',
        "cfg.toml",
    )
    settings = sentinel_settings(cfg.storage)
    assert settings == SentinelSettings(
        [("10.0.0.1", 26379), ("sentinel-b", 26379), ("::1", 26380)], "mymaster", "pw", None, 2
    )
    assert "pw" not in repr(settings)
    assert cfg.storage.wait_replicas == 1  # replicated: events wait for one replica


def test_one_server_needs_no_settings_and_waits_for_no_replica() -> None:
    cfg = parse_config(GOOD + 'redis_url = "redis://r:6379/0"\n', "cfg.toml")
    assert sentinel_settings(cfg.storage) is None
    assert cfg.storage.wait_replicas == 0


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        (
            'redis_sentinels = ["a:1"]\n',
            "storage: redis_sentinel_master: expected the master's name",
        ),
        (
            'redis_sentinels = ["a:99999"]\nredis_sentinel_master = "m"\n',
            "storage.redis_sentinels: 'a:99999': the port must be a number between 1 and 65535",
        ),
        (
            'redis_sentinels = ["a:1", "a:1"]\nredis_sentinel_master = "m"\n',
            "storage.redis_sentinels: each sentinel once",
        ),
        (
            'redis_sentinels = ["a:1"]\nredis_sentinel_master = "m"\nredis_url = "redis://x"\n',
            "storage: redis_url and redis_sentinels: give one",
        ),
        ('redis_sentinel_master = "m"\n', "storage: redis_sentinel_master without redis_sentinels"),
        (
            'redis_sentinels = ["a/b:1"]\nredis_sentinel_master = "m"\n',
            "storage.redis_sentinels: 'a/b:1': expected HOST:PORT",
        ),
    ],
)
def test_bad_sentinel_settings_are_named(storage: str, expected: str) -> None:
    got = problems(storage)
    assert len(got) == 1 and got[0].startswith(expected), got


def test_a_dsn_with_several_hosts_is_accepted() -> None:
    dsn = "postgresql://u:pw@h1:5432,h2:5433,[::1]:5434/db?target_session_attrs=read-write"
    cfg = parse_config(GOOD + f'postgres_dsn = "{dsn}"\n', "cfg.toml")
    assert cfg.storage.postgres_dsn.get_secret_value() == dsn


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("mysql://u@h/db", "expected a postgresql:// URL"),
        ("postgresql://u:pw@h1:5432,h2:x/db", "'h2:x': the port must be a number"),
        ("postgresql://u:pw@h1/db?target_session_attrs=rw", "target_session_attrs='rw'"),
    ],
)
def test_bad_dsns_are_named_without_their_password(dsn: str, expected: str) -> None:
    (got,) = problems(f'postgres_dsn = "{dsn}"\n')
    assert got.startswith("storage.postgres_dsn: ") and expected in got, got
    assert "pw" not in got


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(GOOD + 'redis_sentinels = ["a:1"]\nredis_sentinel_master = "m"\n')
    monkeypatch.setenv("ENGINE_REDIS_URL", "redis://one:6379/0")
    cfg = load_config(path)
    assert sentinel_settings(cfg.storage) is None  # the environment's one server wins
    assert cfg.storage.redis_url.get_secret_value() == "redis://one:6379/0"
    monkeypatch.setenv("ENGINE_PG_DSN", "postgresql://u:secretpw@h1:5432,h2:x/db")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "ENGINE_PG_DSN" in str(info.value) and "secretpw" not in str(info.value)


def test_store_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="sentinels"):
        SentinelSettings([], "m")
    with pytest.raises(ValueError, match="master"):
        SentinelSettings([("a", 1)], "")
    with pytest.raises(ValueError, match="not both"):
        RedisStore("redis://x", Path("."), sentinel=SentinelSettings([("a", 1)], "m"))
    store = RedisStore(None, Path("."), sentinel=SentinelSettings([("a", 1)], "m"))
    assert store.url == "sentinel master 'm' via a:1"  # for logs and errors; no password
