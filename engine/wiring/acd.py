"""Skill-based queueing to agents (docs/acd.md): the ACD service and its Redis mirror."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.acd.history import AcdHistory
from engine.acd.live_store import AcdLiveStore, LiveMirror
from engine.acd.scoring import LogisticScorer, load_logistic_scorer, logistic_from_json
from engine.acd.service import AcdService, AcdSettings
from engine.calls.service import CallService
from engine.cluster.ownership import Ownership
from engine.config import EngineConfig
from engine.pbx.base import PbxDriver
from engine.recordings.service import RecordingService
from engine.store.outbox import Lane
from engine.store.redis.client import RedisStore
from engine.telemetry.logging import get_logger
from engine.wiring.outbox import Outbox

log = get_logger("engine.app")


@dataclass(frozen=True)
class Acd:
    service: AcdService
    mirror: LiveMirror
    #: Queue leases taken over and not yet rebuilt: not served until they are.
    taking_over: set[str] = field(default_factory=set)


def build_acd(
    cfg: EngineConfig,
    redis: RedisStore,
    outbox: Outbox,
    calls: CallService,
    drivers: dict[str, PbxDriver],
    recordings: RecordingService,
    ownership: Ownership | None,
) -> Acd:
    client, prefix = redis.client, cfg.storage.redis_prefix
    timeout = cfg.calls.storage_timeout_s
    acd_mirror = LiveMirror(
        AcdLiveStore(client, prefix, timeout_s=timeout, **_queue_fence(ownership))
    )
    # Queue leases taken over and not yet rebuilt: not served until they are.
    taking_over: set[str] = set()
    acd = AcdService(
        agents=[a.to_config() for a in cfg.agents],
        queues=[q.to_spec() for q in cfg.queues],
        settings=AcdSettings(
            pause_reasons=tuple(cfg.acd.pause_reasons),
            priorities=dict(cfg.acd.priorities),
            default_priority=cfg.acd.default_priority,
            intents=dict(cfg.acd.intents),
            seed=cfg.acd.seed,
            storage_timeout_s=timeout,
            supervisor_endpoints={k: tuple(v) for k, v in cfg.acd.supervisor_endpoints.items()},
        ),
        calls=calls,
        drivers=drivers,
        # The recording service sees the ACD's events on their way (queue, agent,
        # and policy "always" when a caller is connected to an agent).
        events=_Tap(outbox.events, recordings.observe),
        history=AcdHistory(outbox.acd),
        mirror=acd_mirror,
        store=AcdLiveStore(client, prefix, timeout_s=timeout),
        scorer=_scorer(cfg),
        owns_queue=_serves(ownership, taking_over),
    )
    # A queued caller sent elsewhere through the API leaves its queue (docs/acd.md "Flow").
    calls.redirected = acd.release
    return Acd(acd, acd_mirror, taking_over)


def _serves(ownership: Ownership | None, taking_over: set[str]) -> Callable[[str], bool]:
    """Whether this engine takes callers into a queue: a lone engine, every queue; with
    ``[cluster]``, the queues whose lease it holds, once a takeover has rebuilt them
    (``taking_over``: the queue leases taken and not yet recovered, engine/cluster/takeover.py).
    """
    if ownership is None:
        return lambda _queue: True
    return lambda queue: ownership.owns_queue(queue) and f"queue:{queue}" not in taking_over


def _queue_fence(ownership: Ownership | None) -> dict[str, Any]:
    """Several engines: the ACD's reservations are written only while this engine holds the
    queue's lease with its token (checked in Redis by the writing script); a refusal steps
    it down from the queue. A lone engine: plain writes."""
    if ownership is None:
        return {}

    def holder_of(queue: str) -> str | None:
        token = ownership.token(f"queue:{queue}")
        return None if token is None else f"{ownership.me} {token}"

    def on_stale(queue: str) -> None:
        name = f"queue:{queue}"
        ownership.stale(name, ownership.last_token(name) or 0, "Redis refused a reservation")

    return {"holder_of": holder_of, "on_stale": on_stale}


def _scorer(cfg: EngineConfig) -> LogisticScorer | None:
    """``[acd] scorer_weights``: inline JSON, or the path of a JSON file; empty = cosine."""
    weights = cfg.acd.scorer_weights.strip()
    if not weights:
        return None
    if weights.startswith("{"):
        return logistic_from_json(weights, "engine.toml: acd.scorer_weights")
    return load_logistic_scorer(cfg.resolve(weights))


class _Tap:
    """An outbox lane whose records are also shown to ``observer`` (synchronously)."""

    def __init__(self, lane: Lane, observer: Callable[[Mapping[str, Any]], None]) -> None:
        self._lane = lane
        self._observer = observer

    def put(self, payload: dict[str, Any]) -> None:
        self._lane.put(payload)
        try:
            self._observer(payload)
        except Exception as err:  # an observer's bug never loses the event
            log.error("event observer failed", error=repr(err))
