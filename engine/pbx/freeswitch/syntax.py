"""What may be pasted into a FreeSWITCH command line, and how.

Everything the driver sends is one ESL line (``api ...`` / ``bgapi ...``), so
an untrusted string must never be able to end the line, split an argument, or
change the structure of a dial string. How FreeSWITCH 1.10 reads an
``originate`` (src/switch_ivr_originate.c, switch_event.c, switch_utils.c):

1. ESL: the command ends at the first newline; a second line is a new command
   (or a header). Control characters are therefore never allowed.
2. ``originate`` splits its arguments on spaces, honouring single quotes.
3. ``switch_ivr_originate`` first looks for ``:_:`` ANYWHERE in the dial
   string, variables included: if present, the whole string is re-read as an
   "enterprise" originate, one independent leg per ``:_:`` part.
4. It also scans the whole string for ``origination_nested_vars=true``, which
   turns off the check that refuses ``${...}`` in variable values.
5. The ``{...}`` block ends at the first ``}`` that balances the ``{``
   (``switch_find_end_paren``: no quoting, no escaping). A ``}`` in a value
   closes the block early and whatever follows becomes the dial string; a
   ``{`` unbalances it.
6. The block is split on ``,`` (``\\,`` escapes one), each item on its first
   ``=``. Single quotes and backslashes are interpreted there too (quotes are
   stripped, ``\\x`` escapes), and a leading ``^^<c>`` changes the separator.
7. Only then is the remaining dial string split into legs on ``|`` (failover)
   and ``,`` (simultaneous).

So a variable value is made safe by: rejecting control characters, ``{ } ' "
\\ |``, ``^^``, ``${``, ``:_:`` and ``origination_nested_vars`` (none can be
escaped reliably through both parsers); escaping ``,`` as ``\\,``; and
wrapping a value holding spaces in single quotes (step 2). Names and dial
targets get strict allow-lists instead, because they have a known shape.
"""

from __future__ import annotations

import re

from engine.core.errors import UnsafeValue

#: Channel variable names: what FreeSWITCH's own variables look like, plus '-'
#: and '.' for SIP header variables such as sip_h_X-Campaign.
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
#: A sofia gateway name (the trunk).
_GATEWAY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: The user part dialled through a gateway: digits, letters, + * # . _ -
#: ('@', '/', ':', '|' and ',' would change the destination or add legs).
_NUMBER = re.compile(r"\+?[0-9A-Za-z*#._-]{1,64}")
#: ``user/<name>[@domain]``: a directory user.
_ENDPOINT = re.compile(r"[A-Za-z0-9_.+-]{1,64}(@[A-Za-z0-9_.-]{1,253})?")
#: An IVR flow name: it lands inside an inline dialplan where ',' separates apps.
_FLOW = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Characters that end or re-open the ``{}`` block, or that both parsers read
#: as quoting/escaping, or that add legs: refused in any value.
_FORBIDDEN_CHARS = set("{}'\"\\|")
#: Sequences with a meaning anywhere in the string (steps 3, 4, 6 above).
_FORBIDDEN_SEQUENCES = ("^^", "${", ":_:")

MAX_VALUE_LEN = 1024


def _fail(what: str, value: str, problem: str) -> UnsafeValue:
    return UnsafeValue(f"{what} {value!r}: {problem}")


def check_no_control(value: str, what: str) -> str:
    """Refuse control characters (a newline would start a second ESL command)."""
    if (m := _CONTROL.search(value)) is not None:
        raise _fail(what, value, f"holds the control character {m.group()!r}, not allowed")
    return value


def var_name(name: str) -> str:
    """A channel variable name, checked against an allow-list."""
    if not _VAR_NAME.fullmatch(name):
        raise _fail(
            "variable name",
            name,
            "expected a letter or '_' then up to 127 of letters, digits, '_', '.', '-'",
        )
    return name


def var_value(value: str, what: str = "variable value") -> str:
    """Encode ``value`` for an originate ``{name=value}`` block, or refuse it."""
    if len(value) > MAX_VALUE_LEN:
        raise _fail(what, value[:40] + "...", f"is longer than {MAX_VALUE_LEN} characters")
    check_no_control(value, what)
    bad = sorted(set(value) & _FORBIDDEN_CHARS)
    if bad:
        raise _fail(
            what,
            value,
            f"holds {' '.join(bad)}, which FreeSWITCH's originate parser cannot take "
            "escaped (they close the variable block, quote, escape or add a leg)",
        )
    for seq in _FORBIDDEN_SEQUENCES:
        if seq in value:
            raise _fail(what, value, f"holds {seq!r}, which FreeSWITCH's originate interprets")
    if "origination_nested_vars" in value.lower():
        raise _fail(what, value, "names origination_nested_vars, which originate interprets")
    # FreeSWITCH trims spaces around each separated item anyway; trimming here
    # keeps what we send equal to what it stores.
    encoded = value.strip(" ").replace(",", "\\,")
    # Spaces would end the originate argument; single quotes keep it whole.
    return f"'{encoded}'" if " " in encoded else encoded


def gateway(name: str) -> str:
    if not _GATEWAY.fullmatch(name):
        raise _fail("trunk", name, "expected a sofia gateway name: letters, digits, '_', '.', '-'")
    return name


def number(value: str) -> str:
    if not _NUMBER.fullmatch(value):
        raise _fail(
            "number",
            value,
            "expected an optional '+' then 1-64 of digits, letters, '*', '#', '.', '_', '-'",
        )
    return value


def endpoint(name: str) -> str:
    if not _ENDPOINT.fullmatch(name):
        raise _fail(
            "endpoint", name, "expected a directory user name, optionally @domain (user/<name>)"
        )
    return name


def flow(name: str) -> str:
    if not _FLOW.fullmatch(name):
        raise _fail("IVR flow", name, "expected letters, digits, '_', '.', '-' (max 64)")
    return name


def raw_dial_string(value: str) -> str:
    """A configured one-leg dial string (``sofia/external/1000@host:5080``, ``loopback/9``).

    No variables, no extra legs: everything that opens a block or separates legs is
    refused, so a raw target is exactly one endpoint."""
    check_no_control(value, "raw dial string")
    bad = sorted(set(value) & set("{}<>[]'\"\\|, "))
    if not value or bad:
        raise _fail(
            "raw dial string",
            value,
            f"must be one endpoint without spaces, variable blocks, quotes or leg separators "
            f"(found {' '.join(repr(c) for c in bad) or 'nothing'})",
        )
    for seq in _FORBIDDEN_SEQUENCES:
        if seq in value:
            raise _fail("raw dial string", value, f"holds {seq!r}")
    return value
