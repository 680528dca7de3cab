"""Which switches this engine may command (issue 15: one owner per switch link).

With several engines on one call centre, only the owner of lease ``switch:<name>`` runs a
switch's command side: it originates there, follows the switch's events into calls (and so
writes their CDRs). The composition root passes the cluster's ownership in; a lone engine
owns every switch (:class:`EverySwitch`). The check is a read of local, in-memory state:
an originate pays no storage round trip for it.
"""

from __future__ import annotations

from typing import Protocol


class SwitchGate(Protocol):
    def owns_switch(self, switch: str) -> bool: ...


class EverySwitch:
    """One engine, every switch (the default)."""

    def owns_switch(self, switch: str) -> bool:
        return True
