"""Encryption at rest of recordings: AES-256-GCM, chunked, one random data key per file.

File layout (all integers big-endian)::

    header   magic "TEREC" | version (1 byte) | frame size F (u32) | recording id (16 bytes)
    frame*   nonce (12 random bytes) | AES-GCM(data key, nonce, plaintext, aad) (len + 16 tag)

Every frame but the last holds exactly F bytes of plaintext; the last holds fewer (0 to F-1),
so a file always ends with a short *final* frame, even an empty recording. The authenticated
data of frame ``i`` is ``header | i (u64) | final (1 byte)``. Hence:

- a flipped byte anywhere (header, nonce, ciphertext, tag) fails that frame's tag;
- a dropped or swapped frame is decrypted under the wrong index: fails;
- a file cut at a frame boundary ends with a full frame that was sealed as *not final*, and
  a file cut inside a frame leaves a short frame that was sealed as not final: both fail;
- bytes appended after the final frame are refused.

The data key never touches the disk in clear. It is wrapped (AES-256-GCM, its own nonce, the
recording id and the KEK id as authenticated data, so a wrapped key cannot be moved to another
recording) by a key-encryption key (KEK) named by a key id; the wrapped key lives in the
recordings index. Rotating KEKs re-wraps data keys and never touches audio; deleting the
wrapped key makes the audio unreadable for good (crypto-shredding).

Nothing here logs, prints or returns a key: KEKs are handled as bytes inside :class:`KeyRing`
only and its ``repr`` names key ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"TEREC"
VERSION = 1
HEADER = struct.Struct(">5sBI16s")
NONCE_LEN = 12
TAG_LEN = 16
#: 64 KiB of audio per frame: 2 s of 16 kHz mono, small enough that a Range request decrypts
#: little it does not send, big enough that the 28 bytes of nonce and tag per frame are 0.04 %.
DEFAULT_FRAME_SIZE = 64 * 1024
MAX_FRAME_SIZE = 16 * 1024 * 1024
KEY_LEN = 32
_WRAP_INFO = b"engine-recording-dek-v1"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RecordingCryptoError(Exception):
    """Base of every error of this module."""


class IntegrityError(RecordingCryptoError):
    """The encrypted file is not what was written: tampered, truncated, reordered, or read
    with the wrong data key. ``frame`` is the frame index where it showed (None: header or
    layout). No plaintext of a frame that failed is ever returned."""

    def __init__(self, message: str, *, frame: int | None = None) -> None:
        super().__init__(message)
        self.frame = frame


class KekError(RecordingCryptoError):
    """A key problem: unknown KEK id, a wrapped key that does not unwrap, a bad KEK source."""


# ----------------------------------------------------------------------------- key-encryption keys


class KeyRing:
    """The KEKs this engine knows, by key id, and which one wraps new data keys.

    Old KEKs stay in the ring after a rotation until every data key has been re-wrapped
    (``engine recordings rewrap``), then they can be removed from the key file.
    """

    __slots__ = ("_keys", "current_id")

    def __init__(self, keys: Mapping[str, bytes], current_id: str) -> None:
        for kid, key in keys.items():
            if not _KEY_ID.match(kid):
                raise KekError(f"KEK id {kid!r}: expected 1-64 of [A-Za-z0-9._-]")
            if len(key) != KEY_LEN:
                raise KekError(f"KEK {kid!r}: expected {KEY_LEN} bytes, got {len(key)}")
        if current_id not in keys:
            raise KekError(f"current KEK id {current_id!r} is not among the keys {sorted(keys)}")
        self._keys = dict(keys)
        self.current_id = current_id

    def __repr__(self) -> str:  # never the key bytes
        return f"KeyRing(ids={sorted(self._keys)}, current={self.current_id!r})"

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def _kek(self, kid: str) -> AESGCM:
        try:
            return AESGCM(self._keys[kid])
        except KeyError as err:
            raise KekError(f"KEK {kid!r} is not configured (known: {self.ids})") from err

    def wrap(self, data_key: bytes, recording_id: uuid.UUID) -> tuple[str, bytes]:
        """(key id, wrapped key) of ``data_key`` under the current KEK."""
        nonce = os.urandom(NONCE_LEN)
        aad = _wrap_aad(recording_id, self.current_id)
        return self.current_id, nonce + self._kek(self.current_id).encrypt(nonce, data_key, aad)

    def unwrap(self, kid: str, wrapped: bytes, recording_id: uuid.UUID) -> bytes:
        if len(wrapped) != NONCE_LEN + KEY_LEN + TAG_LEN:
            raise KekError(f"wrapped data key of recording {recording_id}: wrong length")
        try:
            return self._kek(kid).decrypt(
                wrapped[:NONCE_LEN], wrapped[NONCE_LEN:], _wrap_aad(recording_id, kid)
            )
        except InvalidTag as err:
            raise KekError(
                f"wrapped data key of recording {recording_id} does not open with KEK {kid!r}"
            ) from err

    def rewrap(self, kid: str, wrapped: bytes, recording_id: uuid.UUID) -> tuple[str, bytes]:
        """The same data key wrapped under the current KEK (rotation; audio untouched)."""
        return self.wrap(self.unwrap(kid, wrapped, recording_id), recording_id)


def _wrap_aad(recording_id: uuid.UUID, kid: str) -> bytes:
    return _WRAP_INFO + recording_id.bytes + kid.encode()


def parse_keys(text: str, where: str) -> KeyRing:
    """KEKs from text: one ``<key id>:<base64 of 32 bytes>`` per line, ``#`` comments. The
    FIRST key is the current one (put a new key on top to rotate). ``where`` names the source
    in errors (a file name or an environment variable), never the key material."""
    keys: dict[str, bytes] = {}
    first = ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kid, sep, b64 = line.partition(":")
        kid = kid.strip()
        if not sep or not _KEY_ID.match(kid):
            raise KekError(f"{where}:{n}: expected '<key id>:<base64 key>' (id: [A-Za-z0-9._-])")
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError) as err:
            raise KekError(f"{where}:{n}: key {kid!r} is not valid base64") from err
        if len(key) != KEY_LEN:
            raise KekError(f"{where}:{n}: key {kid!r} must be {KEY_LEN} bytes, not {len(key)}")
        if kid in keys:
            raise KekError(f"{where}:{n}: key id {kid!r} given twice")
        keys[kid] = key
        first = first or kid
    if not keys:
        raise KekError(f"{where}: no key (expected '<key id>:<base64 of 32 bytes>' lines)")
    return KeyRing(keys, first)


def load_keys(*, file: Path | None = None, env: str | None = None) -> KeyRing:
    """KEKs from a file (should be mode 0600) or an environment variable's value."""
    if file is not None:
        try:
            return parse_keys(file.read_text(encoding="utf-8"), str(file))
        except OSError as err:
            raise KekError(f"{file}: cannot read the KEK file ({err.strerror})") from err
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise KekError(f"environment variable {env} is not set or empty")
        # ';' separates entries where a newline cannot be put in a variable.
        return parse_keys(value.replace(";", "\n"), f"${env}")
    raise KekError("no KEK source: give a key file or an environment variable")


