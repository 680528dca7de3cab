"""Recordings: encryption throughput, and hangup -> ``RecordingReady`` for a 5-minute call.

1. ``encrypt_MBps`` / ``decrypt_MBps``: ``engine.recordings.crypto`` on one core (one thread,
   this process), AES-256-GCM frames of the default 64 KiB, plaintext SHA-256 included in the
   encryption figure (the engine computes it while encrypting), 64 MiB in memory to a sink that
   discards (disk speed is not measured here). Best and median of 5 runs.

2. ``hangup_to_ready_s``: the whole engine (real PostgreSQL and Redis, ``ENGINE_TEST_PG_DSN``
   (a fresh database) and ``ENGINE_TEST_REDIS_URL``) against the fake FreeSWITCH. A call is
   answered and recorded; at the hangup the fake writes the recording file a real switch would
   have written for a **5-minute** call (``record_extra_s = 300``: the 69XXX far end's tone,
   16 kHz, mono 9.6 MB or dual 19.2 MB), then sends RECORD_STOP and the hangup events. The
   clock starts when that file is complete (``FakeFreeSwitch.record_stopped_at``, the moment a
   real switch's RECORD_STOP leaves it) and stops when a WebSocket client of the engine
   receives ``RecordingReady``: file settled, read, encrypted, fsynced, journalled, plaintext
   removed, indexed in PostgreSQL (outbox lane), event published through Redis. Engine,
   fake switch and client share this process and its event loop (one clock). 5 calls each.

``python -m bench.recording_crypto`` prints the figures and writes reports/recording_crypto.json.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from engine.recordings import crypto

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
RUNS = 5
CALLS = 5
LONG_CALL_S = 300.0


class _Discard:
    def write(self, data: bytes, /) -> int:
        return len(data)


def _throughput(size_mib: int = 64) -> dict[str, Any]:
    plain = os.urandom(size_mib * MIB)
    chunks = [plain[i : i + 256 * 1024] for i in range(0, len(plain), 256 * 1024)]
    key, rid = crypto.new_data_key(), uuid.uuid4()
    enc: list[float] = []
    for _ in range(RUNS):
        started = time.perf_counter()
        crypto.encrypt_stream(chunks, _Discard(), key, rid)
        enc.append(len(plain) / MIB / (time.perf_counter() - started))
    sink = io.BytesIO()
    crypto.encrypt_stream(chunks, sink, key, rid)
    blob = sink.getvalue()
    dec: list[float] = []
    for _ in range(RUNS):
        started = time.perf_counter()
        reader = crypto.EncryptedReader(io.BytesIO(blob), key, rid)
        n = sum(len(piece) for piece in reader.read_range())
        dec.append(n / MIB / (time.perf_counter() - started))
        assert n == len(plain)
    return {
        "size_MiB": size_mib,
        "frame_bytes": crypto.DEFAULT_FRAME_SIZE,
        "encrypt_MBps_best": round(max(enc), 1),
        "encrypt_MBps_median": round(statistics.median(enc), 1),
        "decrypt_MBps_best": round(max(dec), 1),
        "decrypt_MBps_median": round(statistics.median(dec), 1),
    }


async def _hangup_to_ready() -> dict[str, Any]:
    from scripts.fuzz_api import storage_from_env
    from tests.fakes.carrier_ami import CarrierFakeAmi
    from tests.fakes.fake_esl import FakeFreeSwitch
    from tests.harness import engine_config, event_log, running_engine, wait_for

    out: dict[str, Any] = {"call_s": LONG_CALL_S}
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        base = Path(tmp)
        spool = base / "spool"
        spool.mkdir()
        async with (
            storage_from_env() as (pg_dsn, redis_url),
            CarrierFakeAmi() as ami,
            FakeFreeSwitch(time_scale=0.05) as fs,
        ):
            fs.record_extra_s = LONG_CALL_S
            extra = f"""
[[switches]]
kind = "freeswitch"
name = "freeswitch-1"
host = "{fs.host}"
port = {fs.port}
password = "{fs.password}"
outbound_bind = "127.0.0.1:0"
[[trunks]]
name = "fs-good"
switch = "freeswitch-1"
target = "carrier"
max_channels = 20
max_cps = 20
[recordings]
store_dir = "{base / "store"}"
[recordings.switches.freeswitch-1]
switch_dir = "{spool}"
engine_dir = "{spool}"
[recordings.campaigns.dual]
channels = "dual"
"""
            cfg = engine_config(
                pg_dsn=pg_dsn,
                redis_url=redis_url,
                prefix=f"benchrec:{uuid.uuid4().hex[:8]}:",
                data_dir=base / "engine",
                ami_port=ami.port,
                agi_bind_port=0,
                extra=extra,
            )
            async with running_engine(cfg) as (_engine, client):
                for channels in ("mono", "dual"):
                    samples: list[float] = []
                    sizes: list[int] = []
                    for _ in range(CALLS):
                        variables = {"ENGINE_CAMPAIGN": "dual"} if channels == "dual" else None
                        async with event_log(client) as events:
                            call = await client.originate(
                                "69001", trunk="fs-good", timeout_s=10, variables=variables
                            )
                            cid = str(call["call_id"])
                            await client.wait_state(cid, "answered")
                            status, body, _ = await client.request(
                                "POST", f"/calls/{cid}/recording", json={"action": "start"}
                            )
                            assert status == 200, body
                            rid = body["recording_id"]
                            await client.request("DELETE", f"/calls/{cid}")

                            def ready(rid: str = rid) -> dict[str, Any] | None:
                                for m in list(events):
                                    e = m.get("event")
                                    if isinstance(e, dict) and e.get("recording_id") == rid:
                                        return e
                                return None

                            await wait_for(lambda: ready() is not None, 120, "RecordingReady")
                            got = asyncio.get_running_loop().time()
                        samples.append(got - fs.record_stopped_at[cid])
                        event = ready()
                        assert event is not None
                        sizes.append(int(event["size"]))
                    out[channels] = {
                        "wav_MB": round(statistics.median(sizes) / 1e6, 1),
                        "hangup_to_ready_s_median": round(statistics.median(samples), 3),
                        "hangup_to_ready_s_max": round(max(samples), 3),
                        "samples_s": [round(s, 3) for s in samples],
                    }
    return out


def run() -> dict[str, Any]:
    result = {"throughput_one_core": _throughput(), "hangup_to_recording_ready": None}
    result["hangup_to_recording_ready"] = asyncio.run(_hangup_to_ready())
    out = ROOT / "reports" / "recording_crypto.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
