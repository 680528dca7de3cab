"""Compact JSON text for the hot paths (journal lines, stream events, the call registry).

orjson (C) encodes a call's payloads several times faster than the stdlib encoder, which
was ~5 % of the engine's CPU per call (docs/bench-cpu.md, fourth round). The output is
the stdlib's ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` parsed back
to equal values: same keys in the same order, same strings, same numbers (a float may be
spelled differently, ``1e-07`` vs ``1e-7``, and reads back as the same float).

What orjson would do differently is kept out, so a value is accepted or refused exactly as
before: datetimes and dataclasses are passed through to ``default``, which refuses them,
and anything orjson refuses (an int past 64 bits, a key that is not a string, a type it
does not know) is encoded by the stdlib instead, which encodes it or raises the same
``TypeError``/``ValueError`` as before. Differences left, none of which an engine payload
has: a NaN or infinite float becomes ``null`` (the stdlib wrote ``NaN``, which is not JSON
and which JSON clients refuse), and a ``uuid.UUID`` or a plain ``enum.Enum`` member is
encoded as its string or value where the stdlib refused it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_SORTED = _OPTS | orjson.OPT_SORT_KEYS


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=...)``."""
    try:
        return orjson.dumps(value, default=_refuse, option=_SORTED if sort_keys else _OPTS).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
