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
import io
import json
import math
import re
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
# PostgreSQL stores no NUL character in text or jsonb: a row holding one is refused here, with
# its line, rather than failing its whole batch in the database (which read as a storage outage).
NUL = "\x00"


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class HeaderError(ValueError):
    """The CSV header cannot be used (no ``phone`` column, repeated or empty names)."""


# One valid row as the loader takes it: (line, phone, copy), where copy is the whole row already
# in COPY's text format (:func:`copy_row`), written by the parsing process so that the
# importer's process does not encode each row. The line and the phone are what the importer
# and the loader look at (lanes, the filter, the order).
ContactRecord = tuple[int, str, str]

# COPY's text format: a backslash, tab, newline or carriage return in a value is escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# The columns of copy_row, in order (loader.py COPYs them into contacts and its staging tables).
COPY_ROW_COLUMNS = ("phone", "tz", "priority", "fields", "source_line")


def copy_value(text: str) -> str:
    """``text`` as a value of COPY's text format."""
    # str.translate looks up every character (~7 µs a row for fields and tz); most values
    # have nothing to escape, and four `in` scans say so in a tenth of that.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def copy_row(line: int, phone: str, tz: str, priority: int, fields: str) -> str:
    """A row as a line of ``COPY ... (phone, tz, priority, fields, source_line) FROM STDIN``
    in text format, without its newline. The phone is E.164 and the numbers are integers:
    nothing to escape there."""
    return f"{phone}\t{copy_value(tz)}\t{priority}\t{copy_value(fields)}\t{line}"


class Contact(NamedTuple):
    """One valid row (a :data:`ContactRecord`, without its COPY text, with names)."""

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


def lane_of(phone: str, lanes: int) -> int:
    """Which of ``lanes`` loaders takes a contact: decided by its E.164 number alone (its last
    two digits), so every line of one number goes to the same loader, in file order, and the
    first line of a number is still the one kept when several loaders insert at once."""
    return int(phone[-2:]) % lanes


def split_lanes(contacts: Sequence[Contact], lanes: int) -> list[list[Contact]]:
    """``contacts`` cut into ``lanes`` lists by :func:`lane_of`, each in the order given."""
    if lanes <= 1:
        return [list(contacts)]
    out: list[list[Contact]] = [[] for _ in range(lanes)]
    for record in contacts:
        out[int(record[1][-2:]) % lanes].append(record)
    return out


@dataclass(slots=True)
class PackedChunk:
    """A :class:`ChunkResult` as a parsing process sends it back: the contacts as three columns
    (the :data:`ContactRecord`'s) per loader lane (:func:`split_lanes`, done here rather than in
    the importer's process).
    Pickling a list of NamedTuples costs ~4.6 µs a row (a Python call per object each way);
    columns of plain values cost ~1, and zip() turns them back into records."""

    lanes: list[tuple[tuple[Any, ...], ...]]
    rejects: list[Reject]
    rows: int

    @classmethod
    def of(cls, result: ChunkResult, lanes: int = 1) -> PackedChunk:
        """Writes each row's :func:`copy_row` here, in the parsing process."""
        columns: list[tuple[tuple[Any, ...], ...]] = []
        for part in split_lanes(result.contacts, lanes):
            columns.append(
                (
                    tuple(c.line for c in part),
                    tuple(c.phone for c in part),
                    tuple(copy_row(*c) for c in part),
                )
                if part
                else ()
            )
        return cls(columns, result.rejects, result.rows)

    def records(self, lane: int = 0) -> list[ContactRecord]:
        return list(zip(*self.lanes[lane], strict=True))


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


# One encoder for every row: json.dumps with options builds a new one per call.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# What that encoder does with a str (json's C function), for CSV rows: all their values are
# strings, so the object is built from pre-encoded keys (_Columns.fields_json).
_encode_str: Any = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.py_encode_basestring
)


def _custom_fields(row: Mapping[str, Any]) -> str:
    return _checked_fields({k: v for k, v in row.items() if k not in RESERVED})