def new_kek_line(kid: str) -> str:
    """A fresh KEK line for the key file (``engine recordings new-kek``)."""
    if not _KEY_ID.match(kid):
        raise KekError(f"KEK id {kid!r}: expected 1-64 of [A-Za-z0-9._-]")
    return f"{kid}:{base64.b64encode(os.urandom(KEY_LEN)).decode()}"


# ----------------------------------------------------------------------------- the file format


def _header(recording_id: uuid.UUID, frame_size: int) -> bytes:
    return HEADER.pack(MAGIC, VERSION, frame_size, recording_id.bytes)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


@dataclass(frozen=True, slots=True)
class Sealed:
    """What encrypting one recording produced (the index's fields)."""

    size: int  # plaintext bytes
    sha256: str  # of the plaintext, hex
    encrypted_size: int
    frames: int


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def encrypt_stream(
    chunks: Iterable[bytes],
    out: Writable,
    data_key: bytes,
    recording_id: uuid.UUID,
    frame_size: int = DEFAULT_FRAME_SIZE,
) -> Sealed:
    """Encrypt the plaintext ``chunks`` (any sizes) into ``out``, frame by frame; memory is
    one frame whatever the length."""
    if not 1 <= frame_size <= MAX_FRAME_SIZE:
        raise ValueError(f"frame_size must be 1..{MAX_FRAME_SIZE}, got {frame_size}")
    aead = AESGCM(data_key)
    header = _header(recording_id, frame_size)
    out.write(header)
    written = len(header)
    digest = hashlib.sha256()
    buf = bytearray()
    index = size = 0

    def seal(plain: bytes, final: bool) -> None:
        nonlocal index, written
        nonce = os.urandom(NONCE_LEN)
        sealed = aead.encrypt(nonce, plain, _aad(header, index, final))
        out.write(nonce)
        out.write(sealed)
        written += NONCE_LEN + len(sealed)
        index += 1

    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        buf += chunk
        while len(buf) >= frame_size:
            seal(bytes(buf[:frame_size]), False)
            del buf[:frame_size]
    seal(bytes(buf), True)  # always a short final frame (0..F-1 bytes)
    return Sealed(size=size, sha256=digest.hexdigest(), encrypted_size=written, frames=index)


