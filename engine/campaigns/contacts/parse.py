"""Validate contact rows (CSV or JSONL) into :class:`Contact`. Pure: no I/O.

Columns (docs/contacts.md):

- ``phone`` (required): parsed with ``phonenumbers`` in the campaign's default region and
  stored as E.164. A number phonenumbers does not call valid is rejected.
- ``tz`` (optional): an IANA time zone name. Without it the zone is derived from the number
  (``phonenumbers.timezone``); when the number maps to several zones the first in
  phonenumbers' own (alphabetical) order is taken, so the choice is deterministic; when it maps
  to none (``Etc/Unknown``) the row is rejected: a contact whose local time is unknown can
  never be called inside its window.
- ``priority`` (optional): an integer in [-1000, 1000], higher first.
- every other column is a custom field (screen pop, IVR variables), kept as given.

The unit of work is a *chunk*: a piece of the file that starts and ends on record boundaries,
parsed by :func:`parse_chunk` (in a worker process for big files: engine/campaigns/contacts/
importer.py). Rejects carry the file's line number, a reason and the raw record.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from engine.campaigns.contacts.phones import Phone, PhoneError, TailCache
from engine.campaigns.windows import UnknownTimeZone, zone

PHONE = "phone"
TZ = "tz"
PRIORITY = "priority"
RESERVED = frozenset({PHONE, TZ, PRIORITY})
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
MAX_FIELDS = 64
MAX_FIELD_CHARS = 1024
MAX_PHONE_CHARS = 64


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class HeaderError(ValueError):
    """The CSV header cannot be used (no ``phone`` column, repeated or empty names)."""


class Contact(NamedTuple):
    """One valid row; a tuple, as the loader's COPY takes it and cheap to pickle back from a
    parsing process."""

    line: int
    phone: str  # E.164
    tz: str  # IANA
    priority: int
    fields_json: str  # the custom fields as a JSON object, ready for the jsonb column

    @property
    def fields(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.fields_json)
        return loaded


class Reject(NamedTuple):
    line: int
    reason: str
    raw: str


@dataclass(slots=True)
class ChunkResult:
    contacts: list[Contact] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rows: int = 0  # records read (good + rejected; blank lines are not records)


_PHONES = TailCache()  # one per process (each parsing worker has its own)


def parse_phone(text: str, region: str) -> Phone:
    """``text`` as E.164 with its zones, or :class:`PhoneError` saying what is wrong."""
    if len(text) > MAX_PHONE_CHARS:
        raise PhoneError(f"expected a phone number of at most {MAX_PHONE_CHARS} characters")
    return _PHONES.lookup(text, region)


def pick_zone(zones: Sequence[str]) -> str | None:
    """The zone of a number: the first of phonenumbers' list (documented), if any."""
    return zones[0] if zones else None


def _valid_zone(name: str) -> bool:
    try:
        zone(name)
    except UnknownTimeZone:
        return False
    return True


