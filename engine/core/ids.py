"""Identifiers chosen by the engine."""

from __future__ import annotations

import uuid


def new_call_id() -> str:
    """A call id the switch accepts as a channel id.

    Asterisk's ChannelId and FreeSWITCH's origination_uuid both take a UUID,
    so the engine knows the id before the switch emits the first event.
    """
    return str(uuid.uuid4())


def new_error_ref() -> str:
    return uuid.uuid4().hex[:12]