def _checked_fields(custom: dict[str, Any]) -> str:
    if len(custom) > MAX_FIELDS:
        raise ValueError(f"expected at most {MAX_FIELDS} custom fields, got {len(custom)}")
    for key, value in custom.items():
        if NUL in key:
            raise ValueError(f"field {key!r}: expected a name without NUL (\\u0000) characters")
        if isinstance(value, dict | list):
            raise ValueError(f"field {key!r}: expected a string, number, boolean or null")
        if isinstance(value, float) and not math.isfinite(value):  # 1e999
            raise ValueError(f"field {key!r}: expected a finite number, got {value!r}")
        if isinstance(value, str):
            _check_text(key, value)
    return _dumps(custom)


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"field {name!r}: expected at most {MAX_FIELD_CHARS} characters")
    if NUL in value:
        raise ValueError(f"field {name!r}: expected text without NUL (\\u0000) characters")


def contact_from_row(
    row: Mapping[str, Any], line: int, region: str, *, need_tz: bool = True
) -> Contact:
    """One validated row, or ValueError naming the column and what was expected.

    ``need_tz`` False (DNC lists) skips the time zone: only the number matters there."""
    raw_phone = row.get(PHONE)
    if not need_tz:
        return Contact(line, _phone(raw_phone, region).e164, "", 0, "{}")
    phone = _phone(raw_phone, region)
    return Contact(
        line,
        phone.e164,
        _zone_for(phone, row.get(TZ)),
        _priority(row.get(PRIORITY)),
        _custom_fields(row),
    )


def _phone(raw_phone: Any, region: str) -> Phone:
    if raw_phone is None or raw_phone == "":
        raise ValueError("phone: expected a phone number, the column is empty")
    if not isinstance(raw_phone, str | int) or isinstance(raw_phone, bool):
        raise ValueError(f"phone: expected a string, got {type(raw_phone).__name__}")
    try:
        return parse_phone(str(raw_phone).strip(), region)
    except PhoneError as err:
        raise ValueError(f"phone {str(raw_phone)[:MAX_PHONE_CHARS]!r}: {err}") from None


def _zone_for(phone: Phone, given: Any) -> str:
    if given is not None and given != "":
        if not isinstance(given, str) or not _valid_zone(given.strip()):
            raise ValueError(
                f"tz: expected an IANA time zone name such as Europe/London, got {given!r}"
            )
        return given.strip()
    picked = pick_zone(phone.zones)
    if picked is None:
        raise ValueError(f"tz: no time zone is known for {phone.e164}; give one in a 'tz' column")
    return picked


class _Columns:
    """Where the reserved columns are in a CSV header, and the custom ones."""

    def __init__(self, header: Sequence[str]) -> None:
        self.width = len(header)
        self.phone = list(header).index(PHONE)
        self.tz = list(header).index(TZ) if TZ in header else -1
        self.priority = list(header).index(PRIORITY) if PRIORITY in header else -1
        self.custom = [(name, i) for i, name in enumerate(header) if name not in RESERVED]
        self._keys = [(_encode_str(name) + ":", i) for name, i in self.custom]

    def fields_json(self, values: list[str]) -> str:
        """_checked_fields of the custom columns, the same text, without the dict."""
        if len(self._keys) > MAX_FIELDS:
            raise ValueError(f"expected at most {MAX_FIELDS} custom fields, got {len(self._keys)}")
        parts: list[str] = []
        for key, i in self._keys:
            value = values[i]
            if len(value) > MAX_FIELD_CHARS or NUL in value:
                _check_text(self.custom[len(parts)][0], value)
            parts.append(key + _encode_str(value))
        return "{" + ",".join(parts) + "}"

    def contact(self, values: list[str], line: int, region: str, need_tz: bool) -> Contact:
        """contact_from_row for a CSV record, without building the row's dict."""
        phone = _phone(values[self.phone], region)
        if not need_tz:
            return Contact(line, phone.e164, "", 0, "{}")
        tz = _zone_for(phone, values[self.tz] if self.tz >= 0 else None)
        priority = _priority(values[self.priority]) if self.priority >= 0 else 0
        return Contact(
            line,
            phone.e164,
            tz,
            priority,
            self.fields_json(values),
        )


