"""bench.cpu_per_call's round setting and event-latency measurement (the bench itself
needs the live sandbox; these check its parts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest

from bench.cpu_per_call import EventLatency, _config, _read_stream, percentile
from engine.config import load_config
from engine.store.redis import RedisStore
from engine.store.redis.stream import EventStream
from tests.harness import wait_for


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_latency_counts_events_stamped_in_the_window_by_type() -> None:
    lat = EventLatency(since=100.0)
    lat.add({"type": "LinkChanged", "ts": 99.0}, 105.0)  # before the load: not counted
    lat.add({"type": "Answered"}, 105.0)  # no stamp
    lat.add({"type": "Answered", "ts": True}, 105.0)  # not a number
    lat.add({"type": "Answered", "ts": 101.0}, 101.25)
    lat.add({"type": "CallStateChanged", "ts": 102.0}, 102.05)
    lat.add({"type": "CallStateChanged", "ts": 103.0}, 103.15)
    out = lat.summary()
    assert out["events"] == 3
    assert out["p50_ms"] == 150.0
    assert out["max_ms"] == 250.0
    assert out["by_type"]["Answered"]["events"] == 1
    assert out["by_type"]["CallStateChanged"]["p95_ms"] == 150.0
    assert EventLatency(since=0.0).summary() == {"events": 0}


def _engine_config(tmp_path: Path, write_round_s: float | None) -> float:
    path = tmp_path / f"engine-{write_round_s}.toml"
    path.write_text(_config(8080, tmp_path / "data", write_round_s))
    return load_config(path).storage.write_round_s


def test_the_round_setting_reaches_the_engines_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENGINE_PG_DSN", raising=False)
    monkeypatch.delenv("ENGINE_REDIS_URL", raising=False)
    default = _engine_config(tmp_path, None)
    assert default == 0.1  # the engine's own default, not written by the bench
    assert _engine_config(tmp_path, 0.5) == 0.5
    assert _engine_config(tmp_path, 0.2) == 0.2


async def test_the_stream_reader_times_every_published_event(
    redis_url: str, redis_store: RedisStore, redis_prefix: str
) -> None:
    stream = EventStream(redis_store.client, redis_prefix, maxlen=1000)
    lat = EventLatency(since=time.time() - 60)
    reader = asyncio.create_task(_read_stream(redis_url, stream.key, lat))
    try:
        for i in range(3):
            now = time.time()
            events = [
                {"type": "Answered", "call_id": f"c{i}", "ts": now},
                {"type": "CallStateChanged", "call_id": f"c{i}", "ts": now},
            ]
            await stream.publish_encoded([json.dumps(e) for e in events])
        await wait_for(lambda: sum(len(v) for v in lat.by_type.values()) >= 6, 20, "6 events")
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    out = lat.summary()
    assert out["events"] == 6
    assert sorted(out["by_type"]) == ["Answered", "CallStateChanged"]
    assert 0 <= out["p50_ms"] <= out["max_ms"] < 20_000
