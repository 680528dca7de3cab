"""Encryption at rest: round trips, ranges, and every tampering giving a clear error."""

from __future__ import annotations

import base64
import io
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.recordings import crypto
from engine.recordings.crypto import (
    HEADER,
    NONCE_LEN,
    TAG_LEN,
    IntegrityError,
    KekError,
    KeyRing,
    encrypt_stream,
    new_data_key,
    open_encrypted,
    parse_keys,
)

RID = uuid.UUID("5d1c0a3e-0000-4000-8000-000000000001")
FRAME = 1000


def _seal(plain: bytes, key: bytes, rid: uuid.UUID = RID, frame: int = FRAME) -> bytes:
    out = io.BytesIO()
    # uneven chunks: the framing must not depend on how the plaintext arrives
    chunks = [plain[i : i + 333] for i in range(0, len(plain), 333)]
    sealed = encrypt_stream(chunks, out, key, rid, frame)
    assert sealed.size == len(plain)
    assert sealed.encrypted_size == len(out.getvalue())
    return out.getvalue()


def _read_all(blob: bytes, key: bytes, rid: uuid.UUID = RID) -> bytes:
    reader = crypto.EncryptedReader(io.BytesIO(blob), key, rid)
    return b"".join(reader.read_range())


def _records(blob: bytes, frame: int = FRAME) -> list[bytes]:
    body = blob[HEADER.size :]
    step = NONCE_LEN + frame + TAG_LEN
    return [body[i : i + step] for i in range(0, len(body), step)]


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=5000))
def test_round_trip_any_length(plain: bytes) -> None:
    key = new_data_key()
    assert _read_all(_seal(plain, key), key) == plain


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=4000), st.data())
def test_any_range_is_the_same_bytes(plain: bytes, data: st.DataObject) -> None:
    key = new_data_key()
    reader = crypto.EncryptedReader(io.BytesIO(_seal(plain, key)), key, RID)
    start = data.draw(st.integers(0, len(plain)))
    end = data.draw(st.integers(start, len(plain)))
    assert b"".join(reader.read_range(start, end)) == plain[start:end]


def test_exact_multiple_of_frame_ends_with_an_empty_final_frame() -> None:
    key = new_data_key()
    plain = os.urandom(3 * FRAME)
    blob = _seal(plain, key)
    recs = _records(blob)
    assert len(recs) == 4 and len(recs[-1]) == NONCE_LEN + TAG_LEN
    assert _read_all(blob, key) == plain


def test_sha256_of_plaintext() -> None:
    import hashlib

    key = new_data_key()
    plain = os.urandom(2500)
    out = io.BytesIO()
    sealed = encrypt_stream([plain], out, key, RID, FRAME)
    assert sealed.sha256 == hashlib.sha256(plain).hexdigest()
    reader = crypto.EncryptedReader(io.BytesIO(out.getvalue()), key, RID)
    reader.verify(sealed.sha256)
    with pytest.raises(IntegrityError, match="hash"):
        reader.verify("0" * 64)


def test_no_plaintext_in_the_file() -> None:
    key = new_data_key()
    plain = b"RIFF" + b"ABCDEFGH" * 1000
    blob = _seal(plain, key)
    assert b"RIFF" not in blob and b"ABCDEFGH" not in blob


# ----------------------------------------------------------------------------- tampering


@pytest.fixture
def sealed() -> tuple[bytes, bytes, bytes]:
    key = new_data_key()
    plain = os.urandom(4 * FRAME + 123)
    return plain, key, _seal(plain, key)


@pytest.mark.parametrize("where", ["header", "nonce", "ciphertext", "tag", "last"])
def test_flipped_byte(sealed: tuple[bytes, bytes, bytes], where: str) -> None:
    _plain, key, blob = sealed
    offset = {
        "header": 8,  # inside the frame size / id: authenticated by every frame
        "nonce": HEADER.size + 3,
        "ciphertext": HEADER.size + NONCE_LEN + FRAME + TAG_LEN + NONCE_LEN + 10,
        "tag": HEADER.size + NONCE_LEN + FRAME + 2,
        "last": len(blob) - 1,
    }[where]
    bad = bytearray(blob)
    bad[offset] ^= 0x01
    with pytest.raises(IntegrityError):
        _read_all(bytes(bad), key)


def test_flipped_byte_in_the_middle_fails_that_frame_only_there(
    sealed: tuple[bytes, bytes, bytes],
) -> None:
    plain, key, blob = sealed
    bad = bytearray(blob)
    bad[HEADER.size + 2 * (NONCE_LEN + FRAME + TAG_LEN) + NONCE_LEN + 5] ^= 0x80
    reader = crypto.EncryptedReader(io.BytesIO(bytes(bad)), key, RID)
    got = bytearray()
    with pytest.raises(IntegrityError) as err:
        for piece in reader.read_range():
            got += piece
    assert err.value.frame == 2
    # what came out before the error is exactly the authentic first two frames: never bad audio
    assert bytes(got) == plain[: 2 * FRAME]


def test_dropped_frame(sealed: tuple[bytes, bytes, bytes]) -> None:
    _plain, key, blob = sealed
    recs = _records(blob)
    with pytest.raises(IntegrityError):
        _read_all(blob[: HEADER.size] + b"".join(recs[:1] + recs[2:]), key)


def test_swapped_frames(sealed: tuple[bytes, bytes, bytes]) -> None:
    _plain, key, blob = sealed
    recs = _records(blob)
    recs[1], recs[2] = recs[2], recs[1]
    with pytest.raises(IntegrityError, match="frame 1"):
        _read_all(blob[: HEADER.size] + b"".join(recs), key)


