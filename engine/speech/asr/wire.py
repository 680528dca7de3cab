"""The pipe protocol between the engine and an ASR worker process (sans-IO framing).

A frame is one type byte, a 4-byte big-endian length, then the payload:

- engine -> worker: ``S`` start an utterance (JSON ``{"rate", "keywords"}``), ``A`` audio
  (16-bit LE samples), ``E`` end of the utterance;
- worker -> engine: ``K`` ready (model loaded), ``R`` result (JSON ``{"text",
  "confidence", "alternatives": [[text, confidence]...]}``), ``X`` error (JSON ``{"error"}``).
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">cI")
MAX_PAYLOAD = 1 << 24


class WireError(ValueError):
    pass


def encode(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def decode_header(header: bytes) -> tuple[bytes, int]:
    kind, size = HEADER.unpack(header)
    if size > MAX_PAYLOAD:
        raise WireError(f"ASR worker frame {kind!r}: length {size} exceeds {MAX_PAYLOAD}")
    return bytes(kind), int(size)
