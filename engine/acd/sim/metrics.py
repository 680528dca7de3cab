"""KPI tallies of one inbound run.

Definitions (docs/acd-simulator.md): only calls that *arrive* inside the measured window
``[warmup_s, duration_s)`` count, whenever they end; occupancy counts agent time inside that window.

- SL %: calls answered within the queue's threshold / calls offered (abandons count against it).
- ASA: mean wait of answered calls, zero waits included.
- abandon %: callers who hung up while waiting / calls offered.
- AHT: mean handle + wrap-up time of answered calls.
- occupancy %: agent busy seconds (handle + wrap-up) / agent logged-in seconds.
- conversion %: converted calls / answered calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class QueueTally:
    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    unserved: int = 0
    wait_s: float = 0.0
    handle_s: float = 0.0
    converted: int = 0

    def add(self, other: QueueTally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def kpis(self) -> dict[str, Any]:
        offered, answered = self.offered, self.answered
        return {
            "offered": offered,
            "answered": answered,
            "abandoned": self.abandoned,
            "unserved": self.unserved,
            "sl_pct": 100.0 * self.answered_in_sl / offered if offered else None,
            "asa_s": self.wait_s / answered if answered else None,
            "abandon_pct": 100.0 * self.abandoned / offered if offered else None,
            "aht_s": self.handle_s / answered if answered else None,
            "conversions": self.converted,
            "conversion_pct": 100.0 * self.converted / answered if answered else None,
        }


def overlap(start: float, end: float, lo: float, hi: float) -> float:
    """Length of ``[start, end]`` inside ``[lo, hi]``."""
    return max(0.0, min(end, hi) - max(start, lo))
