"""Trunk reachability from AMI ``PJSIPShowEndpoints``. Pure.

Why this action: ``PJSIPShowContacts`` only lists *dynamic* contacts ("No
Contacts found" for trunks with a static ``contact=``, checked on the
sandbox), while every ``EndpointList`` item carries ``DeviceState``, which
res_pjsip derives from its contacts' qualify status: ``Unavailable`` when
every contact is unreachable, ``Not in use`` when one answers;
``Unknown``/``Invalid`` say nothing.

But only while the endpoint has no channel. With channels up
(``ActiveChannels`` > 0) chan_pjsip reports the aggregate of their states
instead (``In use``, ``Ringing``, ``Busy``...), whatever its contacts'
qualify says: checked on the sandbox, dead-trunk (contact Unavailable) with
one ringing inbound channel on it is listed ``DeviceState: In use``. Read as
"reachable", such a poll half-opens a trunk that ContactStatus has reported
unreachable while calls are up on it, and the probe call fails at once
(OriginateResponse Failure without a channel: cause 38); on a carrier trunk
that also brings calls in, the poll would call it reachable for as long as
any call is up. So an endpoint with channels gets no report here (unless it
says ``Unavailable``, which channels never produce); ContactStatus events
still say when its contacts change.
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
        elif _active_channels(ev):
            continue  # the channels' state, not the contacts' (see the module's docstring)
        elif state in ("", "unknown", "invalid"):
            out[name] = "unknown"
        else:
            out[name] = "reachable"
    return out


def _active_channels(ev: Event) -> bool:
    try:
        return int((ev.get("ActiveChannels") or "0").strip()) > 0
    except ValueError:
        return True  # unreadable: do not trust the DeviceState either
