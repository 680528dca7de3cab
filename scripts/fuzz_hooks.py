"""Schemathesis hooks for the API fuzz runs (scripts/fuzz_api.py sets SCHEMATHESIS_HOOKS).

Contact and DNC lists may be uploaded as JSON Lines (``application/x-ndjson``), a media type
schemathesis has no serializer for: the generated body (a string, per the document) goes out as
UTF-8 text, exactly as ``text/plain`` does.
"""

from __future__ import annotations

from typing import Any

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")

# Text bodies (CSV, JSON Lines) are strings on the wire: a generated "wrong type" body (a
# number, an object) for them has no wire form of its own, and whatever text it would be sent
# as is judged as that text. Such cases are dropped, not sent under a false label.
_TEXT_BODIES = ("text/csv", "application/x-ndjson")


@schemathesis.hook
def filter_case(ctx: object, case: schemathesis.Case[Any]) -> bool:
    if case.media_type in _TEXT_BODIES:
        return isinstance(case.body, str | bytes)
    return True
