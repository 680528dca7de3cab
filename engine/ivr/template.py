"""``{var}`` templates: any string of a flow may read variables, Chinese text included.

Not ``str.format``: a field such as ``{customer.name}`` is one dotted variable
name here, whereas ``str.format`` would read an attribute ``name`` of a
``customer`` argument. ``{{`` and ``}}`` write a brace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from engine.ivr.expr import Value, to_text

VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(?:\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,4}\Z")
_PIECE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    pass


def fields(text: str) -> list[str]:
    """The variable names of a template; raises :class:`TemplateError` if malformed."""
    out: list[str] = []
    for m in _PIECE.finditer(text):
        piece = m.group(0)
        if piece in ("{{", "}}"):
            continue
        if piece in ("{", "}"):
            raise TemplateError(
                f"bad {{variable}} template: single {piece!r} (write {piece * 2} for a brace)"
            )
        name = (m.group(1) or "").strip()
        if not VAR.match(name):
            raise TemplateError(f"{{{m.group(1)}}} is not a variable name such as {{code}}")
        out.append(name)
    return out


def render(
    text: str, variables: Mapping[str, Value], escape: Callable[[str], str] | None = None
) -> str:
    """Fill the fields in; a variable that is not set reads as ``""``. ``escape`` is
    applied to every substituted value (e.g. URL quoting), never to the template."""

    def one(m: re.Match[str]) -> str:
        piece = m.group(0)
        if piece == "{{":
            return "{"
        if piece == "}}":
            return "}"
        value = to_text(variables.get((m.group(1) or "").strip(), ""))
        return escape(value) if escape is not None else value

    return _PIECE.sub(one, text)
