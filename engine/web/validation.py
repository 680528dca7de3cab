"""Turn request bodies into validated models, or a 4xx that says what is wrong:
413 for a body over :data:`MAX_BODY` (announced or chunked alike), 415 for a
body that is not ``application/json``, 400 for JSON that does not fit."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from engine.core.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)

# Also the aiohttp ``client_max_size``, so a chunked body (no Content-Length)
# is cut off at the same size and answered the same way (413).
MAX_BODY = 64 * 1024
JSON = "application/json"


def _where(loc: tuple[int | str, ...], data: Any = None) -> str:
    """``then.context``: the field as the client wrote it. pydantic puts a tagged union's tag
    in the location (``then.dialplan.context``), a key the body never had; ``data`` (the
    body) tells it apart: a part naming no key of its object but equal to one of its values."""
    out = ""
    node, tagged = data, False
    for part in loc:
        if isinstance(node, dict) and not tagged and part not in node and part in node.values():
            tagged = True  # the discriminator's value, not a key (at most one per object)
            continue
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        tagged = False
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def _no_constants(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not.
    raise ValueError(f"{name} is not a JSON value")


def read_json(raw: bytes) -> Any:
    """A request body's JSON value (an empty body is null), or 400 ``invalid-json`` saying
    why. Nesting deeper than Python's parser recurses is refused too: it used to escape as a
    RecursionError, a 500."""
    try:
        return json.loads(raw or b"null", parse_constant=_no_constants)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise InvalidRequest(
            f"request body is not valid JSON: {err}", error_id="invalid-json"
        ) from err
    except RecursionError:
        raise InvalidRequest(
            "request body is not valid JSON here: arrays and objects nested too deeply",
            error_id="invalid-json",
        ) from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise InvalidRequest(
            f"request body is larger than {MAX_BODY} bytes", error_id="body-too-large", status=413
        )
    # aiohttp reports a missing Content-Type as application/octet-stream.
    if request.content_type != JSON:
        given = request.headers.get("Content-Type")
        raise InvalidRequest(
            f"request body must be sent as 'Content-Type: {JSON}'"
            + (f" (got {given!r})" if given else " (no Content-Type given)"),
            error_id="unsupported-media-type",
            status=415,
            details={"expected": JSON},
        )
    data = read_json(await request.read())
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object", error_id="invalid-json")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = [
            {
                "field": _where(tuple(e["loc"]), data),
                "problem": e["msg"].removeprefix("Value error, "),
            }
            for e in err.errors()
        ]
        raise InvalidRequest(
            "; ".join(f"{p['field']}: {p['problem']}" for p in problems),
            error_id="invalid-request",
            details={"problems": problems},
        ) from err
