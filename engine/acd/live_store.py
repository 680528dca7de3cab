"""The ACD's live state in Redis: agents, reservations and queue entries.

Shared by engine instances and read back at start (restart safety, docs/acd.md
"Restart safety"). Keys (``p`` = prefix)::

    {p}acd:agent:{agent_id}            hash: status (JSON of AgentStatus), session_id,
                                       leg (the agent's leg id on its switch), switch,
                                       queues (JSON list: its roster after a supervisor's
                                       move; absent: every queue its skills fit),
                                       wrapping (JSON of the entry the agent is in wrap-up
                                       after, as a live entry's json; absent: none, or a
                                       record written before it was kept)
    {p}acd:agents                      set of agent ids with a hash
    {p}acd:resv:{entry_id}:{agent_id}  hash of one reservation, EXPIREs after its expiry
    {p}acd:resvs                       set of "entry_id agent_id" (members whose hash
                                       expired are pruned on read)
    {p}acd:entry:{entry_id}            hash: json of a live queue entry
    {p}acd:entries                     set of live entry ids

Every command is bounded by ``timeout_s`` and redis errors become
:class:`engine.store.errors.StoreError` (same pattern as ``CallRegistry``).
Writes never sit on the event path: :class:`LiveMirror` takes them
synchronously and writes them in the background, newest value per key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from engine.acd.reservations import Reservation
from engine.core.worker import WorkerSignals
from engine.store.redis.client import check_prefix
from engine.store.redis.errors import REDIS_ERRORS, translate
from engine.store.redis.locks import lease_key
from engine.telemetry.logging import get_logger

log = get_logger("engine.acd.live_store")

# A reservation's hash outlives its expiry by this much: the reconcile loop,
# not Redis, ends it (and says so); the TTL only cleans up after a crash.
RESERVATION_TTL_MARGIN_S = 60


@dataclass(frozen=True, slots=True)
class StoredAgent:
    agent_id: str
    status: dict[str, Any]
    session_id: str
    leg: str
    switch: str
    queues: list[str] | None = None  # a supervisor's roster (docs/supervisor.md)
    # The entry the agent is in wrap-up after (``Entry.to_live``), ended or not: a restart
    # resumes the wrap-up with its call, so its handle time reaches AHT (restore.py).
    wrapping: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """Everything read back at start."""

    agents: dict[str, StoredAgent]
    reservations: list[Reservation]
    entries: list[dict[str, Any]]


# A reservation written only while the writer holds the queue's lease with its token
# (several engines): the lease key must read exactly "<owner> <token>".
_FENCED_RESV = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"""


