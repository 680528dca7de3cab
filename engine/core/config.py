"""Loading and validating ``telephony-config/engine.toml``.

There is exactly one place that validates configuration: :func:`load_config`.
The daemon and ``engine check-config`` both call it. Every problem is reported
as ``<file>: <key.path>: <what was expected> (got <value>)`` and the daemon
refuses to start on any of them.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.core.errors import ConfigError
from engine.trunks.config import TrunkConfig, TrunkGroupConfig, reference_problems

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `actoin_timeout_s` must not be
    # silently ignored in a telephony config.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_bind(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
    port = int(port_text)
    if not 0 <= port < 65536:
        # 0 means "any free port" (tests); the bound port is logged at start.
        raise ValueError("port must be between 0 and 65535")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"expected an IP address or localhost as host, got {host!r}") from None
    return host, port


class Bind(_Strict):
    bind: str

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        _parse_bind(value)
        return value

    @property
    def host(self) -> str:
        return _parse_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return _parse_bind(self.bind)[1]


class ApiConfig(Bind):
    bind: str = "127.0.0.1:8080"
    tokens: list[SecretStr] = Field(min_length=1)
    idempotency_ttl_s: int = Field(default=86400, ge=60)

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        for token in value:
            if len(token.get_secret_value()) < 16:
                raise ValueError("each API token must be at least 16 characters")
        return value


class FastAgiConfig(Bind):
    bind: str = "127.0.0.1:4573"


class StorageConfig(_Strict):
    # Empty means "start the embedded server under engine.data_dir".
    postgres_dsn: SecretStr = SecretStr("")
    redis_url: SecretStr = SecretStr("")
    redis_prefix: str = "engine:"
    event_stream_maxlen: int = Field(default=100_000, ge=1000)


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class AsteriskSwitch(_Strict):
    kind: Literal["asterisk"]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    host: str = "127.0.0.1"
    port: int = Field(default=5038, gt=0, lt=65536)
    username: str
    secret: SecretStr
    action_timeout_s: float = Field(default=5.0, gt=0, le=120)
    ping_interval_s: float = Field(default=10.0, gt=0, le=300)
    # Where Asterisk reaches the engine's FastAGI server (set as channel vars).
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(default=4573, gt=0, lt=65536)


class FreeSwitchSwitch(_Strict):
    kind: Literal["freeswitch"]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    host: str = "127.0.0.1"
    port: int = Field(default=8021, gt=0, lt=65536)
    password: SecretStr
    action_timeout_s: float = Field(default=5.0, gt=0, le=120)
    heartbeat_timeout_s: float = Field(default=45.0, gt=0, le=600)
    # Where FreeSWITCH reaches the engine's outbound-socket server for IVR.
    outbound_bind: str = "127.0.0.1:8084"

    @field_validator("outbound_bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        _parse_bind(value)
        return value


Switch = Annotated[AsteriskSwitch | FreeSwitchSwitch, Field(discriminator="kind")]


class TtsConfig(_Strict):
    """Where IVR `say` prompts are rendered and how the switch names them.

    ``dir`` is the directory the engine writes into; ``prefix`` is how the
    switch names that directory in a prompt (relative to its sounds dir, or
    an absolute path in its own view of the file system). Empty ``dir`` means
    ENGINE_TTS_DIR or /var/lib/asterisk/sounds/engine-tts.
    """

    dir: str = ""
    prefix: str = ""
    espeak_binary: str = "espeak-ng"
    timeout_s: float = Field(default=15.0, gt=0, le=120)


class EngineSection(_Strict):
    instance: Annotated[str, Field(pattern=NAME_PATTERN)] = "engine-1"
    data_dir: str = "var"
    ivr_dir: str = "ivr"
    # Seconds between checks of ivr_dir for changed files (0 = only on SIGHUP
    # or POST /v1/admin/reload).
    ivr_watch_interval_s: float = Field(default=2.0, ge=0, le=3600)
    # SIGTERM: new originates get 503 "draining"; live calls go on for up to
    # this long, then the engine stops (SIGINT stops at once).
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=86400)


class CallsConfig(_Strict):
    """``[calls]``: live-call durability and maximum durations (docs/durability.md)."""

    # Registry entries of live calls expire unless refreshed; they must outlive
    # an engine restart, or a restarted engine cannot adopt its calls.
    registry_ttl_s: int = Field(default=3600, ge=60, le=7 * 86400)
    registry_refresh_s: float = Field(default=30.0, ge=1, le=3600)
    # An originate whose reply was lost: how long the engine keeps asking the
    # switch for that exact channel before it decides the call never existed.
    unknown_outcome_window_s: float = Field(default=45.0, ge=1, le=600)
    # The sweeper: calls that overstay are hung up (then ended as interrupted
    # if the switch never confirms). 0 disables a limit.
    max_setup_s: float = Field(default=120.0, ge=0)
    max_ring_s: float = Field(default=300.0, ge=0)
    max_call_s: float = Field(default=14400.0, ge=0)
    sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # Storage timeouts: every PostgreSQL and Redis call is bounded.
    storage_timeout_s: float = Field(default=5.0, gt=0, le=120)


class TrunkHealthConfig(_Strict):
    """``[trunk_health]``: how the engine refreshes trunk reachability.

    Asterisk sends PJSIP ContactStatus only when a contact *changes*, so a trunk
    that was already unreachable when the engine connected (or a change lost
    while the link was down) would never be reported. The engine therefore
    also polls (AMI ``PJSIPShowEndpoints``) at link-up and every
    ``poll_interval_s``. FreeSWITCH reports gateways at every resync.
    """

    poll_interval_s: float = Field(default=15.0, ge=0.5, le=3600)


class EngineConfig(_Strict):
    engine: EngineSection = EngineSection()
    api: ApiConfig
    fastagi: FastAgiConfig = FastAgiConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    switches: list[Switch] = Field(min_length=1)
    # SIP trunks and trunk groups (docs/trunks.md, telephony-config/trunks.example.toml).
    trunks: list[TrunkConfig] = Field(default_factory=list)
    trunk_groups: list[TrunkGroupConfig] = Field(default_factory=list)
    trunk_health: TrunkHealthConfig = TrunkHealthConfig()
    tts: TtsConfig = TtsConfig()
    calls: CallsConfig = CallsConfig()

    # Filled by load_config, not by the file: where relative paths resolve.
    base_dir: str = Field(default=".", exclude=True)

    @model_validator(mode="after")
    def _unique_switch_names(self) -> EngineConfig:
        seen: set[str] = set()
        for sw in self.switches:
            if sw.name in seen:
                raise ValueError(f"switch names must be unique; {sw.name!r} appears twice")
            seen.add(sw.name)
        return self

    @model_validator(mode="after")
    def _trunk_references(self) -> EngineConfig:
        # Members exist, names are unique, every trunk's switch is configured.
        problems = reference_problems(
            self.trunks, self.trunk_groups, [sw.name for sw in self.switches]
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def switch(self, name: str) -> AsteriskSwitch | FreeSwitchSwitch | None:
        return next((s for s in self.switches if s.name == name), None)

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("asterisk", "freeswitch") and out.endswith("]"):
            # pydantic adds the discriminator tag to the path; the user never wrote it.
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(error: Any) -> str:
    loc = _loc(tuple(error["loc"]))
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling; see telephony-config/engine.toml)"
    if error["type"] == "missing":
        return f"{loc}: required key is missing"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or "secret" in loc or "token" in loc else got
    suffix = f" (got {shown!r})" if shown not in ("", None) else ""
    return f"{loc}: {msg}{suffix}"


def parse_config(text: str, path: str = "<string>") -> EngineConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, [f"not valid TOML: {err}"]) from err
    try:
        cfg = EngineConfig.model_validate(raw)
    except ValidationError as err:
        problems: list[str] = []
        for e in err.errors():
            if not e["loc"] and e["type"] == "value_error":
                # Cross-reference checks (trunks) already name their key path,
                # one problem per "; "-separated part.
                msg = str(e["msg"]).removeprefix("Value error, ")
                problems.extend(msg.split("; "))
            else:
                problems.append(_describe(e))
        raise ConfigError(path, problems) from err
    base = str(Path(path).resolve().parent) if path != "<string>" else "."
    return cfg.model_copy(update={"base_dir": base})


def load_config(path: str | os.PathLike[str]) -> EngineConfig:
    """Read, validate and return the config; environment overrides apply.

    ``ENGINE_PG_DSN`` and ``ENGINE_REDIS_URL`` override the storage section, so
    one config file serves a laptop (embedded) and CI (real servers).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(p), [f"cannot read file: {err.strerror}"]) from err
    cfg = parse_config(text, str(p))
    storage = cfg.storage
    overrides: dict[str, Any] = {}
    if dsn := os.environ.get("ENGINE_PG_DSN"):
        overrides["postgres_dsn"] = SecretStr(dsn)
    if url := os.environ.get("ENGINE_REDIS_URL"):
        overrides["redis_url"] = SecretStr(url)
    if overrides:
        cfg = cfg.model_copy(update={"storage": storage.model_copy(update=overrides)})
    return cfg
