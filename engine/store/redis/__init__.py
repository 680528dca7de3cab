"""Redis: live shared state (call registry, event stream, idempotency keys, leases)."""

from engine.store.redis.client import RedisStore
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.store.redis.stream import EventStream

__all__ = ["CallRegistry", "EventStream", "IdempotencyStore", "RedisStore"]
