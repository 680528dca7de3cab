"""What the ACD dials to ring an agent, and the caller's data it sends along. Pure.

``[[agents]] endpoints`` maps a switch name to what rings the agent there:
``PJSIP/agent1`` (Asterisk), ``user/1001`` (FreeSWITCH) or a bare endpoint
name. The drivers build the dial string themselves from
``DialTarget("endpoint", name)`` (``PJSIP/<name>``, ``user/<name>``), so the
technology prefix of the switch's own kind is dropped here; any other
technology is a config error, reported at start with the key path.

The caller's data rides on the agent's leg as channel variables
(``ACD_*``, ``ACD_CUSTOMER_<KEY>``), which the agent's phone or a CRM
connector can read. Every value is checked here against what both drivers
accept (no control characters, no ``${`` or ``$[``), so a value that would be
refused at the switch is refused when the call enters the queue instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from engine.agents.model import AgentConfig

_PREFIX = {"asterisk": "pjsip", "freeswitch": "user"}
_SHOWN = {"asterisk": "PJSIP", "freeswitch": "user"}
CUSTOMER_KEY = r"^[A-Za-z][A-Za-z0-9_]{0,40}$"
# What both drivers take as a channel variable's value: no control characters,
# no "${" or "$[" (Asterisk would expand them on re-evaluation), none of
# { } ' " \\ | ^ (FreeSWITCH's originate block cannot carry them escaped) and
# no ":_:" (FreeSWITCH's leg separator; checked in code, a regex without
# lookahead cannot say it).
VAR_VALUE = r"^(?:[^\x00-\x1f\x7f${}'\"\\|^]|\$[^\x00-\x1f\x7f${}'\"\\|^\[])*\$?$"
TAG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MAX_VALUE = 256
_KEY = re.compile(CUSTOMER_KEY)
_VALUE = re.compile(VAR_VALUE)
_TAG = re.compile(TAG)


def endpoint_name(value: str, switch_kind: str) -> str | None:
    """The endpoint name for ``DialTarget("endpoint", ...)``, or None when ``value``
    names a technology this switch kind does not dial."""
    if "/" not in value:
        return value
    tech, _, rest = value.partition("/")
    if tech.lower() != _PREFIX.get(switch_kind) or not rest or "/" in rest:
        return None
    return rest


def endpoint_problems(agents: Iterable[AgentConfig], switch_kinds: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for i, agent in enumerate(agents):
        for switch, value in agent.endpoints.items():
            kind = switch_kinds.get(switch)
            if kind is not None and endpoint_name(value, kind) is None:
                out.append(
                    f"agents[{i}].endpoints.{switch}: {value!r} cannot be dialled on a {kind} "
                    f"switch (expected a bare endpoint name or {_SHOWN.get(kind, '?')}/<name>)"
                )
    return out


def check_call_data(
    tags: Iterable[str], intent: str | None, customer: Mapping[str, str]
) -> list[str]:
    """Problems with a queue call's data, each naming the field."""
    out: list[str] = []
    for i, tag in enumerate(tags):
        if not _TAG.fullmatch(tag):
            out.append(f"tags[{i}]: expected letters, digits, '_', '.', '-' (max 63)")
    if intent is not None and not _TAG.fullmatch(intent):
        out.append("intent: expected letters, digits, '_', '.', '-' (max 63)")
    for key, value in customer.items():
        if not _KEY.fullmatch(key):
            out.append(f"customer.{key[:50]}: expected a key of letters, digits and '_' (max 41)")
        elif len(value) > MAX_VALUE or not _VALUE.fullmatch(value) or ":_:" in value:
            out.append(
                f"customer.{key}: expected at most {MAX_VALUE} characters, no control "
                "characters, none of { } ' \" \\ | ^, no '${', '$[' or ':_:'"
            )
    return out


def call_variables(
    *,
    call_id: str,
    entry_id: str,
    queue: str,
    priority: int,
    tags: Iterable[str],
    intent: str | None,
    customer: Mapping[str, str],
) -> dict[str, str]:
    out = {
        "ACD_CALL_ID": call_id,
        "ACD_ENTRY_ID": entry_id,
        "ACD_QUEUE": queue,
        "ACD_PRIORITY": str(priority),
        "ACD_TAGS": ";".join(tags),
    }
    if intent is not None:
        out["ACD_INTENT"] = intent
    for key, value in sorted(customer.items()):
        out[f"ACD_CUSTOMER_{key.upper()}"] = value
    return out


def dialable(agent: AgentConfig, switch: str, switch_kind: str) -> str | None:
    value = agent.endpoints.get(switch)
    return endpoint_name(value, switch_kind) if value is not None else None
