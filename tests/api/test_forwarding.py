"""Two engines in one process on one PostgreSQL and one Redis, each with its own (fake)
FreeSWITCH: a command sent to either engine reaches the engine that owns its object, with the
owner's own answers, and both engines serve the same event stream (issue 15 item 2).

The switch leases are taken by the test, standing in for the lease keeper: engine A holds
``switch:sw-a``, engine B ``switch:sw-b``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from engine.api.events_ws import EVENT_SOCKETS
from engine.api.forward import FORWARDED_HEADER, SERVED_BY_HEADER
from engine.app import Engine
from engine.config import parse_config
from engine.store.redis.engines import EngineDirectory
from engine.store.redis.locks import Leases
from tests.api.openapi_check import check
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import TEST_IVR_DIR, TOKEN, Client, event_log, running_engine, wait_for
from tests.integration.engine_process import free_port


def _config(
    name: str, fs: FakeFreeSwitch, *, pg_dsn: str, redis_url: str, prefix: str, data: Path
) -> str:
    return f"""
[engine]
instance = "eng-{name}"
data_dir = "{data / f"engine-fwd-{name}"}"
ivr_dir = "{TEST_IVR_DIR}"
ivr_watch_interval_s = 0
[api]
bind = "127.0.0.1:0"
tokens = ["{TOKEN}"]
live_feed_interval_s = 0
[storage]
postgres_dsn = "{pg_dsn}"
redis_url = "{redis_url}"
redis_prefix = "{prefix}"
[logging]
level = "warning"
[[switches]]
kind = "freeswitch"
name = "sw-{name}"
host = "{fs.host}"
port = {fs.port}
password = "{fs.password}"
outbound_bind = "127.0.0.1:0"
[[trunks]]
name = "carrier-{name}"
switch = "sw-{name}"
target = "carrier"
max_channels = 50
max_cps = 50
"""


@dataclass
class Pair:
    a: Engine
    b: Engine
    ca: Client
    cb: Client
    fa: FakeFreeSwitch
    fb: FakeFreeSwitch
    redis: aioredis.Redis
    prefix: str


@pytest.fixture(scope="module")
async def pair(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Pair]:
    prefix = f"fwd:{uuid.uuid4().hex[:8]}:"
    redis = aioredis.from_url(redis_url, decode_responses=True)
    async with AsyncExitStack() as stack:
        engines = []
        for name in ("a", "b"):
            fs = await stack.enter_async_context(FakeFreeSwitch())
            held = await Leases(redis, prefix, f"eng-{name}").acquire(f"switch:sw-{name}", 600_000)
            assert held is not None
            cfg = parse_config(
                _config(
                    name, fs, pg_dsn=pg_dsn, redis_url=redis_url, prefix=prefix, data=store_data_dir
                )
            )
            engine, client = await stack.enter_async_context(running_engine(cfg))
            engines.append((engine, client, fs))
        (a, ca, fa), (b, cb, fb) = engines
        yield Pair(a, b, ca, cb, fa, fb, redis, prefix)
    await redis.aclose()


async def _call_on_a(pair: Pair) -> dict[str, Any]:
    """A call that stays up (66XXX answers and stays up 30 s), placed on A and visible from B."""
    call = await pair.ca.originate("66001", trunk="carrier-a")
    call_id = call["call_id"]
    await pair.ca.wait_state(call_id, "answered")
    await pair.cb.wait_state(call_id, "answered", elsewhere=True)  # the shared registry
    return call


def _kills(fs: FakeFreeSwitch, call_id: str) -> list[str]:
    return [line for line in fs.received if "uuid_kill" in line and call_id in line]


async def test_a_hangup_sent_to_b_is_carried_out_by_the_owner(pair: Pair) -> None:
    call_id = (await _call_on_a(pair))["call_id"]
    status, body, reply = await pair.cb.request("DELETE", f"/calls/{call_id}")
    assert status == 202, body
    assert reply.headers[SERVED_BY_HEADER] == "eng-a"
    assert body["call_id"] == call_id
    assert _kills(pair.fa, call_id) and not _kills(pair.fb, call_id)
    final = await pair.cb.wait_state(call_id, "ended")
    assert final["cause"] == 16
    # Ended: answered where it is asked, the same 409 as on the owner.
    for client in (pair.cb, pair.ca):
        status, body, reply = await client.request("DELETE", f"/calls/{call_id}")
        assert (status, body["error_id"]) == (409, "call-ended"), body
        assert SERVED_BY_HEADER not in reply.headers


async def test_the_owners_errors_come_back_unchanged(pair: Pair) -> None:
    call_id = (await _call_on_a(pair))["call_id"]
    bad = {"digits": "12<>"}
    direct = await pair.ca.request("POST", f"/calls/{call_id}/dtmf", json=bad)
    via_b = await pair.cb.request("POST", f"/calls/{call_id}/dtmf", json=bad)
    assert direct[0] == via_b[0] == 400
    assert direct[1] == via_b[1]
    assert via_b[2].headers[SERVED_BY_HEADER] == "eng-a"
    assert via_b[2].content_type == "application/json"
    # A body over the limit is refused by the engine it reaches, before any hop.
    forwarded = pair.b.forwarder.forwarded if pair.b.forwarder else 0
    status, body, _ = await pair.cb.request(
        "POST",
        f"/calls/{call_id}/dtmf",
        data=b"x" * (65 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert (status, body["error_id"]) == (413, "body-too-large"), body
    assert pair.b.forwarder is not None and pair.b.forwarder.forwarded == forwarded
    await pair.ca.request("DELETE", f"/calls/{call_id}")


async def test_an_originate_on_a_switch_b_does_not_own_keeps_its_idempotency(pair: Pair) -> None:
    key = f"fwd-{uuid.uuid4().hex}"
    body = {"to": "62001", "trunk": "carrier-a", "switch": "sw-a", "timeout_s": 6}
    first = await pair.cb.request("POST", "/calls", json=body, headers={"Idempotency-Key": key})
    again = await pair.cb.request("POST", "/calls", json=body, headers={"Idempotency-Key": key})
    direct = await pair.ca.request("POST", "/calls", json=body, headers={"Idempotency-Key": key})
    assert (first[0], again[0], direct[0]) == (201, 200, 200), first[1]
    assert first[1]["call_id"] == again[1]["call_id"] == direct[1]["call_id"]
    assert first[2].headers[SERVED_BY_HEADER] == "eng-a"
    assert first[2].headers["Location"] == f"/v1/calls/{first[1]['call_id']}"
    assert first[1]["switch"] == "sw-a"


async def test_a_forwarded_request_is_never_forwarded_again(pair: Pair) -> None:
    call_id = (await _call_on_a(pair))["call_id"]
    status, body, reply = await pair.cb.request(
        "DELETE", f"/calls/{call_id}", headers={FORWARDED_HEADER: "eng-x"}
    )
    assert (status, body["error_id"]) == (503, "owner-moved"), body
    assert reply.headers["Retry-After"] == "1"
    assert body["details"] == {"lease": "switch:sw-a", "owner": "eng-a"}
    assert not _kills(pair.fa, call_id) and not _kills(pair.fb, call_id)
    await pair.ca.request("DELETE", f"/calls/{call_id}")


async def test_a_forwarded_request_counts_once_against_its_tokens_rate_limit(
    pair: Pair,
) -> None:
    """The engines seal their hops with the key they share through Redis: A does not count
    what B forwarded (and counted) again. Before, A refused the token's first request of its
    own (429)."""
    status, created, _ = await pair.ca.request(
        "POST",
        "/tokens",
        json={"label": "crm-fwd", "role": "integration", "rate_per_s": 0.001, "rate_burst": 1},
    )
    assert status == 201, created
    token = created["token"]
    call_id = (await _call_on_a(pair))["call_id"]
    status, body, reply = await pair.cb.request(
        "POST", f"/calls/{call_id}/dtmf", token=token, json={"digits": "1"}
    )
    assert status == 202 and reply.headers[SERVED_BY_HEADER] == "eng-a", body
    status, body, _ = await pair.ca.request(
        "POST", f"/calls/{call_id}/dtmf", token=token, json={"digits": "2"}
    )
    assert status == 202, body  # A's first request with this token
    status, body, _ = await pair.ca.request(
        "POST", f"/calls/{call_id}/dtmf", token=token, json={"digits": "3"}
    )
    assert (status, body["error_id"]) == (429, "rate-limited"), body
    await pair.ca.request("DELETE", f"/calls/{call_id}")


async def test_an_unreachable_owner_gives_503_with_retry_after(pair: Pair) -> None:
    # A campaign leased to an engine that publishes no address (crashed), then to one whose
    # address refuses connections.
    ghost = Leases(pair.redis, pair.prefix, "eng-ghost")
    assert await ghost.acquire("campaign:ghosted", 600_000) is not None
    status, body, reply = await pair.cb.request("POST", "/campaigns/ghosted/pause")
    assert (status, body["error_id"]) == (503, "owner-unreachable"), body
    assert reply.headers["Retry-After"] == "1"
    assert body["details"] == {"lease": "campaign:ghosted", "owner": "eng-ghost", "sent": False}

    closed = EngineDirectory(pair.redis, pair.prefix, "eng-closed")
    await closed.publish(f"http://127.0.0.1:{free_port()}")
    assert await Leases(pair.redis, pair.prefix, "eng-closed").acquire("campaign:closed", 600_000)
    status, body, reply = await pair.cb.request("POST", "/campaigns/closed/pause")
    assert (status, body["error_id"]) == (503, "owner-unreachable"), body
    assert reply.headers["Retry-After"] == "1"
    assert body["details"]["sent"] is False
    status, text, _ = await pair.cb.request("GET", "/metrics")
    assert status == 200
    assert 'engine_api_forwarded_total{result="owner-unreachable"} 2.0' in text


async def test_every_engine_serves_the_same_event_stream(pair: Pair) -> None:
    assert pair.a.app is not None
    stream = pair.a.app[EVENT_SOCKETS].stream
    since = await stream.last_seq()
    async with event_log(pair.ca, since) as on_a, event_log(pair.cb, since) as on_b:
        call_id = (await _call_on_a(pair))["call_id"]
        status, _, _ = await pair.cb.request("DELETE", f"/calls/{call_id}")
        assert status == 202

        def ended(log: list[dict[str, Any]]) -> bool:
            return any(
                m.get("event", {}).get("call_id") == call_id and m["event"].get("state") == "ended"
                for m in log
            )

        await wait_for(lambda: ended(on_a) and ended(on_b), what="the call's end on both sockets")
        last = max(m["seq"] for m in on_a if m.get("event", {}).get("call_id") == call_id)
        await wait_for(
            lambda: max(m.get("seq", 0) for m in on_b) >= last, what="B up to the same seq"
        )
    upto_a = [m for m in on_a if m["seq"] <= last]
    upto_b = [m for m in on_b if m["seq"] <= last]
    assert upto_a == upto_b
    seqs = [m["seq"] for m in upto_b]
    assert seqs == list(range(since + 1, last + 1))  # gapless, in order
    mine = [m for m in upto_b if m["event"].get("call_id") == call_id]
    assert len(mine) >= 3  # created .. answered .. ended, all published by A

    # Resume on B from the middle of the call: the rest, the same seqs and events.
    middle = mine[len(mine) // 2]["seq"]
    async with event_log(pair.cb, middle) as resumed:
        await wait_for(
            lambda: any(m.get("seq", 0) >= last for m in resumed), what="B's resumed socket"
        )
    assert [m for m in resumed if m["seq"] <= last] == [m for m in upto_a if m["seq"] > middle]


async def test_a_reload_of_every_engine_reaches_each_and_says_which_did_not(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each engine reads its own files, so ``POST /v1/admin/reload`` acts on the engine asked;
    ``?engines=all`` sends it to every engine with a live address and reports each."""
    reloads = {"eng-a": 0, "eng-b": 0}
    for name, engine in (("eng-a", pair.a), ("eng-b", pair.b)):
        ivr = engine.ivr
        assert ivr is not None

        async def counted(real: Any = ivr.reload, name: str = name) -> Any:
            reloads[name] += 1
            return await real()

        monkeypatch.setattr(ivr, "reload", counted)
    status, own, reply = await pair.cb.request("POST", "/admin/reload")
    assert status == 200 and "engines" not in own and SERVED_BY_HEADER not in reply.headers
    assert reloads == {"eng-a": 0, "eng-b": 1}
    ghost = EngineDirectory(pair.redis, pair.prefix, "eng-gone")  # crashed: port closed
    await ghost.publish(f"http://127.0.0.1:{free_port()}")
    status, body, _ = await pair.cb.request("POST", "/admin/reload?engines=all")
    assert status == 200, body
    check("/v1/admin/reload", "post", 200, body)
    got = {e["instance"]: e for e in body["engines"]}
    assert {"eng-a", "eng-b", "eng-gone"} <= set(got)
    for name in ("eng-a", "eng-b"):
        assert got[name]["status"] == 200 and "flows" in got[name]["report"]["ivr"], got[name]
    assert got["eng-gone"]["status"] == 503
    assert got["eng-gone"]["error"]["error_id"] == "engine-unreachable"
    assert got["eng-gone"]["error"]["details"] == {"engine": "eng-gone", "sent": False}
    # Each engine reloaded once more: the hop to A was not sent on again.
    assert reloads == {"eng-a": 1, "eng-b": 2}
    status, body, _ = await pair.cb.request("POST", "/admin/reload?engines=some")
    assert (status, body["error_id"]) == (400, "invalid-parameter"), body
    await pair.redis.delete(ghost.key("eng-gone"))
