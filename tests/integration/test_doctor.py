"""``python -m engine doctor`` against real PostgreSQL and Redis, the fake AMI peer replaying
the sandbox's answers (tests/fixtures/asterisk-22/transcripts/doctor.ami), and a switch that
is not there."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

from engine.config import load_config
from engine.doctor.run import diagnose, report
from engine.doctor.verdicts import Status
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.locks import Leases
from tests.fakes.fake_ami import FakeAmiServer
from tests.harness import engine_config_text
from tests.integration.engine_process import free_port


async def test_doctor_reports_ok_lines_and_fails_on_an_unreachable_switch(
    pg_store: PgStore,
    pg_dsn: str,
    redis_url: str,
    redis_store: RedisStore,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "rec").mkdir()
    dead_port = free_port()  # nothing listens there
    extra = f"""
[[switches]]
kind = "asterisk"
name = "asterisk-2"
host = "127.0.0.1"
port = {dead_port}
username = "engine"
secret = "enginesecret"
[recordings.switches.asterisk-1]
switch_dir = "/var/spool/asterisk/monitor/engine"
engine_dir = "{tmp_path / "rec"}"
"""
    campaign = f"doctor-{uuid.uuid4().hex[:8]}"
    async with FakeAmiServer("doctor.ami") as fake:
        config = tmp_path / "engine.toml"
        config.write_text(
            engine_config_text(
                pg_dsn=pg_dsn,
                redis_url=redis_url,
                prefix=redis_prefix,
                data_dir=tmp_path / "engine",
                ami_port=fake.port,
                extra=extra,
            )
        )
        cfg = load_config(config)
        # A running campaign whose runner (engine-7) holds its lease.
        await pg_store.pool.execute(
            "INSERT INTO campaigns (campaign_id, spec, state) VALUES ($1, $2::jsonb, 'running')",
            campaign,
            json.dumps({}),
            timeout=5,
        )
        try:
            token = await Leases(redis_store.client, redis_prefix, "engine-7").acquire(
                f"campaign:{campaign}", 60_000
            )
            findings = await diagnose(cfg, timeout_s=1.0)
        finally:
            await pg_store.pool.execute(
                "DELETE FROM campaigns WHERE campaign_id = $1", campaign, timeout=5
            )
    status = {f.check: f.status for f in findings}
    message = {f.check: f.message for f in findings}
    out = io.StringIO()
    assert report(findings, out) == 1, out.getvalue()
    text = out.getvalue()
    print(text)

    for check in (
        "switch asterisk-1: AMI login",
        "switch asterisk-1: event filters",
        "switch asterisk-1: AMI permissions",
        "postgresql",
        "postgresql: clock",
        "postgresql: migrations",
        "redis",
        "redis: clock",
        "outbox disk",
        "recordings of asterisk-1",
        f"leases: campaign {campaign}",
    ):
        assert status[check] is Status.OK, text
    assert f"engine-7 (fencing token {token})" in message[f"leases: campaign {campaign}"]
    # The fake replays the Ping reply recorded from the sandbox, Timestamp and all: a clock
    # that stopped at the recording, which the doctor reports as behind.
    assert status["switch asterisk-1: clock"] is Status.FAIL
    assert "behind" in message["switch asterisk-1: clock"]
    assert status["switch asterisk-2: AMI login"] is Status.FAIL
    assert f"127.0.0.1:{dead_port}" in message["switch asterisk-2: AMI login"]
    assert status["leases: switches and queues"] is Status.SKIP
    assert "FAIL  switch asterisk-2: AMI login" in text and "| fix: " in text
    # The doctor logged in once as user engine and sent only read-only actions.
    assert fake.login_attempts == 1
    sent = {a.name for a in fake.received}
    assert sent <= {"Login", "Filter", "ListCommands", "Ping", "Logoff"}, sent


async def test_doctor_esl_auth_against_the_fake_freeswitch() -> None:
    from pydantic import SecretStr

    from engine.core.config import FreeSwitchSwitch
    from engine.doctor import probes
    from tests.fakes.fake_esl import FakeFreeSwitch

    async with FakeFreeSwitch(password="s3cret-pw") as fake:

        def switch(password: str) -> FreeSwitchSwitch:
            return FreeSwitchSwitch(
                kind="freeswitch",
                name="fs-1",
                host="127.0.0.1",
                port=fake.port,
                password=SecretStr(password),
            )

        right = await probes.freeswitch(switch("s3cret-pw"), 2.0)
        assert [f.status for f in right] == [Status.OK, Status.SKIP]
        wrong = (await probes.freeswitch(switch("ClueCon"), 2.0))[0]
        assert wrong.status is Status.FAIL and "-ERR invalid" in wrong.message
        assert fake.auth_failures == 1
        fake.reject_all = True  # apply-inbound-acl refusing this host
        acl = (await probes.freeswitch(switch("s3cret-pw"), 2.0))[0]
        assert acl.status is Status.FAIL and "ACL" in acl.message
    closed = (await probes.freeswitch(switch("s3cret-pw"), 2.0))[0]
    assert closed.status is Status.FAIL and "apply-inbound-acl" in closed.fix


async def test_doctor_names_unreachable_storage(tmp_path: Path) -> None:
    from engine.doctor import probes

    dead = free_port()
    config = tmp_path / "engine.toml"
    config.write_text(
        engine_config_text(
            pg_dsn=f"postgresql://engine:Zq9-doctor-secret@127.0.0.1:{dead}/engine",
            redis_url=f"redis://127.0.0.1:{dead}/0",
            prefix="doctor:",
            data_dir=tmp_path / "engine",
        )
    )
    cfg = load_config(config)
    (pg,) = await probes.postgres(cfg, 2.0)
    (redis,) = await probes.redis(cfg, 2.0)
    assert pg.status is Status.FAIL and "pg_hba.conf" in pg.fix, pg.line()
    assert redis.status is Status.FAIL and f"127.0.0.1:{dead}" in redis.message, redis.line()
    assert "Zq9-doctor-secret" not in pg.line() + redis.line()  # no password in the report
