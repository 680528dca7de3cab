"""Drill (issue 15): SIGSTOP the owner of a switch link past its lease, then SIGCONT it.

Two engine processes (``python -m engine run``) share PostgreSQL and Redis with ``[cluster]
enabled`` and a short lease (2 s), on the fake FreeSWITCH (tests/fakes/fake_esl.py, which runs
here and outlives them, as a real switch would) and the fake AMI. The owner of lease
``switch:freeswitch-1`` places a call and is frozen with SIGSTOP. The other engine takes the
lease over once it expires and adopts the live call from the registry (the restart recovery).
An originate sent to the frozen owner waits in its socket; on SIGCONT the owner answers it
``switch-not-owned`` from its local lease deadline, sends the switch nothing, steps down, and
writes nothing. Then the new owner is SIGKILLed: the first engine takes the switch back within
the TTL and adopts the call again; the call's one CDR is written when it ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from engine.api.forward import FORWARDED_HEADER, SERVED_BY_HEADER
from engine.cluster.policy import preferred
from engine.config import load_config
from engine.doctor.probes import _owned_leases
from engine.doctor.verdicts import Finding, Status
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.locks import Leases
from tests.acd_scenarios import wait_links_up
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import freeswitch_switch_toml, stored_cdrs
from tests.integration.engine_process import EngineProcess, SharedStorage, named_engine

SWITCH = "freeswitch-1"
LEASE = f"switch:{SWITCH}"
TTL_S = 2.0
ENGINES = ("drill-a", "drill-b")


def _config(
    work: Path, name: str, pg_dsn: str, redis_url: str, prefix: str, ami: int, fs: FakeFreeSwitch
) -> EngineProcess:
    extra = (
        freeswitch_switch_toml(SWITCH, fs.host, fs.port, fs.password)
        + f"""
