"""Fault drill 3, event-stream half: Redis restarted with its data lost, mid-traffic.

The engine runs against a redis-server this test owns (no persistence), with
real PostgreSQL and the fake carrier AMI. Calls are placed before and after
the restart. Checked: the event sequence continues upward, a client that
stayed connected is told of the hole, and a client that resumes with an old
``since`` gets a ``gap`` notice naming the first sequence it can still have.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api.keys import STREAM
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import Client, engine_config, event_log, running_engine, wait_for
from tests.private_redis import PrivateRedis


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    directory = Path(tempfile.mkdtemp(prefix="redis-loss-"))
    server = PrivateRedis(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


async def _busy_call(client: Client) -> str:
    """A call the carrier answers busy: a handful of events, then ended."""
    call = await client.originate("2001")
    await client.wait_state(call["call_id"], "ended")
    return str(call["call_id"])


def _seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if "seq" in m]


async def test_redis_data_loss_mid_traffic_keeps_the_sequence_and_tells_clients(
    private_redis: PrivateRedis, pg_dsn: str, tmp_path: Path
) -> None:
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=private_redis.url,
            prefix=f"loss:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path / "engine",
            ami_port=ami.port,
            agi_bind_port=0,
        )
        async with running_engine(cfg) as (engine, client):
            assert engine.app is not None
            stream = engine.app[STREAM]
            async with event_log(client) as live:
                first_call = await _busy_call(client)
                # All of the first call's events (up to its end), not just its
                # first: the outbox delivers them in rounds, and the resume
                # check below needs two of them from before the loss.
                await wait_for(
                    lambda: any(
                        m.get("event", {}).get("call_id") == first_call
                        and m["event"].get("state") == "ended"
                        for m in live
                    ),
                    what="events of the first call",
                )
                before = _seqs(live)
                last_before = await stream.last_seq()
                assert before and before[-1] <= last_before

                private_redis.restart()  # every key is gone

                second_call = await _busy_call(client)
                await wait_for(
                    lambda: any(
                        m.get("event", {}).get("call_id") == second_call
                        and m["event"].get("state") == "ended"
                        for m in live
                    ),
                    what="events of the call placed after the restart",
                )
            after = [s for s in _seqs(live) if s > before[-1]]
            assert after, "events published after the restart reached the connected client"
            assert min(_seqs(live)[len(before) :]) > last_before, "the sequence went back"
            # The connected client was told of the hole right before it.
            gaps = [m["gap"] for m in live if "gap" in m]
            assert gaps, live[len(before) - 1 :][:5]
            index = next(i for i, m in enumerate(live) if "gap" in m)
            assert live[index + 1]["seq"] == gaps[0]["oldest"]
            assert gaps[0]["since"] == live[index - 1]["seq"]

            # A client resuming from before the loss learns the first seq it can have.
            oldest = await stream.oldest_seq()
            assert oldest is not None and oldest > last_before
            async with event_log(client, since=before[1]) as resumed:
                await wait_for(lambda: len(resumed) >= 2, what="first resumed messages")
            assert resumed[0] == {
                "gap": {"since": before[1], "oldest": oldest, "reason": "not-retained"}
            }
            assert resumed[1]["seq"] == oldest
