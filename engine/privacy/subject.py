"""Who a data-subject request is about, and how their number is found and replaced. Pure.

A number is stored in several spellings: contacts and attempts hold E.164 (``+14155550100``),
a CDR holds what was dialled or presented (``14155550100``, ``0014155550100``, a national
``02079460000``), a channel name or a dial string may hold it inside a longer text
(``sofia/gateway/gw1/+14155550100``). :func:`subject` lists those spellings once, from
``phonenumbers``; :meth:`Subject.scrub_text` replaces any of them that stands alone (not inside
a longer run of digits) by the keyed pseudonym, and :meth:`Subject.scrub_json` does it in every
string of a JSON value (CDR variables, stored webhook payloads).

The pseudonym is ``anon-`` and the first 128 bits of HMAC-SHA256(key, E.164) in hex: the same
number always gives the same pseudonym (an erased person's calls still count as one caller in
reports, and a second erase finds the rows the first one changed), and without the key nobody
can test a guessed number against it (a plain hash of a phone number is reversed by trying the
few billion numbers of a country).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers

PREFIX = "anon-"
KEY_LEN = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Spellings shorter than this are not looked for inside longer texts (an extension or a
# queue number could collide); they still match a whole column value.
MIN_SUBSTRING = 7


class PseudonymKeyError(ValueError):
    """The pseudonym key cannot be used; the message names the source, never the key."""


@dataclass(frozen=True, slots=True)
class PseudonymKey:
    key_id: str
    secret: bytes

    def __repr__(self) -> str:  # never the key bytes
        return f"PseudonymKey({self.key_id!r})"

    def pseudonym(self, e164: str) -> str:
        mac = hmac.new(self.secret, e164.encode("ascii"), hashlib.sha256)
        return PREFIX + mac.hexdigest()[:32]


def parse_key(text: str, where: str) -> PseudonymKey:
    """``<key id>:<base64 of 32 bytes>`` (the KEK files' format); ``#`` comments and blank
    lines skipped; exactly one key."""
    lines = [
        (n, raw.strip())
        for n, raw in enumerate(text.splitlines(), 1)
        if raw.strip() and not raw.strip().startswith("#")
    ]
    if len(lines) != 1:
        raise PseudonymKeyError(
            f"{where}: expected exactly one '<key id>:<base64 of 32 bytes>' line, "
            f"found {len(lines)}"
        )
    n, line = lines[0]
    kid, sep, b64 = line.partition(":")
    kid = kid.strip()
    if not sep or not _KEY_ID.match(kid):
        raise PseudonymKeyError(
            f"{where}:{n}: expected '<key id>:<base64 key>' (id: [A-Za-z0-9._-])"
        )
    try:
        secret = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise PseudonymKeyError(f"{where}:{n}: key {kid!r} is not valid base64") from err
    if len(secret) != KEY_LEN:
        raise PseudonymKeyError(
            f"{where}:{n}: key {kid!r} must be {KEY_LEN} bytes, not {len(secret)}"
        )
    return PseudonymKey(kid, secret)


def new_key_line(kid: str) -> str:
    if not _KEY_ID.match(kid):
        raise PseudonymKeyError(f"key id {kid!r}: expected 1-64 of [A-Za-z0-9._-]")
    return f"{kid}:{base64.b64encode(os.urandom(KEY_LEN)).decode()}"


def spellings(e164: str, home_region: str | None = None) -> tuple[str, ...]:
    """The ways ``e164`` is written in CDRs and dial strings, longest first, without repeats:
    E.164, without ``+``, with the ``00`` and ``011`` international prefixes; and, when the
    number belongs to ``home_region``'s country code (the engine's own country, where callers
    show up in national form), national with its trunk prefix (digits only) and the national
    significant number. A national spelling of another country's number would be a different
    number here (national digits repeat across countries), so it is not looked for."""
    number = phonenumbers.parse(e164, None)
    digits = e164.removeprefix("+")
    forms = {e164, digits, "00" + digits, "011" + digits}
    home = phonenumbers.country_code_for_region(home_region) if home_region else 0
    if home_region is None or number.country_code == home:
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        forms.add(re.sub(r"[^0-9]", "", national))
        forms.add(phonenumbers.national_significant_number(number))
    return tuple(sorted((f for f in forms if len(f) >= 4), key=lambda f: (-len(f), f)))


@dataclass(frozen=True, slots=True)
class Subject:
    """One person, by phone number: ``e164``, its ``forms`` (spellings) and ``pseudonym``."""

    e164: str
    forms: tuple[str, ...]
    pseudonym: str
    _pattern: re.Pattern[str]

    @property
    def match_values(self) -> list[str]:
        """Whole column values that mean this person: each spelling, and the pseudonym (rows
        an earlier erase already changed, so that a second erase finds them again)."""
        return [*self.forms, self.pseudonym]

    def is_subject(self, value: str | None) -> bool:
        return value is not None and (value in self.forms or value == self.pseudonym)

    def scrub_text(self, value: str) -> str:
        if value in self.forms:
            return self.pseudonym
        return self._pattern.sub(self.pseudonym, value)

    def scrub_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, Mapping):
            return {k: self.scrub_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_json(v) for v in value]
        return value


def subject(e164: str, key: PseudonymKey, home_region: str | None = None) -> Subject:
    """The person with number ``e164``; ``home_region``: see :func:`spellings` (None: every
    spelling)."""
    forms = spellings(e164, home_region)
    inner = [re.escape(f) for f in forms if len(f) >= MIN_SUBSTRING]
    # Not inside a longer run of digits: 4155550100 must not match in 14155550100123.
    pattern = re.compile(r"(?<![0-9])(?:" + "|".join(inner) + r")(?![0-9])")
    return Subject(e164, forms, key.pseudonym(e164), pattern)


# Columns of a CDR that may hold the number, and are rewritten by an erase.
CDR_TEXT = ("caller_id_num", "destination", "channel", "endpoint")


def scrub_cdr(row: Mapping[str, Any], who: Subject) -> dict[str, Any]:
    """The changes an erase makes to one CDR (``{}``: none). The caller id name is blanked
    when the caller id number was this person's: on an inbound call it is their name."""
    changes: dict[str, Any] = {}
    for column in CDR_TEXT:
        value = row.get(column)
        if isinstance(value, str):
            new = who.scrub_text(value)
            if new != value:
                changes[column] = new
    if who.is_subject(row.get("caller_id_num")) and row.get("caller_id_name"):
        changes["caller_id_name"] = ""
    variables = row.get("variables")
    if isinstance(variables, Mapping):
        new_vars = who.scrub_json(variables)
        if new_vars != dict(variables):
            changes["variables"] = new_vars
    return changes


def scrub_attempt(row: Mapping[str, Any], who: Subject) -> dict[str, Any]:
    """The changes an erase makes to one campaign attempt (``{}``: none)."""
    changes: dict[str, Any] = {}
    for column in ("phone", "dialed_number"):
        value = row.get(column)
        if isinstance(value, str):
            new = who.scrub_text(value)
            if new != value:
                changes[column] = new
    return changes
