"""The ``[recordings]`` section of engine.toml (docs/recordings.md).

```toml
[recordings]
store_dir = "var/recordings"          # encrypted files (engine's own disk)
kek_file = "/etc/telephony-engine/recording-keks"   # or kek_env = "ENGINE_RECORDING_KEKS"
default_policy = "on_demand"          # always | on_demand | never
retention_days = 365                  # 0 = keep until deleted

[recordings.switches.pbx1]            # path mapping: where the switch writes / engine reads
switch_dir = "/var/spool/asterisk/monitor/engine"
engine_dir = "/mnt/pbx1-recordings"

[recordings.queues.sales]             # per queue (and [recordings.campaigns.<name>])
policy = "always"
pause = "silence"                     # silence | gap
channels = "dual"                     # mono | dual
consent_prompt = "recording-consent"  # played to the caller before recording starts
retention_days = 90
```
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.core.config import unknown_problem
from engine.recordings.model import Channels, PauseMode, Policy, RecordingRules

_SAFE_DIR = r"^/[A-Za-z0-9_./-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RulesEntry(_Strict):
    """Recording rules of one queue or campaign; unset keys fall back to the section's."""

    policy: Policy | None = None
    pause: PauseMode | None = None
    channels: Channels | None = None
    consent_prompt: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]{0,200}$")] | None = None
    retention_days: Annotated[int, Field(ge=0, le=36500)] | None = None


class SwitchPaths(_Strict):
    """One switch's recording directory as the switch sees it and as the engine sees it
    (an NFS mount, a shared volume, the Asterisk sandbox's chroot...)."""

    switch_dir: Annotated[str, Field(pattern=_SAFE_DIR)]
    engine_dir: str

    @field_validator("switch_dir")
    @classmethod
    def _no_dots(cls, value: str) -> str:
        if ".." in PurePosixPath(value).parts:
            raise ValueError("must not contain '..'")
        return value


class RecordingsSection(_Strict):
    enabled: bool = True
    store_dir: str = "var/recordings"
    kek_file: str = ""
    kek_env: str = ""
    frame_size: int = Field(default=64 * 1024, ge=4096, le=16 * 1024 * 1024)
    default_policy: Policy = "on_demand"
    pause: PauseMode = "silence"
    channels: Channels = "mono"
    consent_prompt: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]{0,200}$")] = ""
    retention_days: int = Field(default=365, ge=0, le=36500)
    sweep_interval_s: float = Field(default=3600.0, gt=0)
    switches: dict[str, SwitchPaths] = Field(default_factory=dict)
    queues: dict[str, RulesEntry] = Field(default_factory=dict)
    campaigns: dict[str, RulesEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_when_encrypting(self) -> RecordingsSection:
        if self.kek_file and self.kek_env:
            raise ValueError("recordings: give kek_file or kek_env, not both")
        return self

    def defaults(self) -> RecordingRules:
        return RecordingRules(
            policy=self.default_policy,
            pause=self.pause,
            channels=self.channels,
            consent_prompt=self.consent_prompt,
            retention_days=self.retention_days,
        )

    def rules(self, *, queue: str | None, campaign: str | None) -> RecordingRules:
        """The rules of a call: the campaign's over the queue's over the section's."""
        rules = self.defaults()
        for entry in (self.queues.get(queue or ""), self.campaigns.get(campaign or "")):
            if entry is None:
                continue
            rules = RecordingRules(
                policy=entry.policy or rules.policy,
                pause=entry.pause or rules.pause,
                channels=entry.channels or rules.channels,
                consent_prompt=(
                    entry.consent_prompt
                    if entry.consent_prompt is not None
                    else rules.consent_prompt
                ),
                retention_days=(
                    entry.retention_days
                    if entry.retention_days is not None
                    else rules.retention_days
                ),
            )
        return rules

    def reference_problems(self, switches: list[str], queues: list[str]) -> list[str]:
        out = []
        for name in self.switches:
            if name not in switches:
                out.append(unknown_problem(f"recordings.switches.{name}", "switch", name, switches))
        for name in self.queues:
            if name not in queues:
                out.append(unknown_problem(f"recordings.queues.{name}", "queue", name, queues))
        return out