@pytest.mark.parametrize("cut", ["frame-boundary", "mid-frame", "mid-final", "header"])
def test_truncated(sealed: tuple[bytes, bytes, bytes], cut: str) -> None:
    _plain, key, blob = sealed
    recs = _records(blob)
    short = {
        "frame-boundary": blob[: HEADER.size] + b"".join(recs[:3]),
        "mid-frame": blob[: HEADER.size + NONCE_LEN + FRAME + TAG_LEN + 500],
        "mid-final": blob[:-5],
        "header": blob[:10],
    }[cut]
    with pytest.raises(IntegrityError):
        crypto.EncryptedReader(io.BytesIO(short), key, RID)


def test_extra_bytes_after_the_final_frame(sealed: tuple[bytes, bytes, bytes]) -> None:
    _plain, key, blob = sealed
    with pytest.raises(IntegrityError):
        crypto.EncryptedReader(io.BytesIO(blob + b"\x00" * 40), key, RID)


def test_wrong_key(sealed: tuple[bytes, bytes, bytes]) -> None:
    _plain, _key, blob = sealed
    with pytest.raises(IntegrityError, match="authentication"):
        _read_all(blob, new_data_key())


def test_file_of_another_recording(sealed: tuple[bytes, bytes, bytes]) -> None:
    _plain, key, blob = sealed
    with pytest.raises(IntegrityError, match="belongs to recording"):
        _read_all(blob, key, uuid.uuid4())


# ----------------------------------------------------------------------------- keys


def _ring(*ids: str) -> KeyRing:
    return KeyRing({k: os.urandom(32) for k in ids}, ids[0])


def test_wrap_unwrap_and_rotation_keeps_audio_readable(tmp_path: Path) -> None:
    old = _ring("k1")
    key = new_data_key()
    path = tmp_path / "r.enc"
    with path.open("wb") as fh:
        encrypt_stream([b"hello" * 999], fh, key, RID, FRAME)
    before = path.read_bytes()
    kid, wrapped = old.wrap(key, RID)
    assert kid == "k1" and key not in wrapped
    # rotation: a new current KEK on top, the old one still known
    rotated = KeyRing({"k2": os.urandom(32), "k1": old._keys["k1"]}, "k2")
    kid2, wrapped2 = rotated.rewrap(kid, wrapped, RID)
    assert kid2 == "k2" and wrapped2 != wrapped
    assert path.read_bytes() == before  # the audio file was not touched
    only_new = KeyRing({"k2": rotated._keys["k2"]}, "k2")
    dk = only_new.unwrap(kid2, wrapped2, RID)
    with open_encrypted(path, dk, RID) as reader:
        assert b"".join(reader.read_range()) == b"hello" * 999


def test_wrapped_key_is_bound_to_its_recording() -> None:
    ring = _ring("k1")
    kid, wrapped = ring.wrap(new_data_key(), RID)
    with pytest.raises(KekError, match="does not open"):
        ring.unwrap(kid, wrapped, uuid.uuid4())


def test_unknown_kek() -> None:
    ring = _ring("k1")
    kid, wrapped = ring.wrap(new_data_key(), RID)
    with pytest.raises(KekError, match="not configured"):
        _ring("k9").unwrap(kid, wrapped, RID)


def test_parse_keys_first_is_current_and_errors_name_the_line_not_the_key() -> None:
    a = base64.b64encode(os.urandom(32)).decode()
    b = base64.b64encode(os.urandom(32)).decode()
    ring = parse_keys(f"# comment\nnew:{a}\nold:{b}\n", "keys.txt")
    assert ring.current_id == "new" and ring.ids == ("new", "old")
    assert a not in repr(ring)
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(KekError, match=r"keys.txt:2: key 'k' must be 32 bytes") as err:
        parse_keys(f"\nk:{short}", "keys.txt")
    assert short not in str(err.value)
    with pytest.raises(KekError, match=r"keys\.txt:1: key .k. is not valid base64"):
        parse_keys("k:not base64!", "keys.txt")
    with pytest.raises(KekError, match="given twice"):
        parse_keys(f"k:{a}\nk:{b}", "keys.txt")
    with pytest.raises(KekError, match="no key"):
        parse_keys("# nothing\n", "keys.txt")


def test_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    a = base64.b64encode(os.urandom(32)).decode()
    b = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("TEST_KEKS", f"k2:{a};k1:{b}")
    ring = crypto.load_keys(env="TEST_KEKS")
    assert ring.current_id == "k2"
    monkeypatch.delenv("TEST_KEKS")
    with pytest.raises(KekError, match=r"TEST_KEKS is not set"):
        crypto.load_keys(env="TEST_KEKS")


def test_generated_and_rotated_key_files(tmp_path: Path) -> None:
    from engine.recordings.config import RecordingsSection
    from engine.recordings.keys import GENERATED, key_ring, write_new_kek

    section = RecordingsSection()
    ring = key_ring(section, base=tmp_path, data_dir=tmp_path / "data", instance="e1")
    path = tmp_path / "data" / GENERATED
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert ring.current_id.startswith("local-e1-")
    # the same file next time: the key is not regenerated
    again = key_ring(section, base=tmp_path, data_dir=tmp_path / "data", instance="e1")
    assert again.current_id == ring.current_id
    write_new_kek(path, "k2")
    rotated = key_ring(section, base=tmp_path, data_dir=tmp_path / "data", instance="e1")
    assert rotated.current_id == "k2" and set(rotated.ids) == {"k2", ring.current_id}
    with pytest.raises(KekError, match="already there"):
        write_new_kek(path, "k2")
    with pytest.raises(KekError, match="cannot read"):
        key_ring(
            RecordingsSection(kek_file="missing"), base=tmp_path, data_dir=tmp_path, instance="x"
        )
