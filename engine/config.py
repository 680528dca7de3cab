"""Loading and validating ``telephony-config/engine.toml``.

There is exactly one place that validates configuration: :func:`load_config`.
The daemon and ``engine check-config`` both call it. Every problem is reported
as ``<file>: <key.path>: <what was expected> (got <value>)`` and the daemon
refuses to start on any of them.

The file is assembled here, beside the composition root, because it spans
every layer: the engine's own sections (:mod:`engine.core.config`) and the
domains' (trunks and trunk groups, :mod:`engine.trunks.config`; agents, queues
and ``[acd]``, :mod:`engine.agents.config` and :mod:`engine.acd.config`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from engine.acd.config import AcdSection, QueueEntry
from engine.acd.config import reference_problems as acd_reference_problems
from engine.agents.config import AgentEntry
from engine.campaigns.model import CampaignConfig
from engine.core.config import (
    ApiConfig,
    AsteriskSwitch,
    CallsConfig,
    ClusterConfig,
    EngineSection,
    FastAgiConfig,
    FreeSwitchSwitch,
    LoggingConfig,
    SpeechConfig,
    StorageConfig,
    Switch,
    TrunkHealthConfig,
    TtsConfig,
    WebhooksConfig,
    check_postgres_dsn,
    check_redis_url,
    duplicate_problem,
    unknown_problem,
)
from engine.core.errors import ConfigError
from engine.privacy.config import PrivacySection
from engine.recordings.config import RecordingsSection
from engine.reports.config import ReportsSection
from engine.trunks.config import TrunkConfig, TrunkGroupConfig, reference_problems

# How the whole-file checks below join their problems into one ValueError, which
# validate_config splits again: one problem per line of `check-config`'s output.
_PROBLEMS_SEP = "\n"


class EngineConfig(BaseModel):
    # As every section: unknown keys are errors, the value is frozen.
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: EngineSection = EngineSection()
    # Several engines, one call centre: lease TTL and placement (docs/architecture.md).
    cluster: ClusterConfig = ClusterConfig()
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
    speech: SpeechConfig = SpeechConfig()
    calls: CallsConfig = CallsConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    # Agents, queues and the ACD's maps (docs/acd.md).
    agents: list[AgentEntry] = Field(default_factory=list)
    queues: list[QueueEntry] = Field(default_factory=list)
    acd: AcdSection = AcdSection()
    # Outbound campaigns created at start when missing (docs/campaigns.md); the API owns
    # them from then on.
    campaigns: list[CampaignConfig] = Field(default_factory=list)
    # Recording, encryption at rest, retention (docs/recordings.md).
    recordings: RecordingsSection = RecordingsSection()
    # Data-subject export and erase: the pseudonym key (docs/privacy.md).
    privacy: PrivacySection = PrivacySection()
    # KPI reports: short-abandon threshold, interval refresh (docs/reports.md).
    reports: ReportsSection = ReportsSection()

    # Filled by load_config, not by the file: where relative paths resolve.
    base_dir: str = Field(default=".", exclude=True)

    @model_validator(mode="after")
    def _unique_switch_names(self) -> EngineConfig:
        seen: dict[str, int] = {}
        problems = []
        for i, sw in enumerate(self.switches):
            if sw.name in seen:
                problems.append(duplicate_problem("switches", i, "name", sw.name, seen[sw.name]))
            seen.setdefault(sw.name, i)
        if problems:
            raise ValueError(_PROBLEMS_SEP.join(problems))
        return self

    @model_validator(mode="after")
    def _trunk_references(self) -> EngineConfig:
        # Members exist, names are unique, every trunk's switch is configured.
        problems = reference_problems(
            self.trunks, self.trunk_groups, [sw.name for sw in self.switches]
        )
        if problems:
            raise ValueError(_PROBLEMS_SEP.join(problems))
        return self

    @model_validator(mode="after")
    def _acd_references(self) -> EngineConfig:
        # Unique agent ids and queue names, endpoints on configured switches,
        # fallback queues and intents that name a queue.
        problems = acd_reference_problems(
            self.agents, self.queues, self.acd, [sw.name for sw in self.switches]
        )
        if problems:
            raise ValueError(_PROBLEMS_SEP.join(problems))
        return self

    @model_validator(mode="after")
    def _campaign_references(self) -> EngineConfig:
        problems = []
        queues = {q.name for q in self.queues}
        groups = {g.name for g in self.trunk_groups}
        seen: dict[str, int] = {}
        for i, c in enumerate(self.campaigns):
            if c.name in seen:
                problems.append(duplicate_problem("campaigns", i, "name", c.name, seen[c.name]))
            seen.setdefault(c.name, i)
            if c.spec.queue not in queues:
                problems.append(
                    unknown_problem(f"campaigns[{i}].spec.queue", "queue", c.spec.queue, queues)
                )
            if c.spec.trunk_group not in groups:
                where = f"campaigns[{i}].spec.trunk_group"
                problems.append(unknown_problem(where, "trunk group", c.spec.trunk_group, groups))
        if problems:
            raise ValueError(_PROBLEMS_SEP.join(problems))
        return self

    @model_validator(mode="after")
    def _recording_references(self) -> EngineConfig:
        problems = self.recordings.reference_problems(
            [sw.name for sw in self.switches], [q.name for q in self.queues]
        )
        if problems:
            raise ValueError(_PROBLEMS_SEP.join(problems))
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
    if error["type"] == "list_type" and isinstance(error.get("input"), dict):
        # `[trunks]` where `[[trunks]]` was meant: one table, not a list of them.
        header = re.sub(r"\[\d+\]", "", loc)
        return f"{loc}: expected a list of tables: write [[{header}]] (double brackets) per entry"
    got = error.get("input")
    # A DSN or URL may hold a password: never echoed.
    hidden = ("secret", "token", "password", "dsn", "redis_url")
    shown = "" if isinstance(got, dict | list) or any(h in loc for h in hidden) else got
    suffix = f" (got {shown!r})" if shown not in ("", None) else ""
    return f"{loc}: {msg}{suffix}"


def parse_config(text: str, path: str = "<string>") -> EngineConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, [f"not valid TOML: {err}"]) from err
    return validate_config(raw, path)


def validate_config(raw: dict[str, Any], path: str = "<string>") -> EngineConfig:
    """The checks of :func:`parse_config` on a file already read as TOML (``tomllib``'s
    tables); ``path`` names the file in errors and is where relative paths resolve."""
    try:
        cfg = EngineConfig.model_validate(raw)
    except ValidationError as err:
        problems: list[str] = []
        for e in err.errors():
            if not e["loc"] and e["type"] == "value_error":
                # Cross-reference checks already name their key path, one problem
                # per line (a problem's own text may hold "; ").
                msg = str(e["msg"]).removeprefix("Value error, ")
                problems.extend(msg.split(_PROBLEMS_SEP))
            else:
                problems.append(_describe(e))
        raise ConfigError(path, problems) from err
    base = str(Path(path).resolve().parent) if path != "<string>" else "."
    return cfg.model_copy(update={"base_dir": base})


def _from_environment(name: str, check: Callable[[str], str]) -> str:
    """The environment variable ``name`` (empty when unset), checked as the file's key is."""
    value = os.environ.get(name, "")
    if value:
        try:
            check(value)
        except ValueError as err:
            raise ConfigError(f"{name} (environment)", [str(err)]) from err
    return value


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
    if dsn := _from_environment("ENGINE_PG_DSN", check_postgres_dsn):
        overrides["postgres_dsn"] = SecretStr(dsn)
    if url := _from_environment("ENGINE_REDIS_URL", check_redis_url):
        # One server named by the environment wins over the file's sentinels.
        overrides.update(redis_url=SecretStr(url), redis_sentinels=[], redis_sentinel_master="")
    if overrides:
        cfg = cfg.model_copy(update={"storage": storage.model_copy(update=overrides)})
    return cfg
