"""Row validation: phone to E.164, time zone given or derived, priority, custom fields, and
rejects that name the line and what was expected."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from engine.campaigns.contacts.parse import (
    Format,
    HeaderError,
    contact_from_row,
    csv_header,
    parse_chunk,
)
from engine.campaigns.model import CallingWindow
from engine.campaigns.windows import open_timezones

HEADER = ["phone", "tz", "priority", "name", "account"]


def test_valid_row_in_national_form_becomes_e164_with_derived_zone() -> None:
    c = contact_from_row({"phone": "(212) 555-0199", "name": "Ann", "account": "A-1"}, 7, "US")
    assert (c.line, c.phone, c.tz, c.priority) == (7, "+12125550199", "America/New_York", 0)
    assert c.fields == {"name": "Ann", "account": "A-1"}


def test_the_default_region_decides_national_numbers() -> None:
    assert contact_from_row({"phone": "020 7946 0123"}, 2, "GB").phone == "+442079460123"
    with pytest.raises(ValueError, match="phone '020 7946 0123': not a valid number"):
        contact_from_row({"phone": "020 7946 0123"}, 2, "US")


def test_given_zone_wins_and_must_be_iana() -> None:
    row = {"phone": "+14155550100", "tz": "America/New_York"}
    assert contact_from_row(row, 2, "US").tz == "America/New_York"
    with pytest.raises(ValueError, match="tz: expected an IANA time zone name"):
        contact_from_row({**row, "tz": "Mars/Olympus"}, 2, "US")


def test_several_zones_take_phonenumbers_first_and_none_is_a_reject() -> None:
    # A UK mobile is not geographic: +44's zones, of which Guernsey comes first (same rules).
    assert contact_from_row({"phone": "+447911123456"}, 2, "US").tz == "Europe/Guernsey"
    # A US toll-free number maps to every NANP zone: the first (alphabetical) is taken.
    assert contact_from_row({"phone": "+1 800 234 5678"}, 2, "US").tz == "America/Adak"
    # A non-geographic global number has no zone at all.
    with pytest.raises(ValueError, match="tz: no time zone is known for \\+80012345678"):
        contact_from_row({"phone": "+80012345678"}, 2, "US")
    assert contact_from_row({"phone": "+80012345678", "tz": "UTC"}, 2, "US").tz == "UTC"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", 0), ("5", 5), (" -3 ", -3), (1000, 1000)],
)
def test_priority(value: object, expected: int) -> None:
    assert contact_from_row({"phone": "+14155550100", "priority": value}, 2, "US").priority == (
        expected
    )


@pytest.mark.parametrize("value", ["high", "1.5", 1001, True])
def test_bad_priority_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="priority: expected"):
        contact_from_row({"phone": "+14155550100", "priority": value}, 2, "US")


def test_nested_custom_fields_are_rejected() -> None:
    with pytest.raises(ValueError, match="field 'address': expected a string, number"):
        contact_from_row({"phone": "+14155550100", "address": {"city": "x"}}, 2, "US")


def test_csv_chunk_rejects_name_the_line_and_keep_the_raw_row() -> None:
    text = (
        "+14155550100,,,Ann,A-1\n"
        "12345,,,Bad,A-2\n"
        "\n"
        '+14155550101,,,"Lee, ""Bo""\nsecond line",A-3\n'
        "+14155550102,,,too,few,columns,here\n"
        "+14155550103,Nowhere/Land,,Zed,A-5\n"
    )
    out = parse_chunk(Format.CSV, text, 2, "US", HEADER)
    assert out.rows == 5  # the blank line is not a record
    assert [c.line for c in out.contacts] == [2, 5]
    assert json.loads(out.contacts[1].fields_json)["name"] == 'Lee, "Bo"\nsecond line'
    assert [(r.line, r.reason.split(":")[0]) for r in out.rejects] == [
        (3, "phone '12345'"),
        (7, "expected 5 columns (as the header), got 7"),
        (8, "tz"),
    ]
    assert out.rejects[0].raw == "12345,,,Bad,A-2"


def test_jsonl_chunk() -> None:
    text = (
        '{"phone": "+447911123456", "name": "Ann", "vip": true, "balance": 12.5}\n'
        "[1, 2]\n"
        "{not json\n"
        "\n"
        '{"phone": 14155550100}\n'
    )
    out = parse_chunk(Format.JSONL, text, 10, "US", [])
    assert [(c.line, c.phone) for c in out.contacts] == [
        (10, "+447911123456"),
        (14, "+14155550100"),
    ]
    assert out.contacts[0].fields == {"name": "Ann", "vip": True, "balance": 12.5}
    assert [(r.line, r.reason[:20]) for r in out.rejects] == [
        (11, "expected a JSON obje"),
        (12, "not valid JSON: Expe"),
    ]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("name,account", "one of them 'phone'"),
        ("phone,,name", "comma-separated column names"),
        ("Phone,name", "one of them 'phone'"),
        ('"phone', "comma-separated column names"),
        # The message says what is most likely wrong with a CRM's export.
        (' "Phone" , Name ', "column names are case-sensitive: the number's column is 'phone'"),
        ("phone;name;account", "the separator is ',', not ';'"),
    ],
)
def test_bad_headers(record: str, message: str) -> None:
    with pytest.raises(HeaderError, match=message):
        csv_header(record)


def test_repeated_columns_are_kept_under_new_names() -> None:
    assert csv_header(' "phone" ,name,name,phone') == ["phone", "name", "name_2", "phone_2"]


def test_the_documented_body_pattern_is_the_servers_header_rule() -> None:
    import re

    from engine.api.openapi import openapi_document
    from engine.campaigns.contacts.parse import CSV_BODY_PATTERN

    doc = openapi_document()
    body = doc["paths"]["/v1/campaigns/{id}/contacts"]["post"]["requestBody"]["content"]
    assert body["text/csv"]["schema"]["pattern"] == CSV_BODY_PATTERN
    pattern = re.compile(CSV_BODY_PATTERN)
    for record in ("phone", "tz,phone,name", ' "phone" , a.b-c'):
        assert pattern.match(record + "\n+14155550100\n") and csv_header(record)
    for record in ("", "name", "phone,", "phone;name"):
        assert not pattern.match(record + "\n")


def test_derived_zones_drive_the_calling_window() -> None:
    """The zones the parser derives are the ones windows.open_timezones judges: at 14:00 UTC on
    a Wednesday New York (10:00) and London (15:00) are open, Los Angeles (07:00) is not, and
    Shanghai (22:00) is not."""
    rows = [
        {"phone": "+12125550199"},
        {"phone": "+14155550100"},
        {"phone": "+442079460123"},
        {"phone": "+8613800138000"},
    ]
    zones = [contact_from_row(r, 2, "US").tz for r in rows]
    assert zones == ["America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Shanghai"]
    now = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    assert open_timezones(CallingWindow(), zones, now) == ["America/New_York", "Europe/London"]


def test_malformed_csv_record_is_rejected_and_reading_goes_on() -> None:
    text = '+14155550100,,,Ann,A-1\n+14155550101,,,"Bo"x,A-2\n+14155550102,,,Cy,A-3\n'
    out = parse_chunk(Format.CSV, text, 2, "US", HEADER)
    assert [c.line for c in out.contacts] == [2, 4]
    ((reject),) = out.rejects
    assert (reject.line, reject.raw) == (3, '+14155550101,,,"Bo"x,A-2')
    assert reject.reason.startswith("not valid CSV: ")


def test_csv_fields_are_the_json_the_generic_path_writes() -> None:
    from engine.campaigns.contacts.parse import MAX_FIELD_CHARS, _checked_fields, _Columns

    cols = _Columns(["phone", 'naïve "key"', "tz", "notes", "x"])
    for values in (
        ["+1", 'a "quoted", value', "", "line\nbreak\t\x01 and \u2028 é 漢字 \\", ""],
        ["+1", "", "", "", "z" * MAX_FIELD_CHARS],
    ):
        expected = _checked_fields({name: values[i] for name, i in cols.custom})
        assert cols.fields_json(values) == expected
        assert json.loads(cols.fields_json(values)) == {n: values[i] for n, i in cols.custom}
    with pytest.raises(ValueError, match="field 'x': expected at most 1024 characters"):
        cols.fields_json(["+1", "", "", "", "z" * (MAX_FIELD_CHARS + 1)])


def test_a_nul_character_is_a_reject_naming_the_field() -> None:
    # PostgreSQL stores no NUL in text or jsonb: such a row used to reach the database and fail
    # its whole batch, which the API answered as 503 storage-unavailable (a retry failed again).
    csv_out = parse_chunk(
        Format.CSV, "+14155550100,,,A\x00n,A-1\n+14155550101,,,Bo,A-2\n", 2, "US", HEADER
    )
    assert [c.line for c in csv_out.contacts] == [3]
    assert [(r.line, r.reason) for r in csv_out.rejects] == [
        (2, "field 'name': expected text without NUL (\\u0000) characters")
    ]
    jsonl = (
        '{"phone": "+14155550100", "name": "A\\u0000n"}\n'
        '{"phone": "+14155550101", "k\\u0000": 1}\n'
        '{"phone": "+14155550102", "name": "Cy"}\n'
    )
    out = parse_chunk(Format.JSONL, jsonl, 1, "US")
    assert [c.line for c in out.contacts] == [3]
    assert [(r.line, r.reason) for r in out.rejects] == [
        (1, "field 'name': expected text without NUL (\\u0000) characters"),
        (2, "field 'k\\x00': expected a name without NUL (\\u0000) characters"),
    ]


def test_jsonl_values_postgresql_cannot_store_are_rejects() -> None:
    # NaN, Infinity and 1e999 reached jsonb and failed the batch (a 503); a line of brackets
    # nested past Python's recursion limit raised RecursionError out of the parsing process.
    lines = [
        '{"phone": "+14155550100", "score": NaN}',
        '{"phone": "+14155550101", "score": -Infinity}',
        '{"phone": "+14155550102", "score": 1e999}',
        '{"phone": "+14155550103", "x": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"phone": "+14155550104", "score": 1.5}',
    ]
    out = parse_chunk(Format.JSONL, "\n".join(lines) + "\n", 1, "US")
    assert [c.line for c in out.contacts] == [5]
    assert [(r.line, r.reason) for r in out.rejects] == [
        (1, "not valid JSON: NaN is not a JSON value"),
        (2, "not valid JSON: -Infinity is not a JSON value"),
        (3, "field 'score': expected a finite number, got inf"),
        (4, "not valid JSON: arrays and objects nested too deeply"),
    ]
