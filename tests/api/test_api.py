"""Control API: auth, validation, errors, originate outcomes, idempotency, events.

Every response checked here is also validated against engine/api/openapi.json.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from openapi_spec_validator import validate

from engine.api.openapi import app_document
from engine.store.pg.pool import PgStore
from tests.api.conftest import Api
from tests.api.openapi_check import check
from tests.harness import event_log, stored_cdrs, wait_for

PROTECTED = [
    ("GET", "/calls"),
    ("POST", "/calls"),
    ("GET", "/calls/x"),
    ("DELETE", "/calls/x"),
    ("POST", "/calls/x/redirect"),
    ("POST", "/calls/x/dtmf"),
    ("GET", "/metrics"),
    ("GET", "/events"),
    ("GET", "/cdrs"),
    ("POST", "/calls/x/recording"),
    ("GET", "/recordings"),
]


def spec_path(path: str) -> str:
    if path.startswith("/calls/"):
        rest = path.split("/", 3)[3:] or [""]
        return "/v1/calls/{call_id}" + (f"/{rest[0]}" if rest[0] else "")
    return "/v1" + path


async def test_openapi_document_is_valid_and_covers_every_route(api: Api) -> None:
    status, doc, _ = await api.client.request("GET", "/openapi.json")
    assert status == 200
    validate(doc)
    assert api.engine.app is not None
    assert doc == app_document(api.engine.app)
    # The names the server checks against its config are the document's enums.
    originate = doc["components"]["schemas"]["OriginateRequest"]["properties"]
    assert originate["switch"]["enum"] == ["asterisk-1"]
    # ...and the IVR flows it has loaded (a call to another is 400 unknown-flow).
    flow = doc["components"]["schemas"]["ThenIvr"]["properties"]["flow"]
    assert flow["enum"] == ["campaign-message", "collect"]
    app_routes = {
        (r.method, r.resource.canonical)
        for r in api.engine.app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    documented = {
        (m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"
    }
    assert app_routes == documented
    for method, path in PROTECTED:
        assert (method, spec_path(path)) in documented


async def test_health_needs_no_token(api: Api) -> None:
    status, body, _ = await api.client.request("GET", "/health", token=None)
    assert status == 200
    check("/v1/health", "get", 200, body)
    assert body["status"] == "ready"
    assert body["storage"] == {"postgres": True, "redis": True, "outbox": True}


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_missing_token_gets_401(api: Api, method: str, path: str) -> None:
    status, body, _ = await api.client.request(method, path, token=None)
    assert (status, body["error_id"]) == (401, "missing-token")
    check(spec_path(path), method, 401, body)


async def test_wrong_token_gets_401(api: Api) -> None:
    status, body, _ = await api.client.request("GET", "/calls", token="not-the-token-at-all")
    assert (status, body["error_id"]) == (401, "invalid-token")


BAD_PAYLOADS: list[tuple[Any, str, str]] = [
    (b"{not json", "invalid-json", "not valid JSON"),
    ([1, 2], "invalid-json", "must be a JSON object"),
    ({}, "invalid-request", "to: Field required"),
    ({"to": "1001"}, "invalid-request", "exactly one of 'trunk' or 'endpoint'"),
    ({"to": "1001", "trunk": "a", "endpoint": "b"}, "invalid-request", "exactly one of"),
    ({"to": "12ab", "trunk": "self-trunk"}, "invalid-request", "to: String should match"),
    ({"to": "1001", "trunk": "self-trunk", "then": {"kind": "fax"}}, "invalid-request", "then"),
    (
        {
            "to": "1001",
            "trunk": "self-trunk",
            "then": {"kind": "dialplan", "context": "a\r\nAction: Hangup", "exten": "s"},
        },
        "invalid-request",
        "then.context",
    ),
    (
        {"to": "1001", "trunk": "self-trunk", "variables": {"9bad": "x"}},
        "invalid-request",
        "variables",
    ),
    ({"to": "1001", "trunk": "self-trunk", "timeout_s": 0}, "invalid-request", "timeout_s"),
    # A flow this engine has not loaded: refused before anything is dialled (it used to be
    # dialled, answered and hung up on by the IVR, "unknown IVR flow").
    (
        {"to": "1001", "trunk": "self-trunk", "then": {"kind": "ivr", "flow": "no-such-flow"}},
        "unknown-flow",
        "no IVR flow named 'no-such-flow' (known: ['campaign-message', 'collect']",
    ),
    (
        {"to": "1001", "trunk": "self-trunk", "colour": "red"},
        "invalid-request",
        "colour: Extra inputs",
    ),
    (
        {"to": "1001", "trunk": "self-trunk", "switch": "nope"},
        "unknown-switch",
        "unknown switch 'nope'",
    ),
]


@pytest.mark.parametrize(("payload", "error_id", "fragment"), BAD_PAYLOADS)
async def test_bad_payload_gets_400_with_error_id(
    api: Api, payload: Any, error_id: str, fragment: str
) -> None:
    before = len(api.ami.actions_named("Originate"))
    kwargs: dict[str, Any] = (
        {"data": payload, "headers": {"Content-Type": "application/json"}}
        if isinstance(payload, bytes)
        else {"json": payload}
    )
    status, body, _ = await api.client.request("POST", "/calls", **kwargs)
    assert (status, body["error_id"]) == (400, error_id), body
    assert fragment in body["message"], body["message"]
    check("/v1/calls", "post", 400, body)
    assert len(api.ami.actions_named("Originate")) == before, (
        "a bad request must not reach the switch"
    )


async def test_bad_dtmf_and_redirect_bodies(api: Api) -> None:
    call = await api.client.originate("4001")
    status, body, _ = await api.client.request(
        "POST", f"/calls/{call['call_id']}/dtmf", json={"digits": "12x"}
    )
    assert (status, body["error_id"]) == (400, "invalid-request")
    status, body, _ = await api.client.request(
        "POST", f"/calls/{call['call_id']}/redirect", json={}
    )
    assert (status, body["error_id"]) == (400, "invalid-request")
    assert "then: Field required" in body["message"]
    status, body, _ = await api.client.request(
        "POST",
        f"/calls/{call['call_id']}/redirect",
        json={"then": {"kind": "ivr", "flow": "colect"}},
    )
    assert (status, body["error_id"]) == (400, "unknown-flow"), body
    assert body["details"] == {"flow": "colect", "known": ["campaign-message", "collect"]}
    check("/v1/calls/{call_id}/redirect", "post", 400, body)


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("GET", "", None),
        ("DELETE", "", None),
        ("POST", "/redirect", {"then": {"kind": "park"}}),
        ("POST", "/dtmf", {"digits": "1"}),
    ],
)
async def test_unknown_call_gets_404(api: Api, method: str, suffix: str, payload: Any) -> None:
    missing = str(uuid.uuid4())
    status, body, _ = await api.client.request(method, f"/calls/{missing}{suffix}", json=payload)
    assert (status, body["error_id"]) == (404, "call-not-found")
    assert body["details"] == {"call_id": missing}
    check("/v1/calls/{call_id}" + suffix, method, 404, body)


async def test_unknown_route_is_json_404(api: Api) -> None:
    status, body, _ = await api.client.request("GET", "/nothing-here")
    assert (status, body["error_id"]) == (404, "not-found")


OUTCOMES = [("1001", 16, None), ("2001", 17, 486), ("3001", 34, 503), ("4001", 19, 480)]


@pytest.mark.parametrize(("number", "cause", "sip"), OUTCOMES)
async def test_originate_outcomes_from_recorded_carrier(
    api: Api, pg_store: PgStore, number: str, cause: int, sip: int | None
) -> None:
    status, call, resp = await api.client.request(
        "POST",
        "/calls",
        json={
            "to": number,
            "trunk": "self-trunk",
            "caller_id": {"number": "15550001111", "name": "Acme"},
        },
    )
    assert status == 201
    check("/v1/calls", "post", 201, call)
    assert resp.headers["Location"] == f"/v1/calls/{call['call_id']}"
    sent = [
        a
        for a in api.ami.actions_named("Originate")
        if a.headers.get("ChannelId") == call["call_id"]
    ]
    assert len(sent) == 1
    assert sent[0].headers.get("Channel") == f"PJSIP/{number}@self-trunk"
    assert sent[0].headers.get("CallerID") == '"Acme" <15550001111>'
    final = await api.client.wait_state(call["call_id"], "ended")
    check("/v1/calls/{call_id}", "get", 200, final)
    assert (final["cause"], final["sip_code"]) == (cause, sip)
    rows = await stored_cdrs(pg_store.pool, call["call_id"])
    assert [(r.cause, r.sip_code, r.caller_id_num) for r in rows] == [(cause, sip, "15550001111")]


async def test_idempotency_key_never_places_a_second_call(api: Api) -> None:
    key = f"idem-{uuid.uuid4()}"
    body = {"to": "2001", "trunk": "self-trunk"}
    results = await asyncio.gather(
        *(
            api.client.request("POST", "/calls", json=body, headers={"Idempotency-Key": key})
            for _ in range(5)
        )
    )
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 200, 200, 200, 201]
    ids = {r[1]["call_id"] for r in results}
    assert len(ids) == 1
    (call_id,) = ids
    assert (
        len(
            [a for a in api.ami.actions_named("Originate") if a.headers.get("ChannelId") == call_id]
        )
        == 1
    )
    for status, data, _ in results:
        check("/v1/calls", "post", status, data)
    # Same key, different body: refused, nothing placed.
    status, data, _ = await api.client.request(
        "POST",
        "/calls",
        json={"to": "2002", "trunk": "self-trunk"},
        headers={"Idempotency-Key": key},
    )
    assert (status, data["error_id"]) == (409, "idempotency-key-reused")
    assert data["details"]["call_id"] == call_id


async def test_list_live_calls_and_metrics(api: Api) -> None:
    call = await api.client.originate("4001", timeout_s=30)
    status, body, _ = await api.client.request("GET", "/calls")
    assert status == 200
    check("/v1/calls", "get", 200, body)
    listed = {c["call_id"]: c for c in body["calls"]}
    status, now, _ = await api.client.request("GET", f"/calls/{call['call_id']}")
    assert status == 200
    # The fake carrier may already have ended it: listed exactly while live.
    assert (call["call_id"] in listed) is (now["state"] != "ended"), (now, listed)
    status, text, _ = await api.client.request("GET", "/metrics")
    assert status == 200
    assert 'engine_calls_originated_total{switch="asterisk-1"}' in text
    assert "engine_switch_link_up" in text


async def test_websocket_resume_from_sequence(api: Api) -> None:
    async with event_log(api.client) as first:
        call = await api.client.originate("2001")
        await api.client.wait_state(call["call_id"], "ended")
        await wait_for(
            lambda: any(
                m["event"].get("state") == "ended" and m["event"]["call_id"] == call["call_id"]
                for m in first
            )
        )
    seqs = [m["seq"] for m in first]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "sequence numbers are gapless"
    middle = seqs[len(seqs) // 2]
    async with event_log(api.client, since=middle) as resumed:
        await wait_for(lambda: len(resumed) >= len([s for s in seqs if s > middle]))
    assert [m["seq"] for m in resumed][: len([s for s in seqs if s > middle])] == [
        s for s in seqs if s > middle
    ]
    assert [m["event"] for m in resumed if m["seq"] <= seqs[-1]] == [
        m["event"] for m in first if m["seq"] > middle
    ]


async def test_bad_since_gets_400(api: Api) -> None:
    status, body, _ = await api.client.request("GET", "/events?since=abc")
    assert (status, body["error_id"]) == (400, "invalid-since")


async def test_switch_down_gets_503_and_key_is_released(api: Api) -> None:
    await api.ami.stop()
    try:
        await wait_for(
            lambda: api.engine.drivers["asterisk-1"].state.value != "up", what="link down"
        )
        key = f"down-{uuid.uuid4()}"
        status, body, _ = await api.client.request(
            "POST",
            "/calls",
            json={"to": "1001", "trunk": "self-trunk"},
            headers={"Idempotency-Key": key},
        )
        assert (status, body["error_id"]) == (503, "switch-unavailable")
        check("/v1/calls", "post", 503, body)
        status, health, _ = await api.client.request("GET", "/health", token=None)
        assert status == 503 and health["status"] == "not-ready"
        check("/v1/health", "get", 503, health)
    finally:
        await api.ami.start()
    await api.engine.wait_until_up(30)
    # Nothing reached the switch, so the same key may now place the call.
    status, body, _ = await api.client.request(
        "POST",
        "/calls",
        json={"to": "1001", "trunk": "self-trunk"},
        headers={"Idempotency-Key": key},
    )
    assert status == 201, body


async def test_cdr_endpoint_returns_the_calls_row(api: Api) -> None:
    call = await api.client.originate("2001")
    await api.client.wait_state(call["call_id"], "ended")
    status, body, _ = await api.client.request("GET", f"/cdrs?call_id={call['call_id']}")
    assert status == 200
    check("/v1/cdrs", "get", 200, body)
    (row,) = body["cdrs"]
    assert (row["cause"], row["sip_code"], row["billsec_s"]) == (17, 486, 0.0)
    status, body, _ = await api.client.request("GET", "/cdrs?limit=5")
    assert status == 200 and 1 <= len(body["cdrs"]) <= 5
    check("/v1/cdrs", "get", 200, body)
    status, body, _ = await api.client.request("GET", "/cdrs?limit=0")
    assert (status, body["error_id"]) == (400, "invalid-limit")


async def test_originate_with_amd_goes_to_engine_amd_and_a_redirect_to_amd_is_refused(
    api: Api,
) -> None:
    status, call, _ = await api.client.request(
        "POST", "/calls", json={"to": "1001", "trunk": "self-trunk", "then": {"kind": "amd"}}
    )
    assert status == 201
    check("/v1/calls", "post", 201, call)
    assert call["then"] == {"kind": "amd"}
    sent = [
        a
        for a in api.ami.actions_named("Originate")
        if a.headers.get("ChannelId") == call["call_id"]
    ]
    assert [(a.headers.get("Context"), a.headers.get("Exten")) for a in sent] == [
        ("engine-amd", "s")
    ]
    status, body, _ = await api.client.request(
        "POST", f"/calls/{call['call_id']}/redirect", json={"then": {"kind": "amd"}}
    )
    assert (status, body["error_id"]) == (400, "invalid-request")
