"""Tokens (create, list, revoke, expiry, cache across engines), rate limits, the WebSocket's
subprotocol and tickets, and the audit trail (rows, chain, append-only, verify CLI)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from engine.auth.roles import Role
from engine.auth.tokens import TokenAuthority, TokenRepository
from engine.store.pg.audit import AuditLog
from engine.store.pg.pool import PgStore
from tests.api.openapi_check import check, response_headers
from tests.api.security_rig import Rig, make_token, security_engine
from tests.campaign_rig import campaign_body
from tests.harness import ROOT, TOKEN, wait_for


@pytest.fixture(scope="module")
async def rig(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Rig]:
    async with security_engine(
        store_data_dir / "engine-security",
        pg_dsn=pg_dsn,
        redis_url=redis_url,
    ) as rig:
        yield rig


async def test_created_token_is_shown_once_listed_without_secret_and_revoked_at_once(
    rig: Rig,
) -> None:
    created = await make_token(rig.client, Role.SUPERVISOR, rate_per_s=1000.0)
    check("/v1/tokens", "post", 201, created)
    token = created["token"]
    status, _, _ = await rig.client.request("GET", "/trunks", token=token)
    assert status == 200
    status, listed, _ = await rig.client.request("GET", "/tokens")
    assert status == 200
    check("/v1/tokens", "get", 200, listed)
    row = next(t for t in listed["tokens"] if t["token_id"] == created["token_id"])
    assert row["role"] == "supervisor" and "token" not in row and token not in json.dumps(listed)
    status, revoked, _ = await rig.client.request("DELETE", f"/tokens/{created['token_id']}")
    assert status == 200 and revoked["revoked_at"] is not None, revoked
    status, body, _ = await rig.client.request("GET", "/trunks", token=token)
    assert (status, body["error_id"]) == (401, "invalid-token"), body
    status, listed, _ = await rig.client.request("GET", "/tokens")
    assert created["token_id"] not in {t["token_id"] for t in listed["tokens"]}


@pytest.mark.parametrize(
    "body",
    [
        {"label": "x", "role": "agent"},  # agent without its agent id
        {"label": "x", "role": "supervisor", "agent_id": "alice"},
        {"label": "x", "role": "agent", "agent_id": "nobody"},  # not a configured agent
        {"label": "x", "role": "root"},
        {"label": "", "role": "admin"},
        {"label": "x", "role": "admin", "expires_in_s": 5},
    ],
)
async def test_bad_token_requests_are_400(rig: Rig, body: dict[str, object]) -> None:
    status, data, _ = await rig.client.request("POST", "/tokens", json=body)
    assert status == 400, data
    check("/v1/tokens", "post", 400, data)


async def test_revocation_reaches_another_engine_within_the_cache_ttl(pg_store: PgStore) -> None:
    repo = TokenRepository(pg_store.pool)
    row, token = await repo.create(
        label="two engines",
        role=Role.INTEGRATION,
        agent_id=None,
        expires_at=None,
        rate_per_s=None,
        rate_burst=None,
        created_by="test",
    )
    here, there = (TokenAuthority([], repo, ttl_s=0.3) for _ in range(2))
    for authority in (here, there):
        identity = await authority.identify(token)
        assert identity is not None and identity.role is Role.INTEGRATION
    assert await repo.revoke(row.token_id) is not None
    # "there" still has it cached; within the TTL it looks again and refuses it.
    loop = asyncio.get_running_loop()
    started = loop.time()
    while await there.identify(token) is not None:
        assert loop.time() - started < 5, "revocation never reached the other cache"
        await asyncio.sleep(0.05)
    assert loop.time() - started < 0.3 + 0.5


async def test_expired_token_is_refused(pg_store: PgStore) -> None:
    repo = TokenRepository(pg_store.pool)
    now = [1_000_000.0]
    expires = datetime.now(UTC) + timedelta(hours=1)
    _, token = await repo.create(
        label="short",
        role=Role.AUDITOR,
        agent_id=None,
        expires_at=expires,
        rate_per_s=None,
        rate_burst=None,
        created_by="test",
    )
    authority = TokenAuthority([], repo, wall=lambda: now[0])
    now[0] = expires.timestamp() - 1
    assert await authority.identify(token) is not None
    now[0] = expires.timestamp()
    assert await authority.identify(token) is None


async def test_rate_limit_answers_429_with_retry_after(rig: Rig) -> None:
    created = await make_token(rig.client, Role.AUDITOR, rate_per_s=0.5, rate_burst=3)
    statuses = []
    for _ in range(5):
        status, body, response = await rig.client.request("GET", "/cdrs", token=created["token"])
        statuses.append(status)
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429], statuses
    assert body["error_id"] == "rate-limited"
    assert int(response.headers["Retry-After"]) >= 1
    check("/v1/cdrs", "get", 429, body)
    assert response_headers("/v1/cdrs", "get", 429)["Retry-After"]["required"]


def _ws(rig: Rig) -> str:
    return rig.client.base.replace("http", "ws") + "/events"


async def test_websocket_takes_the_token_as_a_subprotocol(rig: Rig) -> None:
    token = rig.tokens[Role.INTEGRATION]
    async with rig.client.http.ws_connect(
        _ws(rig), protocols=("telephony-engine.v1", f"bearer.{token}")
    ) as ws:
        # The server selects the protocol, never echoes the token.
        assert ws.protocol == "telephony-engine.v1"
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await rig.client.http.ws_connect(
            _ws(rig), protocols=("telephony-engine.v1", "bearer.te_not-a-real-token")
        )
    assert err.value.status == 401
    # An agent has no event stream (it carries every call's events).
    agent = rig.tokens[Role.AGENT]
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await rig.client.http.ws_connect(_ws(rig), protocols=(f"bearer.{agent}",))
    assert err.value.status == 403


async def test_websocket_ticket_is_single_use(rig: Rig) -> None:
    status, body, _ = await rig.as_role(Role.SUPERVISOR, "POST", "/events/ticket")
    assert status == 201, body
    check("/v1/events/ticket", "post", 201, body)
    url = f"{_ws(rig)}?ticket={body['ticket']}"
    async with rig.client.http.ws_connect(url) as ws:
        assert not ws.closed
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await rig.client.http.ws_connect(url)
    assert err.value.status == 401


async def _audit(rig: Rig, action: str) -> list[dict[str, object]]:
    status, page, _ = await rig.as_role(
        Role.AUDITOR, "GET", "/audit", params={"action": action, "limit": "1000"}
    )
    assert status == 200, page
    check("/v1/audit", "get", 200, page)
    entries: list[dict[str, object]] = page["entries"]
    return entries


async def test_mutating_requests_and_refusals_are_audited(rig: Rig) -> None:
    integration = await make_token(rig.client, Role.INTEGRATION)
    status, _, _ = await rig.client.request(
        "POST", "/trunks/self-trunk/enable", token=integration["token"]
    )
    assert status == 403
    status, _, _ = await rig.client.request("POST", "/trunks/self-trunk/enable")
    assert status == 200
    status, _, _ = await rig.client.request("GET", "/trunks")  # a read: no row
    assert status == 200

    actor = f"token:{integration['token_id']}"
    rows: list[dict[str, object]] = []

    def mine() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        # The session's database holds other modules' rows too: pick this test's.
        refused = [r for r in rows if r["actor"] == actor]
        done = [r for r in rows if r["result"] == "200" and r["target"] == "name=self-trunk"]
        return refused, done

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not all(mine()):
        assert loop.time() < deadline, rows
        await asyncio.sleep(0.1)
        rows[:] = await _audit(rig, "POST /v1/trunks/{name}/enable")
    (refused,), (done, *_) = mine()
    assert refused["result"] == "403"
    assert refused["role"] == "integration" and refused["target"] == "name=self-trunk"
    assert refused["source_ip"] == "127.0.0.1"
    assert done["actor"] == "token:bootstrap-1" and done["role"] == "admin"
    assert await _audit(rig, "GET /v1/trunks") == []


async def test_a_nul_character_in_an_audited_value_does_not_stop_the_audit_trail(
    rig: Rig, pg_store: PgStore
) -> None:
    # PostgreSQL text and jsonb refuse NUL: a request with %00 in an audited
    # value used to make its row fail forever and held every later audit row
    # in the outbox behind it (seen as a 10 s stop of every API test engine).
    log = AuditLog(pg_store.pool)
    row = await log.record(
        "test\x00actor", "nul-check", "/v1/cdrs?call_id=\x00", {"q": ["a\x00b"], "k\x00": 1}
    )
    stored = await pg_store.pool.fetchrow(
        "SELECT actor, target, details FROM audit_log WHERE id = $1", row
    )
    assert stored["actor"] == "test\ufffdactor"
    assert stored["target"] == "/v1/cdrs?call_id=\ufffd"
    assert dict(stored["details"]) == {"q": ["a\ufffdb"], "k\ufffd": 1}
    assert (await log.verify()).ok


async def test_audit_log_is_append_only_and_the_chain_catches_an_edit(
    rig: Rig, pg_dsn: str, pg_store: PgStore
) -> None:
    log = AuditLog(pg_store.pool)
    first = await log.record("test", "chain-check", "a", {"n": 1})
    await log.record("test", "chain-check", "b", {"n": 2})
    assert (await log.verify()).ok
    for sql in (
        "UPDATE audit_log SET target = 'x' WHERE id = $1",
        "DELETE FROM audit_log WHERE id = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pg_store.pool.execute(sql, first)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pg_store.pool.execute("TRUNCATE audit_log")
    assert _verify_cli(pg_dsn).returncode == 0

    # A superuser can switch the trigger off; the chain still shows the edit.
    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
            await conn.execute("UPDATE audit_log SET target = 'edited' WHERE id = $1", first)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
        report = await log.verify()
        assert (report.ok, report.broken_at) == (False, first)
        cli = _verify_cli(pg_dsn)
        assert cli.returncode == 1 and f"BROKEN at row id {first}" in cli.stdout, cli.stdout
    finally:
        # Put it back so the session's other tests see an intact chain.
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
            await conn.execute("UPDATE audit_log SET target = 'a' WHERE id = $1", first)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
        await conn.close()
    assert (await log.verify()).ok


def _verify_cli(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "audit", "verify", "--config", "/nonexistent.toml"],
        cwd=ROOT,
        env={**os.environ, "ENGINE_PG_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_audit_row_is_journalled_before_the_answer_and_then_stored(rig: Rig) -> None:
    # The row is journalled before the answer: it is in the lane at once, in PG soon after.
    lane = rig.engine.audit_lane
    assert lane is not None
    before = lane.journal.depth + lane.delivered
    status, _, _ = await rig.client.request("POST", "/trunks/self-trunk/enable", token=TOKEN)
    assert status == 200
    assert lane.journal.depth + lane.delivered == before + 1
    await wait_for(lambda: lane.journal.depth == 0, what="audit lane drained")


async def _audit_rows(
    rig: Rig, action: str, want: Callable[[list[dict[str, Any]]], object]
) -> list[dict[str, Any]]:
    """The rows of ``action`` once ``want(rows)`` holds (the audit lane delivers them)."""
    rows: list[dict[str, Any]] = []

    async def fetch() -> bool:
        rows[:] = await _audit(rig, action)
        return bool(want(rows))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not await fetch():
        assert loop.time() < deadline, (action, rows)
        await asyncio.sleep(0.1)
    return rows


async def test_a_supervisors_controls_are_in_the_audit_chain_with_actor_and_reason(
    rig: Rig,
) -> None:
    """Issue 14 item 4: a force-pause's and force-logout's reason, a move, and a campaign's
    pause and resume are audit rows (audit_log, chained by the lane's sink) naming the
    supervisor's token."""
    sup = await make_token(rig.client, Role.SUPERVISOR)
    actor = f"token:{sup['token_id']}"
    status, body, _ = await rig.client.request("POST", "/agents/bob/login", token=sup["token"])
    assert status == 200, body
    status, body, _ = await rig.client.request(
        "POST",
        "/agents/bob/force-pause",
        token=sup["token"],
        json={"reason": "break", "note": "coaching"},
    )
    assert status == 200 and body["pause_reason"] == "break", body
    check("/v1/agents/{agent_id}/force-pause", "post", 200, body)
    status, body, _ = await rig.client.request(
        "POST", "/agents/bob/force-logout", token=sup["token"], json={"reason": "end of shift"}
    )
    assert status == 200 and body["state"] == "logged_out", body
    status, body, _ = await rig.as_role(
        Role.AGENT, "POST", "/agents/alice/force-pause", json={"reason": "break"}
    )
    assert status == 403, body  # an agent cannot force anyone, itself included

    def mine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r["actor"] == actor]

    pause = mine(await _audit_rows(rig, "agent.force-pause", mine))[0]
    assert pause["target"] == "agent_id=bob" and pause["role"] == "supervisor"
    assert pause["details"]["reason"] == "break" and pause["details"]["note"] == "coaching"
    assert pause["details"]["applied"] is True
    logout = mine(await _audit_rows(rig, "agent.force-logout", mine))[0]
    assert logout["details"]["reason"] == "end of shift"
    routed = await _audit_rows(rig, "POST /v1/agents/{agent_id}/force-pause", mine)
    assert mine(routed)[0]["result"] == "200"

    # A campaign paused and resumed by the supervisor: both rows name it.
    created = await rig.client.request(
        "POST",
        "/campaigns",
        json=campaign_body(
            f"audit-{os.getpid()}", 60, trunk_group="sandbox-outbound", queue="fuzz-queue"
        ),
    )
    assert created[0] == 201, created[1]
    cid = created[1]["id"]
    for verb, want in (("start", "running"), ("pause", "paused"), ("start", "running")):
        status, body, _ = await rig.client.request(
            "POST", f"/campaigns/{cid}/{verb}", token=sup["token"]
        )
        assert status == 200 and body["state"] == want, body
    await rig.client.request("POST", f"/campaigns/{cid}/stop")
    target = f"id={cid}"
    paused = await _audit_rows(
        rig, "campaign.pause", lambda r: [x for x in mine(r) if x["target"] == target]
    )
    assert [(r["details"]["from"], r["details"]["to"]) for r in mine(paused)] == [
        ("running", "paused")
    ]
    resumed = await _audit_rows(
        rig, "campaign.start", lambda r: len([x for x in mine(r) if x["target"] == target]) == 2
    )
    assert sorted(r["details"]["to"] for r in mine(resumed) if r["target"] == target) == [
        "running",
        "running",
    ]
