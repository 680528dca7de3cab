"""Trunk reachability from AMI ``PJSIPShowEndpoints``. Pure.

Why this action: ``PJSIPShowContacts`` only lists *dynamic* contacts ("No
Contacts found" for trunks with a static ``contact=``, checked on the
sandbox), while every ``EndpointList`` item carries ``DeviceState``, which
res_pjsip derives from its contacts' qualify status: ``Unavailable`` when
every contact is unreachable. Any in-use/idle state means a contact answers;
``Unknown``/``Invalid`` say nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.pbx.base import TrunkReachability

from .ami_codec import Event


def endpoint_reachability(events: Iterable[Event]) -> dict[str, TrunkReachability]:
    """``PJSIPShowEndpoints`` list items -> reachability per endpoint."""
    out: dict[str, TrunkReachability] = {}
    for ev in events:
        if ev.name.lower() != "endpointlist":
            continue
        name = ev.get("ObjectName") or ""
        if not name:
            continue
        state = (ev.get("DeviceState") or "").strip().lower()
        if state == "unavailable":
            out[name] = "unreachable"
        elif state in ("", "unknown", "invalid"):
            out[name] = "unknown"
        else:
            out[name] = "reachable"
    return out
