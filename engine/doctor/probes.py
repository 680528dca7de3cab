"""The doctor's probes: each one talks to one part of the deployment, under a timeout, and hands
what it measured to a verdict (engine/doctor/verdicts.py). Nothing here changes anything: AMI
gets Login, Filter (per session), ListCommands, Ping and Logoff; ESL gets ``auth``; PostgreSQL
and Redis get reads only (migrations are *compared*, never applied)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import asyncpg

from engine.cluster.membership import Membership
from engine.cluster.policy import placement, preferred
from engine.config import EngineConfig
from engine.core.config import AsteriskSwitch, FreeSwitchSwitch
from engine.doctor.verdicts import (
    Finding,
    Holder,
    PathAccess,
    Status,
    ami_event_filters,
    ami_permissions,
    campaign_beside_queue,
    campaign_leases,
    clock_skew,
    directory_access,
    disk_space,
    esl_auth,
    migrations,
    ok,
    owned_leases,
    readable_path,
)
from engine.pbx.asterisk.ami_client import AmiClient
from engine.pbx.asterisk.events import EVENT_FILTERS
from engine.pbx.base import LinkState
from engine.store.errors import MigrationError
from engine.store.pg.migrations import applied_migrations, load_migrations, plan
from engine.store.redis.client import RedisStore
from engine.store.redis.locks import Leases


async def asterisk(sw: AsteriskSwitch, timeout_s: float) -> list[Finding]:
    """Login as the engine does (same client, same event filters), then ask which actions the
    user may send (ListCommands) and the switch's clock (Ping's ``Timestamp``)."""
    check = f"switch {sw.name}"
    client = AmiClient(
        sw.host,
        sw.port,
        sw.username,
        sw.secret.get_secret_value(),
        name=f"doctor-{sw.name}",
        action_timeout_s=timeout_s,
        ping_interval_s=3600.0,  # no watchdog pings: the doctor sends its own, once
        connect_timeout_s=timeout_s,
        event_filters=EVENT_FILTERS,
    )
    await client.start()
    try:
        try:
            state = await client.wait_for_state(
                LinkState.UP, LinkState.REJECTED, timeout_s=timeout_s
            )
        except TimeoutError:
            state = client.state
        if state is not LinkState.UP:
            return [
                Finding(
                    f"{check}: AMI login",
                    Status.FAIL,
                    f"{sw.host}:{sw.port} as {sw.username!r}: {client.reason or state.value}",
                    "check that Asterisk runs, manager.conf `bindaddr`/`port`, the user's "
                    "`permit`, the firewall, and [[switches]] username/secret",
                )
            ]
        findings = [ok(f"{check}: AMI login", f"{sw.host}:{sw.port} as {sw.username!r}")]
        findings.append(
            ami_event_filters(f"{check}: event filters", client.filters_enabled, len(EVENT_FILTERS))
        )
        findings.append(await _ami_permissions(client, f"{check}: AMI permissions", timeout_s))
        findings.append(await _ami_clock(client, f"{check}: clock", timeout_s))
        return findings
    finally:
        await client.stop()


async def _ami_permissions(client: AmiClient, check: str, timeout_s: float) -> Finding:
    try:
        reply = await client.send_action("ListCommands", timeout_s=timeout_s)
    except Exception as err:  # any failure is the verdict
        return Finding(check, Status.FAIL, f"ListCommands failed: {err}", "see the AMI login")
    # Each header of the reply is one action the user may send: "Originate: <synopsis>".
    listed = [name for name, _ in reply.headers if name not in ("Response", "ActionID")]
    return ami_permissions(check, listed)


async def _ami_clock(client: AmiClient, check: str, timeout_s: float) -> Finding:
    sent = time.time()
    try:
        reply = await client.send_action("Ping", timeout_s=timeout_s)
    except Exception as err:
        return Finding(check, Status.WARN, f"Ping failed: {err}", "see the AMI login")
    received = time.time()
    # Asterisk's Ping reply carries its clock ("Timestamp: 1796387209.996256").
    stamp = reply.headers.get("Timestamp", "") or ""
    try:
        remote = float(stamp)
    except ValueError:
        return Finding(check, Status.SKIP, "Asterisk's Ping reply has no Timestamp")
    return clock_skew(check, remote - (sent + received) / 2, (received - sent) / 2)


async def freeswitch(sw: FreeSwitchSwitch, timeout_s: float) -> list[Finding]:
    """The inbound event socket: banner ``auth/request``, then ``auth <password>``."""
    check = f"switch {sw.name}: ESL auth"
    try:
        reply = await asyncio.wait_for(_esl_auth(sw), timeout_s)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
        return [
            Finding(
                check,
                Status.FAIL,
                f"{sw.host}:{sw.port}: {err or type(err).__name__}",
                "check that FreeSWITCH runs, event_socket.conf.xml `listen-ip`/`listen-port`, "
                "its `apply-inbound-acl`, and the firewall",
            )
        ]
    acl_rejected, text = reply
    return [
        esl_auth(check, text, acl_rejected=acl_rejected),
        Finding(
            f"switch {sw.name}: clock",
            Status.SKIP,
            "not read over ESL (compare the FreeSWITCH host's NTP status by hand)",
        ),
    ]


async def _esl_auth(sw: FreeSwitchSwitch) -> tuple[bool, str]:
    """(refused by the ACL, the ``Reply-Text`` to ``auth``)."""
    reader, writer = await asyncio.open_connection(sw.host, sw.port)
    try:
        banner = await reader.readuntil(b"\n\n")
        if b"text/rude-rejection" in banner:
            return True, ""
        if b"auth/request" not in banner:
            return False, f"unexpected greeting {banner[:60]!r}"
        writer.write(f"auth {sw.password.get_secret_value()}\n\n".encode())
        await writer.drain()
        head = (await reader.readuntil(b"\n\n")).decode(errors="replace")
        for line in head.splitlines():
            if line.startswith("Reply-Text:"):
                return False, line.split(":", 1)[1].strip()
        return False, ""
    finally:
        writer.close()


async def postgres(cfg: EngineConfig, timeout_s: float) -> list[Finding]:
    dsn = cfg.storage.postgres_dsn.get_secret_value()
    if not dsn:
        return [
            Finding(
                "postgresql",
                Status.WARN,
                "no postgres_dsn: the engine starts an embedded server under data_dir "
                "(one box only; not checked here)",
                "point [storage] postgres_dsn (or ENGINE_PG_DSN) at a real server in production",
            )
        ]
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s, command_timeout=timeout_s)
    except Exception as err:  # asyncpg raises many kinds; all mean "unreachable"
        return [
            Finding(
                "postgresql",
                Status.FAIL,
                f"cannot connect: {type(err).__name__}: {err}",
                "check the DSN's host, port, user and password, pg_hba.conf, and the firewall",
            )
        ]
    try:
        sent = time.time()
        server_now = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        received = time.time()
        version = await conn.fetchval("SHOW server_version")
        findings = [ok("postgresql", f"reachable, server {version}")]
        findings.append(
            clock_skew(
                "postgresql: clock",
                float(server_now) - (sent + received) / 2,
                (received - sent) / 2,
            )
        )
        findings.append(await _migrations(conn))
        findings.extend(await _leases(cfg, conn, timeout_s))
        return findings
    finally:
        await asyncio.wait_for(conn.close(), timeout_s)


async def _migrations(conn: asyncpg.Connection) -> Finding:
    check = "postgresql: migrations"
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    available = load_migrations()
    applied = await applied_migrations(conn) if exists else []
    try:
        pending = plan(available, applied)
    except MigrationError as err:
        return migrations(check, [], str(err))
    return migrations(check, [m.path.name for m in pending], None)


# Redis is checked on its own line: the lease lines only say they could not look.
_LEASES_FIX = "fix the redis check first (same URL, prefix and timeout)"


async def _leases(cfg: EngineConfig, conn: asyncpg.Connection, timeout_s: float) -> list[Finding]:
    """Campaign runners' leases (engine/campaigns/lease_loop.py: ``campaign:<id>`` in Redis)."""
    url = cfg.storage.redis_url.get_secret_value()
    findings = (
        await _owned_leases(cfg, url, timeout_s)
        if cfg.cluster.enabled
        else [
            Finding(
                "leases: switches and queues",
                Status.SKIP,
                "[cluster] is not enabled: this engine owns every switch link and queue of its "
                "config, so two engines must not share a switch or a queue",
                "to run several engines on one call centre, set [cluster] enabled = true on "
                "each (docs/production.md)",
            )
        ]
    )
    has_table = await conn.fetchval("SELECT to_regclass('campaigns') IS NOT NULL")
    if not url or not has_table:
        return findings
    rows = await conn.fetch(
        "SELECT campaign_id, spec->>'queue' AS queue FROM campaigns WHERE state = 'running'"
    )
    running = [r["campaign_id"] for r in rows]
    queues = {r["campaign_id"]: r["queue"] for r in rows if r["queue"]}
    queue_holders: dict[str, Holder | None] = {}
    store = RedisStore(url, Path("."), cfg.storage.redis_prefix, socket_timeout_s=timeout_s)
    try:
        await asyncio.wait_for(store.start(), timeout_s)
        leases = Leases(store.client, cfg.storage.redis_prefix, "doctor")
        holders: dict[str, Holder | None] = {}
        for campaign in running:
            held = await asyncio.wait_for(leases.holder(f"campaign:{campaign}"), timeout_s)
            holders[campaign] = None if held is None else Holder(held.owner, held.token)
        if cfg.cluster.enabled:
            for queue in set(queues.values()):
                held = await asyncio.wait_for(leases.holder(f"queue:{queue}"), timeout_s)
                queue_holders[queue] = None if held is None else Holder(held.owner, held.token)
    except Exception as err:  # reported by the Redis check too
        findings.append(
            Finding("leases: campaigns", Status.WARN, f"cannot read the leases: {err}", _LEASES_FIX)
        )
        return findings
    finally:
        await store.stop()
    findings.extend(campaign_leases("leases: campaign", running, holders))
    findings.extend(
        campaign_beside_queue("leases: campaign with its queue", queues, holders, queue_holders)
    )
    return findings


