"""The pure parts of data-subject requests (engine/privacy): spellings of a number, the keyed
pseudonym, rewriting CDRs and attempts, the key file, the streamed zip, file removal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.privacy.config import PrivacySection
from engine.privacy.keys import _generate, pseudonym_key
from engine.privacy.service import remove_files
from engine.privacy.store import StoredRecording
from engine.privacy.subject import (
    PseudonymKey,
    PseudonymKeyError,
    parse_key,
    scrub_attempt,
    scrub_cdr,
    spellings,
    subject,
)
from engine.privacy.zipstream import ZipStream

KEY = PseudonymKey("k1", bytes(range(32)))
US = "+14155550123"


def test_spellings_of_a_us_and_a_uk_number() -> None:
    assert set(spellings(US)) == {
        "+14155550123",
        "14155550123",
        "0014155550123",
        "01114155550123",
        "4155550123",
    }
    uk = spellings("+442079460000")
    # national with its trunk prefix, and the national significant number
    assert {"02079460000", "2079460000", "442079460000", "00442079460000"} <= set(uk)
    assert list(uk) == sorted(uk, key=lambda f: (-len(f), f))  # longest first
    # national spellings only for the home country's numbers: 2079460000 dialled in the US
    # is another number
    assert set(spellings("+442079460000", "US")) == {
        "+442079460000",
        "442079460000",
        "00442079460000",
        "011442079460000",
    }
    assert "02079460000" in spellings("+442079460000", "GB")
    assert "4155550123" in spellings(US, "CA")  # one country code, +1, for the NANP


def test_pseudonym_is_the_documented_keyed_hmac() -> None:
    who = subject(US, KEY)
    expected = hmac.new(bytes(range(32)), US.encode(), hashlib.sha256).hexdigest()[:32]
    assert who.pseudonym == "anon-" + expected
    assert subject(US, KEY).pseudonym == who.pseudonym  # stable
    other_key = PseudonymKey("k2", bytes(32))
    assert subject(US, other_key).pseudonym != who.pseudonym
    assert subject("+14155550124", KEY).pseudonym != who.pseudonym


def test_scrub_text_replaces_the_number_standing_alone_only() -> None:
    who = subject(US, KEY)
    p = who.pseudonym
    assert who.scrub_text("4155550123") == p  # a whole value, any spelling
    assert who.scrub_text("sofia/gateway/gw1/+14155550123") == f"sofia/gateway/gw1/{p}"
    assert who.scrub_text("PJSIP/0014155550123@carrier") == f"PJSIP/{p}@carrier"
    assert who.scrub_text("9#14155550123") == f"9#{p}"
    # inside a longer run of digits it is another number
    assert who.scrub_text("41555501234") == "41555501234"
    assert who.scrub_text("24155550123") == "24155550123"
    assert who.scrub_text("+14155550124") == "+14155550124"
    assert who.scrub_text(p) == p


def test_scrub_cdr_inbound_blanks_the_callers_name_and_is_idempotent() -> None:
    who = subject(US, KEY)
    row = {
        "caller_id_num": "4155550123",
        "caller_id_name": "Ada Lovelace",
        "destination": "100",
        "channel": "PJSIP/carrier-00000001",
        "endpoint": None,
        "variables": {"CALLER": "+14155550123", "NOTE": "call 14155550123 back", "Q": "sales"},
    }
    changes = scrub_cdr(row, who)
    assert changes == {
        "caller_id_num": who.pseudonym,
        "caller_id_name": "",
        "variables": {
            "CALLER": who.pseudonym,
            "NOTE": f"call {who.pseudonym} back",
            "Q": "sales",
        },
    }
    assert scrub_cdr({**row, **changes}, who) == {}


def test_scrub_cdr_outbound_keeps_our_caller_id() -> None:
    who = subject(US, KEY)
    row: dict[str, Any] = {
        "caller_id_num": "+18005550000",
        "caller_id_name": "Acme",
        "destination": "14155550123",
        "channel": "sofia/gateway/gw1/14155550123",
        "endpoint": None,
        "variables": {},
    }
    changes = scrub_cdr(row, who)
    assert changes == {
        "destination": who.pseudonym,
        "channel": f"sofia/gateway/gw1/{who.pseudonym}",
    }
    other = {**row, "destination": "14155550124", "channel": "PJSIP/x"}
    assert scrub_cdr(other, who) == {}


def test_scrub_attempt() -> None:
    who = subject(US, KEY)
    assert scrub_attempt({"phone": US, "dialed_number": "0014155550123"}, who) == {
        "phone": who.pseudonym,
        "dialed_number": who.pseudonym,
    }
    assert scrub_attempt({"phone": "+14155550124", "dialed_number": None}, who) == {}


def test_scrub_json_walks_nested_values() -> None:
    who = subject(US, KEY)
    payload = {"cdr": {"destination": "14155550123", "n": 3, "list": ["+14155550123", None]}}
    assert who.scrub_json(payload) == {
        "cdr": {"destination": who.pseudonym, "n": 3, "list": [who.pseudonym, None]}
    }


def test_parse_key_errors_name_the_source_never_the_key() -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    assert parse_key(f"# comment\nmain:{secret}\n", "f").key_id == "main"
    with pytest.raises(PseudonymKeyError, match="f: expected exactly one"):
        parse_key(f"a:{secret}\nb:{secret}\n", "f")
    with pytest.raises(PseudonymKeyError, match="f:1: key 'a' must be 32 bytes, not 3"):
        parse_key("a:YWJj", "f")
    with pytest.raises(PseudonymKeyError, match="not valid base64"):
        parse_key("a:!!!", "f")
    with pytest.raises(PseudonymKeyError, match="expected '<key id>:<base64 key>'"):
        parse_key(secret, "f")
    assert secret not in repr(parse_key(f"main:{secret}", "f"))


def test_generated_key_file_is_private_and_stable(tmp_path: Path) -> None:
    section = PrivacySection()
    first = pseudonym_key(section, base=tmp_path, data_dir=tmp_path / "data", instance="i1")
    path = tmp_path / "data" / "pseudonym-key"
    assert path.stat().st_mode & 0o777 == 0o600
    again = pseudonym_key(section, base=tmp_path, data_dir=tmp_path / "data", instance="i1")
    assert again == first and first.key_id == "local-i1"


def test_a_key_generated_meanwhile_by_another_engine_wins(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym-key"
    assert _generate(path, "first") is True
    before = path.read_text()
    assert _generate(path, "second") is False
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pseudonym-key"]  # no temp left


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = base64.b64encode(bytes(32)).decode()
    monkeypatch.setenv("PSEUDO_KEY_TEST", f"env1:{secret}")
    section = PrivacySection(pseudonym_key_env="PSEUDO_KEY_TEST")
    key = pseudonym_key(section, base=tmp_path, data_dir=tmp_path, instance="i")
    assert key == PseudonymKey("env1", bytes(32))
    monkeypatch.delenv("PSEUDO_KEY_TEST")
    with pytest.raises(PseudonymKeyError, match="PSEUDO_KEY_TEST is not set"):
        pseudonym_key(section, base=tmp_path, data_dir=tmp_path, instance="i")
    with pytest.raises(ValueError, match="not both"):
        PrivacySection(pseudonym_key_env="X", pseudonym_key_file="y")


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def test_zip_stream_sends_as_it_goes_and_reads_back() -> None:
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    out = ZipStream(send, when=1_780_000_000)
    await out.add_json("a.json", {"x": [1, 2]})
    parts = [os.urandom(70_000), os.urandom(10)]
    await out.add_stream("audio/r.wav", 70_010, _chunks(parts))
    sends_before_close = len(sent)
    await out.close()
    assert sends_before_close >= 3  # written while made, not at the end
    with zipfile.ZipFile(io.BytesIO(b"".join(sent))) as z:
        assert z.testzip() is None
        assert z.read("audio/r.wav") == b"".join(parts)
        assert z.read("a.json").decode().replace(" ", "").replace("\n", "") == '{"x":[1,2]}'


def test_remove_files_takes_key_and_part_and_derived_paths(tmp_path: Path) -> None:
    rid = str(uuid.uuid4())
    started = 1_780_000_000.0  # 2026-05-28 UTC
    day = tmp_path / "2026" / "05" / "28"
    day.mkdir(parents=True)
    for suffix in (".enc", ".key", ".part"):
        (day / f"{rid}{suffix}").write_bytes(b"x")
    keep = day / "other.enc"
    keep.write_bytes(b"y")
    rec = StoredRecording(rid, "deleted", False, None, started)
    assert remove_files(tmp_path, [rec]) == 3
    assert sorted(p.name for p in day.iterdir()) == ["other.enc"]
    assert remove_files(tmp_path, [rec]) == 0  # a rerun: nothing left, no error
