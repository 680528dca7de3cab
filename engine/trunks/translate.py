"""Outbound number translation per trunk group: E.164 in, what the carrier expects out. Pure.

A group's ``translations`` are tried in order and the first whose ``match`` finds the number
wins: its ``replace`` (a ``re`` template: ``\\1``, ``\\g<name>``) is the dialled string. No rule
matching leaves the E.164 number as it is. The result must be a safe dial string (digits, ``+``,
``*``, ``#``; 1 to 32 characters): the config check proves it for the template's own characters,
and :func:`translate` checks every result, so nothing else ever reaches a dial string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.trunks.model import GroupSpec

SAFE_DIAL = re.compile(r"^[0-9+*#]{1,32}$")
_LITERAL_SAFE = re.compile(r"^[0-9+*#]*$")
# Group references of a re template: \1..\99 and \g<name or number>.
_REFS = re.compile(r"\\(?:g<([^>]*)>|([0-9]{1,2}))")


class TranslationError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Translation:
    match: re.Pattern[str]
    replace: str


def compile_rule(match: str, replace: str) -> Translation:
    """A checked rule, or ValueError saying what is wrong with it."""
    try:
        pattern = re.compile(match)
    except re.error as err:
        raise ValueError(f"match {match!r} is not a valid regular expression: {err}") from None
    for name, number in _REFS.findall(replace):
        ref = name or number
        if ref.isdigit():
            if int(ref) > pattern.groups:
                raise ValueError(
                    f"replace {replace!r} refers to group {ref}, but match has "
                    f"{pattern.groups} group(s)"
                )
        elif ref not in pattern.groupindex:
            raise ValueError(f"replace {replace!r} refers to no group named {ref!r} in match")
    literal = _REFS.sub("", replace)
    if not _LITERAL_SAFE.match(literal):
        raise ValueError(
            f"replace {replace!r}: expected only digits, +, * and # besides group references "
            f"(got {literal!r})"
        )
    return Translation(pattern, replace)


def translate(group: GroupSpec, e164: str) -> str:
    """The string to dial for ``e164`` through ``group`` (first matching rule wins)."""
    for rule in group.translations:
        found = rule.match.search(e164)
        if found is None:
            continue
        out = found.expand(rule.replace)
        if not SAFE_DIAL.match(out):
            raise TranslationError(
                f"trunk group {group.name!r}: rule {rule.match.pattern!r} turned {e164!r} into "
                f"{out!r}; expected 1-32 of digits, +, * and #"
            )
        return out
    if not SAFE_DIAL.match(e164):
        raise TranslationError(f"expected an E.164 number, got {e164!r}")
    return e164