async def _owned_leases(cfg: EngineConfig, url: str, timeout_s: float) -> list[Finding]:
    """Switch and queue leases (engine/cluster): holders, their heartbeats, the policy's pick."""
    if not url:
        return [Finding("leases", Status.SKIP, "no redis_url: an embedded Redis serves one box")]
    names = [f"switch:{sw.name}" for sw in cfg.switches] + [f"queue:{q.name}" for q in cfg.queues]
    prefix = cfg.storage.redis_prefix
    store = RedisStore(url, Path("."), prefix, socket_timeout_s=timeout_s)
    try:
        await asyncio.wait_for(store.start(), timeout_s)
        leases = Leases(store.client, prefix, "doctor")
        members = Membership(store.client, prefix, "doctor", ttl_ms=1, timeout_s=timeout_s)
        live = await members.live()
        held = await asyncio.wait_for(leases.holders(names), timeout_s)
    except Exception as err:  # reported by the Redis check too
        return [Finding("leases", Status.WARN, f"cannot read the leases: {err}", _LEASES_FIX)]
    finally:
        await store.stop()
    where = placement(cfg.cluster.placement, [sw.name for sw in cfg.switches])
    return owned_leases(
        "leases",
        names,
        {n: None if h is None else Holder(h.owner, h.token) for n, h in held.items()},
        live,
        {n: preferred(where(n), live) for n in names},
    )


