"""What the Asterisk driver lets into an AMI header, and why. Pure.

The API validates its input first; this is the driver's own line of defence,
so a bug or a new caller upstream cannot turn a value into something Asterisk
interprets. Every refusal is :class:`UnsafeValue` (an ActionFailed) naming the field and what
was expected; nothing is written to the switch.

Where a value goes and what Asterisk does with it there:

- **any header**: CR or LF ends the header and starts another one (or a
  whole new action). The codec refuses them too (``ProtocolError``); here
  every control character is refused with a clear error first.
- **Originate ``Variable: NAME=value``**: the header is split with
  Asterisk's argument parser (``,`` separates pairs, quotes are stripped,
  brackets and parentheses group, ``\\`` escapes), so those characters are
  escaped. A ``NAME`` ending in ``(...)`` writes a *dialplan function*
  (``FILE(...)``, ``CDR(...)``, ``SHELL``...), so names are plain identifiers
  (with the ``_``/``__`` inheritance prefixes). ``${`` or ``$[`` in a value is
  refused: Asterisk stores it literally, but any dialplan that re-evaluates
  the value (``Eval``, ``Exec``, a nested ``${${X}}``) would run the function
  or expression inside.
- **values the engine's own dialplan substitutes into application
  arguments** (the IVR flow in ``AGI(agi://host:port/${ENGINE_IVR_FLOW})``,
  the prompt in ``Playback(${ENGINE_PLAY_PROMPT})``): substitution happens
  *before* the arguments are split, so ``,`` ``&`` ``|`` ``(`` ``)`` ``?``
  would add arguments, files or options. Those take a strict token.
- **MixMonitor ``File``**: AMI's MixMonitor joins ``file,options,command``
  into one argument string, and the *command* is run by the shell when the
  recording ends: a comma in the path would be a shell command. Paths are
  a strict token.
- **``CallerID``**: parsed as ``"name" <number>``; quotes, angle brackets
  and backslashes in the name would move the number. Refused.
- **``Context``/``Exten``**: dialplan names, a strict token.
"""

from __future__ import annotations

import re

from engine.core.errors import UnsafeValue

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VAR_NAME = re.compile(r"^_{0,2}[A-Za-z][A-Za-z0-9_]{0,79}\Z")
_DIALPLAN_WORD = re.compile(r"^[A-Za-z0-9_+*#.-]{1,80}\Z")
_FLOW = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
# A file path or prompt name (Playback takes either, without extension).
_PATH = re.compile(r"^(?!.*\.\.)[A-Za-z0-9_./:-]{1,255}\Z")
_CID_NUM = re.compile(r"^\+?[0-9*#]{0,32}\Z")
_CID_NAME_BAD = re.compile(r'["<>\\\x00-\x1f\x7f]')
# Characters Asterisk's argument splitter (AST_STANDARD_APP_ARGS, used on
# every Originate ``Variable:`` header) treats specially: ',' separates
# several NAME=value pairs in one header, quotes are stripped, and brackets and
# parentheses suspend splitting. A backslash makes the next character literal.
_VAR_SPECIAL = re.compile(r'([\\,"()\[\]])')


def _refuse(what: str, value: str, expected: str) -> UnsafeValue:
    return UnsafeValue(f"{what} {value!r} refused: expected {expected}")


def escape_variable_value(value: str) -> str:
    """Escape a value for ``Variable: NAME=value`` so it arrives verbatim."""
    return _VAR_SPECIAL.sub(r"\\\1", value)


def variable_name(name: str) -> str:
    if not _VAR_NAME.match(name):
        raise _refuse(
            "channel variable name",
            name,
            "a plain identifier (letters, digits, '_'; optional '_'/'__' prefix), "
            "never a dialplan function",
        )
    return name


def variable_value(name: str, value: str) -> str:
    """Check a channel variable's value (not escaped; see :func:`variable_header`)."""
    if _CONTROL.search(value):
        raise _refuse(f"value of channel variable {name}", value, "no control characters")
    if "${" in value or "$[" in value:
        raise _refuse(
            f"value of channel variable {name}",
            value,
            "no '${' or '$[' (dialplan functions and expressions are not expanded from input)",
        )
    return value


def variable_header(name: str, value: str) -> str:
    """``NAME=value`` for one Originate ``Variable`` header."""
    return f"{variable_name(name)}={escape_variable_value(variable_value(name, value))}"


def dialplan_word(what: str, value: str) -> str:
    if not _DIALPLAN_WORD.match(value):
        raise _refuse(what, value, "1-80 of letters, digits and _ + * # . -")
    return value


def flow_name(value: str) -> str:
    if not _FLOW.match(value):
        raise _refuse("IVR flow name", value, "letters, digits, '_' and '-' (max 64)")
    return value


def file_path(what: str, value: str) -> str:
    if not _PATH.match(value):
        raise _refuse(what, value, "letters, digits and _ . / : - only, no '..'")
    return value


def caller_id(number: str, name: str) -> str | None:
    """The ``CallerID`` header value, or None when both are empty."""
    if not _CID_NUM.match(number):
        raise _refuse("caller id number", number, "up to 32 digits, * or #, optional leading +")
    if _CID_NAME_BAD.search(name) or len(name) > 80:
        raise _refuse(
            "caller id name", name, "at most 80 characters without quotes, < > \\ or controls"
        )
    if name:
        return f'"{name}" <{number}>'
    return number or None
