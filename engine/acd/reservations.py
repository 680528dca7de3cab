"""Reservations: an agent held for one call while its phone rings.

Every reservation carries an expiry and ends exactly once: answered, missed,
cancelled, or expired (FreeSWITCH mod_callcenter #2540/#1973: agents stuck in
Reserved because the end was never seen). :class:`ReservationBook` is the
router's in-memory book; :func:`stale_reservations` is the pure check the
service's reconcile loop runs over reservations read back from Redis.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Reservation:
    call_id: str
    agent_id: str
    queue: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Closed:
    reservation: Reservation
    outcome: Outcome
    at: float


class ReservationBook:
    """Open reservations by call and by agent. An agent holds at most one."""

    def __init__(self) -> None:
        self._by_agent: dict[str, Reservation] = {}
        self._by_call: dict[str, dict[str, Reservation]] = {}

    def __len__(self) -> int:
        return len(self._by_agent)

    def open(self, reservation: Reservation) -> None:
        held = self._by_agent.get(reservation.agent_id)
        if held is not None:
            raise ValueError(
                f"agent {reservation.agent_id} is already reserved for call {held.call_id}"
            )
        self._by_agent[reservation.agent_id] = reservation
        self._by_call.setdefault(reservation.call_id, {})[reservation.agent_id] = reservation

    def close(self, call_id: str, agent_id: str, outcome: Outcome, now: float) -> Closed | None:
        held = self._by_call.get(call_id, {}).pop(agent_id, None)
        if held is None:
            return None
        del self._by_agent[agent_id]
        if not self._by_call[call_id]:
            del self._by_call[call_id]
        return Closed(held, outcome, now)

    def for_call(self, call_id: str) -> list[Reservation]:
        return sorted(self._by_call.get(call_id, {}).values(), key=lambda r: r.agent_id)

    def for_agent(self, agent_id: str) -> Reservation | None:
        return self._by_agent.get(agent_id)

    def all(self) -> list[Reservation]:
        return sorted(self._by_agent.values(), key=lambda r: (r.expires_at, r.agent_id))

    def expired(self, now: float) -> list[Reservation]:
        return [r for r in self.all() if r.expires_at <= now]


def stale_reservations(
    reservations: Iterable[Reservation], live_call_ids: Container[str], now: float
) -> list[tuple[Reservation, Outcome]]:
    """Reservations to end: EXPIRED past their expiry, CANCELLED when the call is gone.

    The service's reconcile loop runs this over what Redis holds, with the
    call ids the switches still report, so no agent stays reserved for a call
    that no longer exists (after a lost event or an engine restart).
    """
    out: list[tuple[Reservation, Outcome]] = []
    for r in sorted(reservations, key=lambda r: (r.expires_at, r.call_id, r.agent_id)):
        if r.call_id not in live_call_ids:
            out.append((r, Outcome.CANCELLED))
        elif r.expires_at <= now:
            out.append((r, Outcome.EXPIRED))
    return out