async def redis(cfg: EngineConfig, timeout_s: float) -> list[Finding]:
    url = cfg.storage.redis_url.get_secret_value()
    if not url:
        return [
            Finding(
                "redis",
                Status.WARN,
                "no redis_url: the engine starts an embedded server under data_dir "
                "(one box only; not checked here)",
                "point [storage] redis_url (or ENGINE_REDIS_URL) at a real server in production",
            )
        ]
    store = RedisStore(url, Path("."), cfg.storage.redis_prefix, socket_timeout_s=timeout_s)
    try:
        await asyncio.wait_for(store.start(), timeout_s)
        client = store.client
        info = await asyncio.wait_for(client.info("server"), timeout_s)
        sent = time.time()
        seconds, micros = await asyncio.wait_for(client.time(), timeout_s)
        received = time.time()
    except Exception as err:  # translated store errors and timeouts alike
        return [
            Finding(
                "redis",
                Status.FAIL,
                f"cannot reach it: {err or type(err).__name__}",
                "check the URL's host, port and password, `bind`/`protected-mode`, the firewall",
            )
        ]
    finally:
        await store.stop()
    version = str(info.get("redis_version", "?"))
    findings = [_redis_version(version)]
    findings.append(
        clock_skew(
            "redis: clock",
            int(seconds) + int(micros) / 1e6 - (sent + received) / 2,
            (received - sent) / 2,
        )
    )
    return findings


def _redis_version(version: str) -> Finding:
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return Finding(
            "redis",
            Status.WARN,
            f"reachable, unknown version {version!r}",
            "check it is Redis 6.2 or later (`redis-cli INFO server`), not a look-alike proxy",
        )
    if (major, minor) < (6, 2):
        return Finding(
            "redis",
            Status.FAIL,
            f"version {version}; the engine needs 6.2 or newer (docs/storage.md)",
            "upgrade Redis",
        )
    return ok("redis", f"reachable, version {version}")


