"""Export and erase leave the data as documented (docs/privacy.md): a real engine, real
PostgreSQL and Redis, real encrypted recordings in its store. One person has contacts in two
campaigns, attempts, inbound and outbound CDRs in several spellings of their number, three
recordings (one tampered, one under legal hold) and a stored webhook event; another person
has the same kinds of rows, which must come out of every step untouched."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import math
import struct
import uuid
import wave
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.auth.roles import Role
from engine.privacy import store as privacy_store
from engine.privacy.subject import parse_key
from engine.recordings import crypto
from engine.recordings.service import clock_day
from tests.api.openapi_check import check
from tests.api.security_rig import Rig, security_engine

SUBJECT, OTHER = "+14155550123", "+14155550187"
STARTED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
C_OUT, C_IN, C_HELD, C_OTHER = (f"dsr-{n}-{uuid.uuid4().hex[:8]}" for n in range(4))
R_OK, R_TAMPERED, R_HELD, R_OTHER = (uuid.uuid4() for _ in range(4))
CAMPAIGN_A, CAMPAIGN_B = (f"dsr-{n}-{uuid.uuid4().hex[:8]}" for n in "ab")


@pytest.fixture(scope="module")
async def rig(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Rig]:
    data = store_data_dir / "engine-dsr"
    extra = f'\n[recordings]\nstore_dir = "{data / "recordings"}"\n'
    async with security_engine(data, pg_dsn=pg_dsn, redis_url=redis_url, extra=extra) as rig:
        yield rig
        # The session's database is shared by the API tests that follow: their engines have
        # other KEKs, and a recording of ours listed there would be a 500 (unknown KEK) or a
        # 410 to them (the fuzz run reads every recording it can list).
        await _pool(rig).execute(
            "DELETE FROM recordings WHERE recording_id = ANY($1::uuid[])",
            [R_OK, R_TAMPERED, R_HELD, R_OTHER],
        )


def _pool(rig: Rig) -> asyncpg.Pool:
    assert rig.engine.pg is not None
    return rig.engine.pg.pool


def _wav(seconds: float, hz: float) -> bytes:
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / 8000)))
        for i in range(int(8000 * seconds))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    return out.getvalue()


async def _recording(rig: Rig, rid: uuid.UUID, call_id: str, audio: bytes, hold: bool) -> Path:
    """An encrypted recording as the service stores one: file in the store, key in the row."""
    recordings = rig.engine.recordings
    assert recordings is not None
    rel = f"{clock_day(STARTED.timestamp())}/{rid}.enc"
    path = recordings.store_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    key = crypto.new_data_key()
    with path.open("wb") as fh:
        sealed = crypto.encrypt_stream([audio], fh, key, rid, 4096)
    kid, wrapped = recordings.keys.wrap(key, rid)
    await _pool(rig).execute(
        "INSERT INTO recordings (recording_id, call_id, switch, started_at, ended_at, duration_s,"
        " channels, pause_mode, sample_rate, state, key_id, wrapped_key, size, encrypted_size,"
        " sha256, file, legal_hold) VALUES ($1, $2, 'asterisk-1', $3, $4, 1.0, 'mono',"
        " 'silence', 8000, 'ready', $5, $6, $7, $8, $9, $10, $11)",
        rid,
        call_id,
        STARTED,
        STARTED + timedelta(seconds=1),
        kid,
        wrapped,
        sealed.size,
        sealed.encrypted_size,
        sealed.sha256,
        rel,
        hold,
    )
    return path


async def _cdr(rig: Rig, call_id: str, direction: str, **cols: Any) -> None:
    row = {
        "caller_id_num": "+18005550000",
        "caller_id_name": "Acme",
        "destination": "100",
        "channel": "PJSIP/carrier-00000001",
        "variables": {},
        **cols,
    }
    await _pool(rig).execute(
        "INSERT INTO cdr (call_id, switch, direction, channel, caller_id_num, caller_id_name,"
        " destination, started_at, answered_at, ended_at, final_state, variables)"
        " VALUES ($1, 'asterisk-1', $2, $3, $4, $5, $6, $7, $7, $8, 'ended', $9)",
        call_id,
        direction,
        row["channel"],
        row["caller_id_num"],
        row["caller_id_name"],
        row["destination"],
        STARTED,
        STARTED + timedelta(seconds=30),
        row["variables"],
    )


async def _seed(rig: Rig) -> dict[str, Any]:
    pool = _pool(rig)
    for cid in (CAMPAIGN_A, CAMPAIGN_B):
        await pool.execute(
            "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2)",
            cid,
            # a valid spec: every engine of the test session loads every campaign
            {"trunk_group": "outbound", "queue": "sales"},
        )
    for cid, phone, name in (
        (CAMPAIGN_A, SUBJECT, "Ada"),
        (CAMPAIGN_B, SUBJECT, "Ada L."),
        (CAMPAIGN_A, OTHER, "Bob"),
    ):
        await pool.execute(
            "INSERT INTO contacts (campaign_id, phone, tz, fields, state)"
            " VALUES ($1, $2, 'America/Los_Angeles', $3, 'done')",
            cid,
            phone,
            {"name": name},
        )
    contact = await pool.fetchval(
        "SELECT contact_id FROM contacts WHERE campaign_id = $2 AND phone = $1",
        SUBJECT,
        CAMPAIGN_A,
    )
    other_contact = await pool.fetchval(
        "SELECT contact_id FROM contacts WHERE campaign_id = $2 AND phone = $1",
        OTHER,
        CAMPAIGN_A,
    )
    for aid, cid, call, phone, dialed in (
        ("a-subject", contact, C_OUT, SUBJECT, "0014155550123"),
        ("a-other", other_contact, C_OTHER, OTHER, "0014155550187"),
    ):
        await pool.execute(
            "INSERT INTO campaign_attempts (attempt_id, campaign_id, contact_id, call_id, fence,"
            " seq, state, phone, dialed_number, outcome) VALUES ($1, $6, $2, $3, 1, 1,"
            " 'done', $4, $5, 'answered')",
            aid + C_OUT,
            cid,
            call,
            phone,
            dialed,
            CAMPAIGN_A,
        )
    # outbound campaign call (dialled with an international prefix), an inbound call in the
    # national spelling with the caller's name, and a FreeSWITCH leg naming the number
    await _cdr(rig, C_OUT, "outbound", destination="0014155550123")
    await _cdr(
        rig,
        C_IN,
        "inbound",
        caller_id_num="4155550123",
        caller_id_name="Ada Lovelace",
        variables={"CALLER": SUBJECT, "QUEUE": "sales"},
    )
    await _cdr(rig, C_HELD, "outbound", destination=SUBJECT, channel=f"sofia/gw/gw1/{SUBJECT}")
    await _cdr(
        rig, C_OTHER, "outbound", destination="0014155550187", channel="PJSIP/carrier-00000009"
    )
    audio = {rid: _wav(0.6, hz) for rid, hz in ((R_OK, 440), (R_TAMPERED, 660), (R_HELD, 880))}
    audio[R_OTHER] = _wav(0.3, 300)
    paths = {
        R_OK: await _recording(rig, R_OK, C_IN, audio[R_OK], False),
        R_TAMPERED: await _recording(rig, R_TAMPERED, C_OUT, audio[R_TAMPERED], False),
        R_HELD: await _recording(rig, R_HELD, C_HELD, audio[R_HELD], True),
        R_OTHER: await _recording(rig, R_OTHER, C_OTHER, audio[R_OTHER], False),
    }
    blob = bytearray(paths[R_TAMPERED].read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one flipped bit in a frame
    paths[R_TAMPERED].write_bytes(bytes(blob))
    for call, dest in ((C_IN, "4155550123"), (C_OTHER, "0014155550187")):
        await pool.execute(
            "INSERT INTO webhook_events (event_id, type, order_key, occurred_at, payload)"
            " VALUES ($1, 'call.ended', $2, now(), $3)",
            f"ev-{call}",
            f"call:{call}",
            {"cdr": {"call_id": call, "caller_id_num": dest}},
        )
    return {"audio": audio, "paths": paths}


async def _post_zip(rig: Rig, path: str, body: dict[str, Any]) -> zipfile.ZipFile:
    client = rig.client
    headers = {"Authorization": f"Bearer {rig.tokens[Role.ADMIN]}"}
    async with client.http.post(client.base + path, json=body, headers=headers) as r:
        data = await r.read()
        assert r.status == 200, data[:500]
        assert r.content_type == "application/zip"
        assert r.headers["Cache-Control"] == "no-store"
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    return archive


def _json(archive: zipfile.ZipFile, name: str) -> Any:
    return json.loads(archive.read(name))


def _pseudonym(rig: Rig, phone: str) -> str:
    # The documented setting: with no [privacy] key source the engine generated
    # <data_dir>/pseudonym-key; the pseudonym is HMAC-SHA256 under it, 128 bits in hex.
    data_dir = Path(rig.engine.config.engine.data_dir)
    key = parse_key((data_dir / "pseudonym-key").read_text(), "test")
    return "anon-" + hmac.new(key.secret, phone.encode(), hashlib.sha256).hexdigest()[:32]


async def _audit_rows(rig: Rig, action: str, target: str, count: int) -> list[asyncpg.Record]:
    # Audit rows reach PostgreSQL through the outbox's audit lane, a moment after the answer.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        rows = await _pool(rig).fetch(
            "SELECT * FROM audit_log WHERE action = $1 AND target = $2 ORDER BY id", action, target
        )
        if len(rows) >= count:
            return list(rows)
        assert loop.time() < deadline, f"no audit row {action} {target}"
        await asyncio.sleep(0.05)


async def test_export_then_erase(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = await _seed(rig)
    pool = _pool(rig)
    pseudonym = _pseudonym(rig, SUBJECT)

    # ---- export, audio included; the number written nationally with a region
    archive = await _post_zip(
        rig,
        "/data-subjects/export",
        {"phone": "(415) 555-0123", "region": "US", "include_audio": True},
    )
    manifest = _json(archive, "manifest.json")
    assert manifest["phone"] == SUBJECT
    contacts = _json(archive, "contacts.json")
    assert sorted((c["campaign_id"], c["fields"]["name"]) for c in contacts) == [
        (CAMPAIGN_A, "Ada"),
        (CAMPAIGN_B, "Ada L."),
    ]
    assert [a["phone"] for a in _json(archive, "attempts.json")] == [SUBJECT]
    assert sorted(c["call_id"] for c in _json(archive, "cdrs.json")) == sorted(
        [C_OUT, C_IN, C_HELD]
    )
    recs = {r["recording_id"]: r for r in _json(archive, "recordings.json")}
    assert set(recs) == {str(R_OK), str(R_TAMPERED), str(R_HELD)}
    assert recs[str(R_HELD)]["legal_hold"] is True
    assert _json(archive, "dnc.json") == []
    # decrypted audio equals what was recorded; the tampered one is an error entry, no audio
    assert archive.read(f"audio/{R_OK}.wav") == seeded["audio"][R_OK]
    assert archive.read(f"audio/{R_HELD}.wav") == seeded["audio"][R_HELD]
    assert f"audio/{R_TAMPERED}.wav" not in archive.namelist()
    (error,) = manifest["audio_errors"]
    assert error["recording_id"] == str(R_TAMPERED)
    assert error["error_id"] == "recording-integrity-error"
    assert "frame" in error["message"]
    assert manifest["counts"] == {
        "contacts": 2,
        "attempts": 1,
        "cdrs": 3,
        "recordings": 3,
        "dnc": 0,
        "audio": 2,
    }
    # no other person's data anywhere in the archive
    for name in archive.namelist():
        if name.endswith(".json"):
            assert "5550187" not in archive.read(name).decode(), name

    # ---- bad requests name the field
    status, body, _ = await rig.as_role(
        Role.ADMIN, "POST", "/data-subjects/export", json={"phone": "12"}
    )
    assert (status, body["error_id"]) == (400, "invalid-phone"), body
    assert body["message"].startswith("phone: ") and body["details"] == {"field": "phone"}
    check("/v1/data-subjects/export", "POST", 400, body)
    status, body, _ = await rig.as_role(
        Role.ADMIN, "POST", "/data-subjects/erase", json={"phone": SUBJECT, "region": "UK"}
    )
    assert status == 400 and "region" in body["message"], body
    status, body, _ = await rig.as_role(
        Role.SUPERVISOR, "POST", "/data-subjects/erase", json={"phone": SUBJECT}
    )
    assert (status, body["error_id"]) == (403, "forbidden")

    # ---- the engine dies half way through the erase: nothing has changed
    async def lost(*_: Any) -> None:
        raise OSError("connection lost")

    with monkeypatch.context() as m:
        m.setattr(privacy_store, "_webhook_events", lost)
        status, body, _ = await rig.as_role(
            Role.ADMIN, "POST", "/data-subjects/erase", json={"phone": SUBJECT}
        )
    assert (status, body["error_id"]) == (503, "storage-unavailable"), body
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE phone = $1", SUBJECT) == 2
    assert (
        await pool.fetchval("SELECT state FROM recordings WHERE recording_id = $1", R_OK) == "ready"
    )

    # ---- erase
    status, body, _ = await rig.as_role(
        Role.ADMIN, "POST", "/data-subjects/erase", json={"phone": SUBJECT}
    )
    assert status == 200, body
    check("/v1/data-subjects/erase", "POST", 200, body)
    assert body == {
        "phone": SUBJECT,
        "pseudonym": pseudonym,
        "complete": False,  # one recording is under legal hold
        "contacts_deleted": 2,
        "attempts_pseudonymised": 1,
        "cdrs_pseudonymised": 3,
        "webhook_events_scrubbed": 1,
        "recordings_shredded": 2,
        "recording_files_removed": 2,
        "recordings_held": [str(R_HELD)],
        "calls_in_progress": 0,
        "dnc_added": True,
    }
    await _check_erased(rig, seeded, pseudonym)

    # ---- a crash after the commit left a file (and a key file) behind: a rerun removes them
    # and changes nothing else
    leftover = seeded["paths"][R_OK]
    leftover.write_bytes(b"ciphertext left by a crash")
    leftover.with_suffix(".key").write_text("kid:AAAA")
    status, body, _ = await rig.as_role(
        Role.ADMIN, "POST", "/data-subjects/erase", json={"phone": SUBJECT}
    )
    assert status == 200, body
    assert body["recording_files_removed"] == 2 and not leftover.exists()
    assert (body["contacts_deleted"], body["cdrs_pseudonymised"], body["dnc_added"]) == (
        0,
        0,
        False,
    )
    assert body["recordings_held"] == [str(R_HELD)] and body["complete"] is False

    # ---- the hold is lifted: the next erase completes
    status, _, _ = await rig.as_role(
        Role.ADMIN, "PATCH", f"/recordings/{R_HELD}", json={"legal_hold": False}
    )
    assert status == 200
    status, body, _ = await rig.as_role(
        Role.ADMIN, "POST", "/data-subjects/erase", json={"phone": "+1 (415) 555-0123"}
    )
    assert status == 200, body
    assert body["complete"] is True and body["recordings_shredded"] == 1, body
    assert not seeded["paths"][R_HELD].exists()

    # ---- an export now holds only the DNC entry
    archive = await _post_zip(rig, "/data-subjects/export", {"phone": SUBJECT})
    assert _json(archive, "contacts.json") == []
    assert _json(archive, "cdrs.json") == []
    assert _json(archive, "recordings.json") == []
    assert [(d["campaign_id"], d["source"]) for d in _json(archive, "dnc.json")] == [
        (None, "erasure")
    ]

    # ---- audit: rows with the pseudonym, never the number; the chain verifies
    target = f"subject={pseudonym}"
    exports = await _audit_rows(rig, "data-subject.export", target, 2)
    erases = await _audit_rows(rig, "data-subject.erase", target, 3)
    assert [r["result"] for r in erases] == ["partial", "partial", "ok"]
    assert exports[0]["actor"].startswith("token:tok_") and exports[0]["role"] == "admin"
    assert exports[0]["details"]["include_audio"] is True
    for row in (*exports, *erases):
        assert "5550123" not in json.dumps(dict(row), default=str)
    assert rig.engine.audit_log is not None
    report = await rig.engine.audit_log.verify()
    assert report.ok, report


async def _check_erased(rig: Rig, seeded: dict[str, Any], pseudonym: str) -> None:
    pool = _pool(rig)
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE phone = $1", SUBJECT) == 0
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE phone = $1", OTHER) == 1
    # recordings: the data key is gone, the file too; the held one and the other's untouched
    rows = {
        r["recording_id"]: r
        for r in await pool.fetch("SELECT recording_id, state, wrapped_key FROM recordings")
    }
    for rid in (R_OK, R_TAMPERED):
        assert (rows[rid]["state"], rows[rid]["wrapped_key"]) == ("deleted", None)
        assert not seeded["paths"][rid].exists()
    for rid in (R_HELD, R_OTHER):
        assert rows[rid]["state"] == "ready" and rows[rid]["wrapped_key"] is not None
        assert seeded["paths"][rid].exists()
    status, body, _ = await rig.as_role(Role.ADMIN, "GET", f"/recordings/{R_OK}/audio")
    assert (status, body["error_id"]) == (410, "recording-deleted")
    # CDRs and attempts: the number replaced by the keyed pseudonym in every spelling
    cdrs = {
        r["call_id"]: r
        for r in await pool.fetch(
            "SELECT * FROM cdr WHERE call_id = ANY($1::text[])", [C_OUT, C_IN, C_HELD, C_OTHER]
        )
    }
    assert cdrs[C_OUT]["destination"] == pseudonym
    assert (cdrs[C_IN]["caller_id_num"], cdrs[C_IN]["caller_id_name"]) == (pseudonym, "")
    assert cdrs[C_IN]["variables"] == {"CALLER": pseudonym, "QUEUE": "sales"}
    assert cdrs[C_HELD]["destination"] == pseudonym
    assert cdrs[C_HELD]["channel"] == f"sofia/gw/gw1/{pseudonym}"
    assert cdrs[C_OTHER]["destination"] == "0014155550187"
    assert cdrs[C_OUT]["caller_id_name"] == "Acme"  # our own caller id stays
    attempts = {
        r["call_id"]: r
        for r in await pool.fetch(
            "SELECT call_id, phone, dialed_number FROM campaign_attempts"
            " WHERE call_id = ANY($1::text[])",
            [C_OUT, C_OTHER],
        )
    }
    assert (attempts[C_OUT]["phone"], attempts[C_OUT]["dialed_number"]) == (pseudonym, pseudonym)
    assert (attempts[C_OTHER]["phone"], attempts[C_OTHER]["dialed_number"]) == (
        OTHER,
        "0014155550187",
    )
    events = {
        r["order_key"]: r["payload"]
        for r in await pool.fetch("SELECT order_key, payload FROM webhook_events")
    }
    assert events[f"call:{C_IN}"]["cdr"]["caller_id_num"] == pseudonym
    assert events[f"call:{C_OTHER}"]["cdr"]["caller_id_num"] == "0014155550187"
    # on the global DNC list
    assert (
        await pool.fetchval("SELECT source FROM dnc WHERE campaign_id = '' AND phone = $1", SUBJECT)
        == "erasure"
    )
    # nowhere in these tables is the number left
    for table in ("cdr", "campaign_attempts", "contacts", "webhook_events"):
        text = await pool.fetchval(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t")
        assert "5550123" not in text, table


async def test_a_call_in_progress_leaves_the_erase_incomplete_until_a_rerun(rig: Rig) -> None:
    pool = _pool(rig)
    phone, campaign = "+14155550199", f"dsr-p-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2)",
        campaign,
        {"trunk_group": "outbound", "queue": "sales"},
    )
    contact = await pool.fetchval(
        "INSERT INTO contacts (campaign_id, phone, tz, state) VALUES ($1, $2,"
        " 'America/Los_Angeles', 'dialing') RETURNING contact_id",
        campaign,
        phone,
    )
    call = f"dsr-live-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        "INSERT INTO campaign_attempts (attempt_id, campaign_id, contact_id, call_id, fence, seq,"
        " state, phone, dialed_number) VALUES ($1, $2, $3, $4, 1, 1, 'dialing', $5, $6)",
        "live" + call,
        campaign,
        contact,
        call,
        phone,
        phone[1:],
    )
    erase = {"json": {"phone": phone}}
    status, body, _ = await rig.as_role(Role.ADMIN, "POST", "/data-subjects/erase", **erase)
    assert status == 200, body
    assert (body["complete"], body["calls_in_progress"], body["contacts_deleted"]) == (
        False,
        1,
        1,
    )
    # the call ends and its CDR lands after the erase, with the number in it
    await pool.execute("UPDATE campaign_attempts SET state = 'done' WHERE call_id = $1", call)
    await _cdr(rig, call, "outbound", destination=phone[1:])
    status, body, _ = await rig.as_role(Role.ADMIN, "POST", "/data-subjects/erase", **erase)
    assert status == 200, body
    assert (body["complete"], body["cdrs_pseudonymised"], body["calls_in_progress"]) == (
        True,
        1,
        0,
    )
    assert (
        await pool.fetchval("SELECT destination FROM cdr WHERE call_id = $1", call)
        == body["pseudonym"]
    )