def _priority(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"priority: expected an integer, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"priority: expected an integer, got {value!r}") from None
    else:
        raise ValueError(f"priority: expected an integer, got {value!r}")
    if not PRIORITY_MIN <= number <= PRIORITY_MAX:
        raise ValueError(f"priority: expected {PRIORITY_MIN}..{PRIORITY_MAX}, got {number}")
    return number


def _custom_fields(row: Mapping[str, Any]) -> str:
    custom = {k: v for k, v in row.items() if k not in RESERVED}
    if len(custom) > MAX_FIELDS:
        raise ValueError(f"expected at most {MAX_FIELDS} custom fields, got {len(custom)}")
    for key, value in custom.items():
        if isinstance(value, dict | list):
            raise ValueError(f"field {key!r}: expected a string, number, boolean or null")
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            raise ValueError(f"field {key!r}: expected at most {MAX_FIELD_CHARS} characters")
    return json.dumps(custom, ensure_ascii=False, separators=(",", ":"))


def contact_from_row(
    row: Mapping[str, Any], line: int, region: str, *, need_tz: bool = True
) -> Contact:
    """One validated row, or ValueError naming the column and what was expected.

    ``need_tz`` False (DNC lists) skips the time zone: only the number matters there."""
    raw_phone = row.get(PHONE)
    if raw_phone is None or raw_phone == "":
        raise ValueError("phone: expected a phone number, the column is empty")
    if not isinstance(raw_phone, str | int) or isinstance(raw_phone, bool):
        raise ValueError(f"phone: expected a string, got {type(raw_phone).__name__}")
    try:
        phone = parse_phone(str(raw_phone).strip(), region)
    except PhoneError as err:
        raise ValueError(f"phone {str(raw_phone)[:MAX_PHONE_CHARS]!r}: {err}") from None
    if not need_tz:
        return Contact(line, phone.e164, "", 0, "{}")
    given = row.get(TZ)
    if given not in (None, ""):
        if not isinstance(given, str) or not _valid_zone(given.strip()):
            raise ValueError(
                f"tz: expected an IANA time zone name such as Europe/London, got {given!r}"
            )
        tz = given.strip()
    else:
        picked = pick_zone(phone.zones)
        if picked is None:
            raise ValueError(
                f"tz: no time zone is known for {phone.e164}; give one in a 'tz' column"
            )
        tz = picked
    return Contact(line, phone.e164, tz, _priority(row.get(PRIORITY)), _custom_fields(row))


def csv_header(record: str) -> list[str]:
    """The column names from a CSV header record, checked."""
    rows = list(csv.reader([record]))
    names = [n.strip() for n in rows[0]] if rows else []
    if PHONE not in names:
        raise HeaderError(f"line 1: expected a header with a 'phone' column, got {names!r}")
    if any(not n for n in names):
        raise HeaderError(f"line 1: expected a name for every column, got {names!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise HeaderError(f"line 1: expected each column once; repeated: {', '.join(repeated)}")
    return names


def _csv_records(text: str, first_line: int) -> Iterator[tuple[int, str, list[str]]]:
    """(line, raw, values) per CSV record of ``text``; a quoted field may span lines."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    line_no = first_line
    i = 0
    while i < len(lines):
        start = i
        # A record goes on while its quotes are unbalanced ("" inside a field counts 2).
        quotes = lines[i].count('"')
        while quotes % 2 and i + 1 < len(lines):
            i += 1
            quotes += lines[i].count('"')
        raw = "\n".join(lines[start : i + 1])
        i += 1
        begin, line_no = line_no, line_no + (i - start)
        if not raw.strip():
            continue
        try:
            values = next(csv.reader([raw.rstrip("\r") + "\n"], strict=True))
        except csv.Error as err:
            yield begin, raw, [f"\0{err}"]
            continue
        yield begin, raw, values


def parse_chunk(
    fmt: Format,
    text: str,
    first_line: int,
    region: str,
    header: Sequence[str] = (),
    *,
    need_tz: bool = True,
) -> ChunkResult:
    """Every record of ``text`` (whole records; its first is on line ``first_line``)."""
    out = ChunkResult()
    if fmt is Format.CSV:
        width = len(header)
        for line, raw, values in _csv_records(text, first_line):
            out.rows += 1
            if len(values) == 1 and values[0].startswith("\0"):
                out.rejects.append(Reject(line, f"not valid CSV: {values[0][1:]}", raw))
                continue
            if len(values) != width:
                out.rejects.append(
                    Reject(
                        line, f"expected {width} columns (as the header), got {len(values)}", raw
                    )
                )
                continue
            try:
                out.contacts.append(
                    contact_from_row(
                        dict(zip(header, values, strict=True)), line, region, need_tz=need_tz
                    )
                )
            except ValueError as err:
                out.rejects.append(Reject(line, str(err), raw))
        return out
    for offset, raw in enumerate(text.split("\n")):
        if not raw.strip():
            continue
        line = first_line + offset
        out.rows += 1
        try:
            row = json.loads(raw)
        except ValueError as err:
            out.rejects.append(Reject(line, f"not valid JSON: {err}", raw))
            continue
        if not isinstance(row, dict):
            out.rejects.append(Reject(line, "expected a JSON object per line", raw))
            continue
        try:
            out.contacts.append(contact_from_row(row, line, region, need_tz=need_tz))
        except ValueError as err:
            out.rejects.append(Reject(line, str(err), raw))
    return out