class AcdLiveStore:
    """The ACD's live state in Redis.

    ``holder_of(queue)``: with several engines (engine/cluster), the value lease
    ``queue:<name>`` must hold for this engine to write a reservation of that queue
    (``"<owner> <token>"``, or None when it holds no valid lease); the check runs in Redis, in
    the script that writes. A refused reservation is not written and ``on_stale(queue)`` is
    told (the engine steps down from the queue). Without ``holder_of``: plain writes.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        *,
        timeout_s: float = 2.0,
        holder_of: Callable[[str], str | None] | None = None,
        on_stale: Callable[[str], None] = lambda queue: None,
    ) -> None:
        self._r = redis
        self._base = check_prefix(prefix)
        self._p = self._base + "acd:"
        self._timeout_s = timeout_s
        self._holder_of = holder_of
        self._on_stale = on_stale
        self._fenced = redis.register_script(_FENCED_RESV)

    # ----------------------------------------------------------------- keys

    def _agent(self, agent_id: str) -> str:
        return f"{self._p}agent:{agent_id}"

    def _resv(self, entry_id: str, agent_id: str) -> str:
        return f"{self._p}resv:{entry_id}:{agent_id}"

    def _entry(self, entry_id: str) -> str:
        return f"{self._p}entry:{entry_id}"

    # --------------------------------------------------------------- writes

    async def apply(self, writes: Mapping[tuple[str, str], Any]) -> None:
        """Write a batch in one MULTI round trip. Key ``(kind, id)`` -> value, None deletes.

        kinds: ``agent`` (value: StoredAgent), ``resv`` (id "entry agent", value:
        Reservation), ``entry`` (value: JSON-ready dict).
        """
        if not writes:
            return
        fenced: dict[tuple[str, str], Reservation] = {}
        if self._holder_of is not None:
            for (kind, ident), value in writes.items():
                if kind == "resv" and isinstance(value, Reservation):
                    fenced[(kind, ident)] = value
        try:
            async with asyncio.timeout(self._timeout_s):
                plain = [(k, v) for k, v in writes.items() if k not in fenced]
                if plain:
                    async with self._r.pipeline(transaction=True) as pipe:
                        for (kind, ident), value in plain:
                            self._queue_write(pipe, kind, ident, value)
                        await pipe.execute()
                for (_, ident), resv in fenced.items():
                    await self._write_fenced(ident, resv)
        except REDIS_ERRORS as err:
            raise translate(err, f"writing {len(writes)} ACD keys") from err

    async def _write_fenced(self, ident: str, value: Reservation) -> None:
        assert self._holder_of is not None
        expected = self._holder_of(value.queue)
        written = 0
        if expected is not None:
            entry_id, agent_id = ident.split(" ", 1)
            ttl = max(1, int(value.expires_at - value.created_at) + RESERVATION_TTL_MARGIN_S)
            written = await self._fenced(
                keys=[
                    lease_key(self._base, f"queue:{value.queue}"),
                    self._resv(entry_id, agent_id),
                    f"{self._p}resvs",
                ],
                args=[expected, ttl, ident, *_resv_fields(value)],
            )
        if not written:
            log.error(
                "reservation refused: this engine does not hold the queue's lease",
                queue=value.queue,
                agent_id=value.agent_id,
                call_id=value.call_id,
            )
            self._on_stale(value.queue)

    def _queue_write(self, pipe: Any, kind: str, ident: str, value: Any) -> None:
        if kind == "agent":
            key, members = self._agent(ident), f"{self._p}agents"
            if value is None:
                pipe.delete(key)
                pipe.srem(members, ident)
                return
            assert isinstance(value, StoredAgent)
            fields = {
                "status": json.dumps(value.status, separators=(",", ":")),
                "session_id": value.session_id,
                "leg": value.leg,
                "switch": value.switch,
            }
            if value.queues is not None:
                fields["queues"] = json.dumps(sorted(value.queues))
            if value.wrapping is not None:
                fields["wrapping"] = json.dumps(value.wrapping, separators=(",", ":"))
            else:
                # HSET keeps the fields it is not given: the last wrap-up's would stay.
                pipe.hdel(key, "wrapping")
            pipe.hset(key, mapping=cast(Mapping[Any, Any], fields))
            pipe.sadd(members, ident)
        elif kind == "resv":
            entry_id, agent_id = ident.split(" ", 1)
            key, members = self._resv(entry_id, agent_id), f"{self._p}resvs"
            if value is None:
                pipe.delete(key)
                pipe.srem(members, ident)
                return
            assert isinstance(value, Reservation)
            flat = _resv_fields(value)
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            pipe.hset(key, mapping=cast(Mapping[Any, Any], fields))
            # The reservation carries its expiry in Redis too (issue 9): a
            # crashed engine's reservations vanish on their own.
            ttl = max(1, int(value.expires_at - value.created_at) + RESERVATION_TTL_MARGIN_S)
            pipe.expire(key, ttl)
            pipe.sadd(members, ident)
        elif kind == "entry":
            key, members = self._entry(ident), f"{self._p}entries"
            if value is None:
                pipe.delete(key)
                pipe.srem(members, ident)
                return
            pipe.hset(key, mapping={"json": json.dumps(value, separators=(",", ":"))})
            pipe.sadd(members, ident)
        else:
            raise ValueError(f"unknown ACD key kind {kind!r}")

    # ---------------------------------------------------------------- reads

    async def snapshot(self) -> LiveSnapshot:
        try:
            async with asyncio.timeout(self._timeout_s * 3):
                agents = await self._read_agents()
                reservations = await self.reservations()
                entries = await self._read_entries()
        except REDIS_ERRORS as err:
            raise translate(err, "reading the ACD's live state") from err
        return LiveSnapshot(agents, reservations, entries)

    async def _members(self, name: str) -> list[str]:
        return sorted(str(m) for m in await self._r.smembers(f"{self._p}{name}"))

    async def _read_agents(self) -> dict[str, StoredAgent]:
        ids = await self._members("agents")
        if not ids:
            return {}
        async with self._r.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.hgetall(self._agent(agent_id))
            rows: list[dict[str, str]] = await pipe.execute()
        out: dict[str, StoredAgent] = {}
        for agent_id, row in zip(ids, rows, strict=True):
            if not row or "status" not in row:
                continue
            try:
                status = json.loads(row["status"])
                queues = json.loads(row["queues"]) if row.get("queues") else None
                wrapping = json.loads(row["wrapping"]) if row.get("wrapping") else None
            except ValueError:
                log.warning("unreadable agent state in redis; ignored", agent_id=agent_id)
                continue
            out[agent_id] = StoredAgent(
                agent_id,
                status,
                row.get("session_id", ""),
                row.get("leg", ""),
                row.get("switch", ""),
                [str(q) for q in queues] if isinstance(queues, list) else None,
                wrapping if isinstance(wrapping, dict) else None,
            )
        return out

    async def reservations(self) -> list[Reservation]:
        """Every reservation still in Redis (those whose hash expired are pruned)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                idents = await self._members("resvs")
                if not idents:
                    return []
                async with self._r.pipeline(transaction=False) as pipe:
                    for ident in idents:
                        entry_id, agent_id = ident.split(" ", 1)
                        pipe.hgetall(self._resv(entry_id, agent_id))
                    rows: list[dict[str, str]] = await pipe.execute()
                stale = [i for i, row in zip(idents, rows, strict=True) if not row]
                if stale:
                    await self._r.srem(f"{self._p}resvs", *stale)
        except REDIS_ERRORS as err:
            raise translate(err, "reading ACD reservations") from err
        out: list[Reservation] = []
        for row in rows:
            if row:
                out.append(
                    Reservation(
                        row["call_id"],
                        row["agent_id"],
                        row["queue"],
                        float(row["created_at"]),
                        float(row["expires_at"]),
                    )
                )
        return out

    async def _read_entries(self) -> list[dict[str, Any]]:
        ids = await self._members("entries")
        if not ids:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.hget(self._entry(entry_id), "json")
            rows: list[str | None] = await pipe.execute()
        out: list[dict[str, Any]] = []
        for row in rows:
            if row:
                try:
                    out.append(json.loads(row))
                except ValueError:
                    continue
        return out