[[trunks]]
name = "carrier"
switch = "{SWITCH}"
target = "carrier"
max_channels = 10
max_cps = 10
[cluster]
enabled = true
lease_ttl_s = {TTL_S}
"""
    )
    return named_engine(work, name, SharedStorage(pg_dsn, redis_url, prefix, ami), extra)


@pytest.fixture
async def pair(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> AsyncIterator[tuple[FakeFreeSwitch, dict[str, EngineProcess], str]]:
    work = store_data_dir / f"drill-leases-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    prefix = f"drilllease:{uuid.uuid4().hex[:8]}:"
    procs: dict[str, EngineProcess] = {}
    try:
        async with CarrierFakeAmi() as ami, FakeFreeSwitch() as fs:
            for name in ENGINES:
                procs[name] = _config(work, name, pg_dsn, redis_url, prefix, ami.port, fs)
            await asyncio.gather(*(p.start() for p in procs.values()))
            yield fs, procs, prefix
    finally:
        for p in procs.values():
            if p.proc is not None and p.proc.poll() is None:
                with_stopped = p.proc.pid
                os.kill(with_stopped, signal.SIGCONT)  # a failed test may leave it frozen
            p.stop()


async def _until(check: object, what: str, timeout_s: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        result = await check()  # type: ignore[operator]
        if result:
            return loop.time() - start
        assert loop.time() - start < timeout_s, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _originates(fs: FakeFreeSwitch) -> list[str]:
    return [c for c in fs.received if "originate" in c]


async def test_a_frozen_owner_wakes_without_acting_and_steps_down(
    pair: tuple[FakeFreeSwitch, dict[str, EngineProcess], str],
    redis_store: RedisStore,
    pg_store: PgStore,
    redis_url: str,
) -> None:
    fs, procs, prefix = pair
    leases = Leases(redis_store.client, prefix, "drill-observer")
    # Both live: the switch settles on its preferred engine (the other hands it back).
    owner_name = preferred(SWITCH, ENGINES)
    assert owner_name is not None
    other_name = next(n for n in ENGINES if n != owner_name)
    owner, other = procs[owner_name], procs[other_name]

    async def held_by(name: str) -> bool:
        h = await leases.holder(LEASE)
        return h is not None and h.owner == name

    await _until(lambda: held_by(owner_name), "the switch on its preferred engine", 30)
    first = await leases.holder(LEASE)
    assert first is not None

    async with aiohttp.ClientSession() as http:
        c_owner, c_other = owner.client(http), other.client(http)
        # Holding the lease is not having the link: a just-started owner may hold the switch
        # before its ESL link is up (an originate then gets 503 switch-unavailable).
        await wait_links_up(c_owner)
        # The standby does not command a switch it does not own: it forwards the originate
        # to the owner (engine/api/forward.py), which places the call.
        status, call, reply = await c_other.request(
            "POST", "/calls", json={"to": "69001", "trunk": "carrier", "switch": SWITCH}
        )
        assert status == 201 and reply.headers[SERVED_BY_HEADER] == owner_name, call
        await c_owner.wait_state(call["call_id"], "answered")
        sent_before = len(_originates(fs))

        assert owner.proc is not None
        os.kill(owner.proc.pid, signal.SIGSTOP)
        try:
            took = await _until(lambda: held_by(other_name), "the takeover", 4 * TTL_S + 5)
            # Sent while it is frozen: read when it wakes, past its lease's local deadline. It
            # comes as another engine's hop (the loop guard), so the woken engine may neither
            # forward it nor act on it itself.
            late = asyncio.create_task(
                c_owner.request(
                    "POST",
                    "/calls",
                    json={"to": "69002", "trunk": "carrier", "switch": SWITCH},
                    headers={FORWARDED_HEADER: other_name},
                )
            )
            # The new owner adopted the live call (registry + the switch's channel list).
            await c_other.wait_state(call["call_id"], "answered", timeout_s=10)
        finally:
            os.kill(owner.proc.pid, signal.SIGCONT)
        status, body, _ = await asyncio.wait_for(late, 30)
        # owner-moved from the forwarding layer, or switch-not-owned from the switch gate if
        # the engine still believed it held the lease when the request was routed.
        assert status == 503 and body["error_id"] in ("owner-moved", "switch-not-owned"), body
        assert len(_originates(fs)) == sent_before  # the woken owner sent the switch nothing
        now = await leases.holder(LEASE)
        assert now is not None and now.owner == other_name and now.token > first.token

        async def stepped_down() -> bool:
            return "lease lost; stepping down" in owner.log_path.read_text(errors="replace")

        await _until(stepped_down, "the woken owner's step-down", 10)
        # `python -m engine doctor` sees the new holder, live (engine/doctor/probes.py).
        # The woken engine's membership heartbeat expired while it was frozen; it is listed
        # again once its next beat lands, so wait for that rather than read it once.
        found: dict[str, Finding] = {}

        async def doctor_sees_both() -> bool:
            nonlocal found
            findings = await _owned_leases(load_config(owner.config_path), redis_url, 2.0)
            found = {f.check: f for f in findings}
            live = found["leases: engines"].message.split(": ", 1)[1].split(", ")
            return set(ENGINES) <= set(live)

        await _until(doctor_sees_both, "doctor listing both engines as live", 15)
        assert found[f"leases {LEASE}"].status is Status.OK, found
        assert f"held by {other_name}" in found[f"leases {LEASE}"].message
        # Now SIGKILL the new owner: the engine that stepped down takes the switch back and
        # adopts the call again; its CDR is written once, when it ends.
        other.kill()
        back = await _until(
            lambda: held_by(owner_name), "the takeover after SIGKILL", 4 * TTL_S + 5
        )
        await c_owner.wait_state(call["call_id"], "answered", timeout_s=10)
        status, _, _ = await c_owner.request("DELETE", f"/calls/{call['call_id']}")
        assert status in (200, 202), status
        await c_owner.wait_state(call["call_id"], "ended")
    rows = await stored_cdrs(pg_store.pool, call["call_id"])
    assert len(rows) == 1 and rows[0].switch == SWITCH
    print(f"\ntakeover after SIGSTOP: {took:.2f} s, after SIGKILL: {back:.2f} s (TTL {TTL_S} s)")