class EncryptedReader:
    """Random access to the plaintext of one encrypted file, decrypting frame by frame.

    Opening checks the layout against the file's size and authenticates the final frame, so a
    truncated or extended file is refused before any audio is returned. Every frame is
    authenticated before its bytes are handed out.
    """

    def __init__(self, file: BinaryIO, data_key: bytes, recording_id: uuid.UUID) -> None:
        self._file = file
        raw = file.read(HEADER.size)
        if len(raw) != HEADER.size:
            raise IntegrityError("encrypted recording: file shorter than its header")
        magic, version, frame_size, rid = HEADER.unpack(raw)
        if magic != MAGIC or version != VERSION:
            raise IntegrityError("encrypted recording: not a version-1 recording file")
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise IntegrityError(f"encrypted recording: bad frame size {frame_size}")
        if rid != recording_id.bytes:
            raise IntegrityError(
                f"encrypted recording: the file belongs to recording {uuid.UUID(bytes=rid)}, "
                f"not {recording_id}"
            )
        self._header = raw
        self._aead = AESGCM(data_key)
        self.frame_size = frame_size
        self._record = NONCE_LEN + frame_size + TAG_LEN
        file.seek(0, os.SEEK_END)
        body = file.tell() - HEADER.size
        full, rest = divmod(body, self._record)
        if rest < NONCE_LEN + TAG_LEN:
            # The final frame holds 0..F-1 bytes, so its record is 28..F+27 bytes long.
            raise IntegrityError(
                "encrypted recording: truncated (no complete final frame)", frame=full
            )
        self.frames = full + 1
        self._last_len = rest - NONCE_LEN - TAG_LEN
        self.size = full * frame_size + self._last_len
        self.frame(self.frames - 1)  # authenticates the end: no cut-off goes unnoticed

    def frame(self, index: int) -> bytes:
        """The plaintext of frame ``index``, authenticated."""
        if not 0 <= index < self.frames:
            raise IndexError(f"frame {index} of {self.frames}")
        final = index == self.frames - 1
        length = NONCE_LEN + (self._last_len if final else self.frame_size) + TAG_LEN
        self._file.seek(HEADER.size + index * self._record)
        raw = self._file.read(length)
        if len(raw) != length:
            raise IntegrityError("encrypted recording: file changed while read", frame=index)
        try:
            return self._aead.decrypt(
                raw[:NONCE_LEN], raw[NONCE_LEN:], _aad(self._header, index, final)
            )
        except InvalidTag as err:
            raise IntegrityError(
                f"encrypted recording: frame {index} of {self.frames} fails authentication "
                "(tampered, reordered, truncated, or the wrong key)",
                frame=index,
            ) from err

    def read_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext bytes ``start`` .. ``end`` (exclusive; None: to the end), frame by frame."""
        stop = self.size if end is None else min(end, self.size)
        if start < 0 or start > stop:
            raise ValueError(f"range {start}..{stop} outside 0..{self.size}")
        pos = start
        while pos < stop:
            index, skip = divmod(pos, self.frame_size)
            plain = self.frame(index)
            piece = plain[skip : skip + (stop - pos)]
            pos += len(piece)
            yield piece

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EncryptedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self, sha256: str | None = None) -> None:
        """Authenticate every frame (and compare the plaintext's SHA-256 when given)."""
        digest = hashlib.sha256()
        for index in range(self.frames):
            digest.update(self.frame(index))
        if sha256 is not None and digest.hexdigest() != sha256:
            raise IntegrityError("encrypted recording: plaintext hash differs from the index")


def open_encrypted(path: Path, data_key: bytes, recording_id: uuid.UUID) -> EncryptedReader:
    """An :class:`EncryptedReader` over ``path``; close it (or use it in ``with``)."""
    fh = path.open("rb")
    try:
        return EncryptedReader(fh, data_key, recording_id)
    except BaseException:
        fh.close()
        raise
