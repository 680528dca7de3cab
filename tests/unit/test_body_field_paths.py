"""A 400's ``details.problems[].field`` names the field as the client wrote it
(engine/web/validation.py): a ``then`` of one kind is a tagged union, whose tag pydantic
puts in the error location (``then.dialplan.context``), a key no body has."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from engine.calls.schemas import OriginateBody
from engine.core.errors import InvalidRequest
from engine.web.validation import parse_body


async def _problems(body: Any) -> tuple[str, list[dict[str, str]]]:
    async def handler(request: web.Request) -> web.Response:
        try:
            await parse_body(request, OriginateBody)
        except InvalidRequest as err:
            return web.json_response({"message": err.message, **err.details})
        return web.json_response({"message": "", "problems": []})

    app = web.Application()
    app.router.add_post("/", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/", json=body)
        data = await resp.json()
    return data["message"], data["problems"]


async def test_a_then_fields_path_has_no_tag_in_it() -> None:
    message, problems = await _problems(
        {"to": "1001", "trunk": "self-trunk", "then": {"kind": "dialplan"}}
    )
    assert [p["field"] for p in problems] == ["then.context", "then.exten"]
    assert message.startswith("then.context: Field required; then.exten: Field required")


async def test_a_key_whose_value_equals_a_missing_field_is_not_skipped() -> None:
    # "context" is a value here (of exten), and still the missing field's name.
    _, problems = await _problems(
        {"to": "1001", "trunk": "self-trunk", "then": {"kind": "dialplan", "exten": "context"}}
    )
    assert [p["field"] for p in problems] == ["then.context"]


async def test_an_ivr_then_and_plain_fields() -> None:
    _, problems = await _problems(
        {"to": "1001", "trunk": "self-trunk", "then": {"kind": "ivr", "flow": "a b"}}
    )
    assert [p["field"] for p in problems] == ["then.flow"]
    _, problems = await _problems({"to": 1001, "trunk": "self-trunk"})
    assert [p["field"] for p in problems] == ["to"]
    _, problems = await _problems({"to": "1001", "trunk": "t", "then": {"kind": "queue"}})
    assert [p["field"] for p in problems] == ["then"]
