"""The one durable local outbox for what the engine has accepted: CDRs and events.

``journal.Journal`` is an append-only file per lane (``write`` is one
``os.write`` on an ``O_APPEND`` descriptor, so the caller never waits on
storage); ``lane.Lane`` drains a journal into its sink (PostgreSQL, the Redis
event stream) in order, with a timeout per delivery, capped backoff while the
sink is away, and continuous replay once it is back.
"""

from engine.store.outbox.journal import Journal, Record
from engine.store.outbox.lane import Lane, LanePublisher

__all__ = ["Journal", "Lane", "LanePublisher", "Record"]