# The header record of a CSV list, exactly: comma-separated column names (letters, digits,
# _ . -; optionally in double quotes; spaces around them ignored), one of them ``phone``.
# The OpenAPI document states the same pattern for text/csv bodies (CSV_BODY_PATTERN), so what
# the document allows the server takes, and what it refuses the server refuses.
_NAME = r'[ \t]*(?:[A-Za-z_][A-Za-z0-9_.-]{0,63}|"[A-Za-z_][A-Za-z0-9_.-]{0,63}")[ \t]*'
_PHONE = r'[ \t]*(?:phone|"phone")[ \t]*'
CSV_HEADER = f"(?:{_NAME},)*{_PHONE}(?:,{_NAME})*"
CSV_BODY_PATTERN = f"^\\ufeff?{CSV_HEADER}(?:\\r?\\n[\\s\\S]*|\\r)?$"
_HEADER_RE = re.compile(f"{CSV_HEADER}\\r?")


def _header_hint(record: str) -> str:
    """What is most likely wrong with a header the grammar refused, for the message."""
    if "," not in record and ";" in record:
        return " (the separator is ',', not ';')"
    names = [n.strip(' \t"') for n in record.rstrip("\r").split(",")]
    if PHONE not in names and PHONE in (n.lower() for n in names):
        return " (column names are case-sensitive: the number's column is 'phone')"
    return ""


def csv_header(record: str) -> list[str]:
    """The column names from a CSV header record, checked. A name given twice is kept under
    ``name_2``, ``name_3``... (the first ``phone`` is the number), so no column is lost."""
    if not _HEADER_RE.fullmatch(record):
        raise HeaderError(
            "line 1: expected a header of comma-separated column names (letters, digits, "
            f"_ . -), one of them 'phone'; got {record[:200]!r}{_header_hint(record)}"
        )
    names = [n.strip().strip('"') for n in record.rstrip("\r").split(",")]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _csv_records(text: str, first_line: int) -> Iterator[tuple[int, str, list[str] | str]]:
    """(line, raw, values or the csv error) per CSV record of ``text``; a quoted field may
    span lines. One reader for the chunk; after a malformed record, a new one from the next
    line."""
    # The reader's own idea of a line (\n, \r\n or \r), so line_num indexes this list.
    lines = io.StringIO(text, newline="").readlines()
    start = 0
    while start < len(lines):
        reader = csv.reader(lines[start:], strict=True)
        done = 0
        try:
            for values in reader:
                raw = "".join(lines[start + done : start + reader.line_num])
                line, done = first_line + done, reader.line_num
                if len(values) <= 1 and not "".join(values).strip():
                    continue  # a blank line is not a record
                yield line, raw.rstrip("\r\n"), values
            return
        except csv.Error as err:
            end = max(reader.line_num, done + 1)
            raw = "".join(lines[start + done : start + end])
            yield first_line + done, raw.rstrip("\r\n"), str(err)
            first_line += end
            start += end


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _json_row(raw: str) -> Any:
    """A JSONL line's value, as JSON reads it: Python's NaN and Infinity are not JSON (and
    PostgreSQL's jsonb refuses them: such a row used to fail its whole batch there)."""
    try:
        return json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        # Python's parser recurses per level; a line of brackets used to crash the import.
        raise ValueError("arrays and objects nested too deeply") from None


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
        cols = _Columns(header)
        width = cols.width
        for line, raw, values in _csv_records(text, first_line):
            out.rows += 1
            if isinstance(values, str):
                out.rejects.append(Reject(line, f"not valid CSV: {values}", raw))
                continue
            if len(values) != width:
                out.rejects.append(
                    Reject(
                        line, f"expected {width} columns (as the header), got {len(values)}", raw
                    )
                )
                continue
            try:
                out.contacts.append(cols.contact(values, line, region, need_tz))
            except ValueError as err:
                out.rejects.append(Reject(line, str(err), raw))
        return out
    for offset, raw in enumerate(text.split("\n")):
        if not raw.strip():
            continue
        line = first_line + offset
        out.rows += 1
        try:
            row = _json_row(raw)
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