def _resv_fields(value: Reservation) -> list[str]:
    """A reservation's hash as field, value, field, value..."""
    return [
        "call_id",
        value.call_id,
        "agent_id",
        value.agent_id,
        "queue",
        value.queue,
        "created_at",
        repr(value.created_at),
        "expires_at",
        repr(value.expires_at),
    ]


class LiveMirror:
    """Takes ACD writes synchronously; a background task writes them to Redis.

    Coalescing: only the newest value of a key is written. A failed round keeps
    what it could not write (unless newer values came meanwhile) and tries again
    with capped backoff. The event path never waits for Redis.
    """

    def __init__(self, store: AcdLiveStore, *, round_s: float = 0.05) -> None:
        self._store = store
        self._pending: dict[tuple[str, str], Any] = {}
        self._signals = WorkerSignals(round_s)
        self.failures = 0

    def put(self, kind: str, ident: str, value: Any) -> None:
        self._pending[(kind, ident)] = value
        self._signals.work_arrived()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def wait_flushed(self, timeout_s: float) -> bool:
        return await self._signals.wait_idle(timeout_s)

    def close(self) -> None:
        self._signals.close()

    async def run(self) -> None:
        delay = 0.1
        while not self._signals.closed:
            if not self._pending:
                self._signals.idle.set()
                self._signals.wake.clear()
                await self._signals.wake.wait()
                continue
            await self._signals.pace()
            batch, self._pending = self._pending, {}
            try:
                await self._store.apply(batch)
            except Exception as err:
                # Newer values written meanwhile win over the failed batch's.
                self._pending = {**batch, **self._pending}
                self.failures += 1
                log.warning("acd live state not written; will retry", error=str(err))
                await self._signals.backoff(delay)
                delay = min(5.0, delay * 2)
                continue
            delay = 0.1