def local_paths(cfg: EngineConfig) -> list[Finding]:
    """The outbox's disk, and every recordings directory the engine reads and writes."""
    data_dir = cfg.resolve(cfg.engine.data_dir)
    outbox = data_dir / "outbox"
    findings: list[Finding] = []
    if os.geteuid() == 0:
        findings.append(
            Finding(
                "doctor",
                Status.WARN,
                "running as root: the access checks below say nothing about the engine's user",
                "run it as that user, e.g. `sudo -u telephony-engine python -m engine doctor`",
            )
        )
    where = outbox if outbox.exists() else data_dir
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)  # the volume the outbox is (or will be) on
    findings.append(
        disk_space("outbox disk", str(where), st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
    )
    findings.append(
        directory_access(
            "data_dir",
            str(data_dir),
            _access(data_dir),
            why="the outbox and the event floor",
            parent=_nearest_parent(data_dir),
        )
    )
    rec = cfg.recordings
    if rec.enabled:
        store_dir = cfg.resolve(rec.store_dir)
        findings.append(
            directory_access(
                "recordings store_dir",
                str(store_dir),
                _access(store_dir),
                why="the engine writes encrypted recordings there",
                parent=_nearest_parent(store_dir),
            )
        )
        for name, paths in sorted(rec.switches.items()):
            engine_dir = cfg.resolve(paths.engine_dir)
            findings.append(
                directory_access(
                    f"recordings of {name}",
                    str(engine_dir),
                    _access(engine_dir),
                    why=f"the engine reads and deletes {name}'s files there "
                    f"(the switch writes them to {paths.switch_dir})",
                )
            )
    return findings


def referenced_files(cfg: EngineConfig) -> list[Finding]:
    """The files the config names and the engine reads at start (TLS, keys), and the IVR
    flows' directory: a path mistyped in engine.toml is found here, not at the next start."""
    files = [
        ("api.tls_cert", cfg.api.tls_cert, "the API's TLS certificate chain (PEM)"),
        ("api.tls_key", cfg.api.tls_key, "the API's TLS private key (PEM)"),
        ("recordings.kek_file", cfg.recordings.kek_file, "the recordings' key-encryption keys"),
        ("privacy.pseudonym_key_file", cfg.privacy.pseudonym_key_file, "the pseudonym key"),
    ]
    findings = [
        readable_path(key, str(path), _access(path, r_ok=os.R_OK), directory=False, why=why)
        for key, value, why in files
        if value
        for path in [cfg.resolve(value)]
    ]
    ivr_dir = cfg.resolve(cfg.engine.ivr_dir)
    findings.append(
        readable_path(
            "engine.ivr_dir",
            str(ivr_dir),
            _access(ivr_dir),
            directory=True,
            why="the engine starts without IVR flows when it is missing",
            missing=Status.WARN,
        )
    )
    return findings


def _nearest_parent(path: Path) -> PathAccess:
    """The closest existing ancestor: where ``mkdir -p`` would have to write."""
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return _access(probe)


def _access(path: Path, r_ok: int = os.R_OK | os.X_OK) -> PathAccess:
    """``r_ok``: what reading needs (a directory is listed with R and X, a file read with R)."""
    return PathAccess(
        exists=path.exists(),
        is_dir=path.is_dir(),
        readable=os.access(path, r_ok),
        writable=os.access(path, os.W_OK | os.X_OK),
    )


def outbox_dead_letters(cfg: EngineConfig) -> list[Finding]:
    """How many records each outbox lane set aside (``<lane>.dead.jsonl``)."""
    from engine.doctor.verdicts import dead_letters

    outbox = cfg.resolve(cfg.engine.data_dir) / "outbox"
    counts: dict[str, int] = {}
    try:
        for path in sorted(outbox.glob("*.dead.jsonl")):
            lane = path.name.removesuffix(".dead.jsonl")
            counts[lane] = sum(1 for line in path.read_bytes().splitlines() if line.strip())
    except OSError as err:
        return [
            Finding(
                "outbox dead letters",
                Status.WARN,
                f"cannot read {outbox}: {err}",
                "run the doctor as the engine's user, and check the outbox files are its own",
            )
        ]
    return [dead_letters("outbox dead letters", str(outbox), counts)]
