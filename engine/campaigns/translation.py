"""The number a campaign dials: the contact's E.164 turned into what the trunk group's carrier
expects, by the group's translation rules (``[[trunk_groups]] translations``, docs/trunks.md)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

_SAFE = re.compile(r"^\+?[0-9*#]{1,32}$")


def translator(groups: Sequence[Any]) -> Callable[[str, str], str]:
    rules: dict[str, list[tuple[re.Pattern[str], str]]] = {}
    for group in groups:
        compiled = []
        for rule in getattr(group, "translations", ()) or ():
            compiled.append((re.compile(rule.match), rule.replace))
        rules[group.name] = compiled

    def translate(group: str, e164: str) -> str:
        for pattern, replacement in rules.get(group, ()):
            if pattern.search(e164):
                out = pattern.sub(replacement, e164, count=1)
                break
        else:
            out = e164
        if not _SAFE.match(out):
            # Config validation refuses such rules; this is the net before a dial string.
            raise ValueError(f"translated number {out!r} is not a safe dial string")
        return out

    return translate
