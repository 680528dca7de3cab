"""The originate command, as the API hands it to the calls service."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.calls.model import then_to_dict
from engine.pbx.base import Then


@dataclass(frozen=True, slots=True)
class OriginateCommand:
    to: str
    then: Then
    switch: str | None = None
    trunk: str | None = None
    endpoint: str | None = None
    caller_id_num: str = ""
    caller_id_name: str = ""
    timeout_s: float = 30.0
    variables: Mapping[str, str] = field(default_factory=dict)
    trunk_group: str | None = None
    # Chosen by the caller (the campaign runner writes it into its attempt row
    # before the originate); a fresh id when None.
    call_id: str | None = None

    def fingerprint(self) -> str:
        body = {
            "to": self.to,
            "then": then_to_dict(self.then),
            "switch": self.switch,
            "trunk": self.trunk,
            "endpoint": self.endpoint,
            "group": self.trunk_group,
            "cid": [self.caller_id_num, self.caller_id_name],
            "timeout": self.timeout_s,
            "vars": dict(sorted(self.variables.items())),
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
