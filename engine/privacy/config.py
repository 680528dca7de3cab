"""The ``[privacy]`` section of engine.toml (docs/privacy.md).

```toml
[privacy]
pseudonym_key_file = "/etc/telephony-engine/pseudonym-key"  # or pseudonym_key_env = "..."
default_region = "US"     # region of numbers written without +CC in export/erase requests
```

With neither key source the engine generates ``<data_dir>/pseudonym-key`` (mode 0600) at its
first start, as it does for the recording KEKs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from engine.campaigns.regions import Region


class PrivacySection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pseudonym_key_file: str = ""
    pseudonym_key_env: str = ""
    default_region: Region = "US"

    @model_validator(mode="after")
    def _one_source(self) -> PrivacySection:
        if self.pseudonym_key_file and self.pseudonym_key_env:
            raise ValueError("privacy: give pseudonym_key_file or pseudonym_key_env, not both")
        return self
