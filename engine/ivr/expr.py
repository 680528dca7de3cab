"""Safe expressions for ``if``/``switch``: a small recursive-descent parser, no ``eval``.

Grammar (lowest precedence first)::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand)?
    operand := NUMBER | STRING | "true" | "false" | NAME ("." NAME)* | "(" expr ")"
             | "[" (operand ("," operand)*)? "]"

Strings are in double or single quotes (``"拒绝"``, ``'sales'``) with ``\\`` escapes.
There are no calls, no attribute access on values, no arithmetic: an expression
can only read flow variables and compare them, so a flow file cannot run code.
Why not a library: docs/architecture.md ("IVR expressions").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Value = str | int | float | bool

__all__ = ["Expr", "ExprError", "Value", "compile_expr", "to_text"]


class ExprError(ValueError):
    """A malformed expression; ``column`` is 1-based within its text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (column {column})")
        self.column = column


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num | str | name | op | end
    text: str
    value: Value
    col: int


_OPS = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",")
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def _is_name_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch.lower() <= "z")


def _is_name_char(ch: str) -> bool:
    return _is_name_start(ch) or (ch.isdigit() and ch.isascii())


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            quote, j, buf = ch, i + 1, []
            while j < n and text[j] != quote:
                if text[j] == "\\":
                    if j + 1 >= n or text[j + 1] not in _ESCAPES:
                        raise ExprError(
                            "unknown escape in string (use \\\\, \\n, \\\" or \\')", j + 1
                        )
                    buf.append(_ESCAPES[text[j + 1]])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ExprError("string not closed", col)
            s = "".join(buf)
            out.append(_Tok("str", text[i : j + 1], s, col))
            i = j + 1
            continue
        if (ch.isdigit() and ch.isascii()) or (ch == "-" and i + 1 < n and text[i + 1].isdigit()):
            j = i + 1
            while j < n and ((text[j].isdigit() and text[j].isascii()) or text[j] == "."):
                j += 1
            lit = text[i:j]
            try:
                num: int | float = int(lit) if "." not in lit else float(lit)
            except ValueError as err:
                raise ExprError(f"bad number {lit!r}", col) from err
            out.append(_Tok("num", lit, num, col))
            i = j
            continue
        if _is_name_start(ch):
            j = i + 1
            while j < n and (
                _is_name_char(text[j])
                or (text[j] == "." and j + 1 < n and _is_name_start(text[j + 1]))
            ):
                j += 1
            word = text[i:j]
            kind = "op" if word in _KEYWORDS else "name"
            out.append(_Tok(kind, word, word, col))
            i = j
            continue
        for op in _OPS:
            if text.startswith(op, i):
                out.append(_Tok("op", op, op, col))
                i += len(op)
                break
        else:
            hint = " (write == to compare)" if ch == "=" else ""
            raise ExprError(f"unexpected character {ch!r}{hint}", col)
    out.append(_Tok("end", "", "", n + 1))
    return out


Getter = Callable[[Mapping[str, Value]], Value | list[Value]]


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled expression: its source, the variables it reads, and its evaluator."""

    source: str
    names: frozenset[str]
    _fn: Getter

    def evaluate(self, variables: Mapping[str, Value]) -> Value:
        """The value; a missing variable reads as ``""``. Never raises on data."""
        result = self._fn(variables)
        return result if not isinstance(result, list) else bool(result)

    def test(self, variables: Mapping[str, Value]) -> bool:
        return _truthy(self.evaluate(variables))


def to_text(value: Value) -> str:
    """How a value reads in a template or a ``switch`` case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _number(value: Value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        num = float(value.strip())
    except ValueError:
        return None
    return num if math.isfinite(num) else None


def _truthy(value: Value | list[Value]) -> bool:
    if isinstance(value, list):
        return bool(value)
    if isinstance(value, str):
        return value != ""
    return bool(value)


def _equal(a: Value, b: Value) -> bool:
    # A number against a numeric string compares as numbers ("0.80" == 0.8):
    # webhook replies and DTMF give strings, flow authors write numbers.
    if (isinstance(a, int | float) and not isinstance(a, bool)) or (
        isinstance(b, int | float) and not isinstance(b, bool)
    ):
        x, y = _number(a), _number(b)
        if x is not None and y is not None:
            return x == y
    return to_text(a) == to_text(b)


def _order(op: str, a: Value, b: Value) -> bool:
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        pair: tuple[float, float] | tuple[str, str] = (x, y)
    elif isinstance(a, str) and isinstance(b, str):
        pair = (a, b)
    else:
        return False  # "" > 0.7 is false, not an error: an unset score is not high
    lhs, rhs = pair
    if op == "<":
        return lhs < rhs  # type: ignore[operator]
    if op == "<=":
        return lhs <= rhs  # type: ignore[operator]
    if op == ">":
        return lhs > rhs  # type: ignore[operator]
    return lhs >= rhs  # type: ignore[operator]


def _contains(a: Value, b: Value | list[Value]) -> bool:
    if isinstance(b, list):
        return any(_equal(a, item) for item in b)
    return to_text(a) in to_text(b)


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0
        self.names: set[str] = set()

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind == "op" and tok.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            tok = self.peek()
            raise ExprError(f"expected {text!r}, got {tok.text or 'the end'!r}", tok.col)

    def parse(self) -> Getter:
        fn = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected {tok.text!r} after a complete expression", tok.col)
        return fn

    def or_(self) -> Getter:
        parts = [self.and_()]
        while self.accept("or"):
            parts.append(self.and_())
        if len(parts) == 1:
            return parts[0]
        return lambda v: any(_truthy(p(v)) for p in parts)

    def and_(self) -> Getter:
        parts = [self.not_()]
        while self.accept("and"):
            parts.append(self.not_())
        if len(parts) == 1:
            return parts[0]
        return lambda v: all(_truthy(p(v)) for p in parts)

    def not_(self) -> Getter:
        if self.accept("not"):
            inner = self.not_()
            return lambda v: not _truthy(inner(v))
        return self.compare()

    def compare(self) -> Getter:
        left = self.operand()
        tok = self.peek()
        op = tok.text if tok.kind == "op" else ""
        if op == "not" and self.toks[self.pos + 1].text == "in":
            self.pos += 2
            right = self.operand()
            return lambda v: not _contains(_scalar(left(v)), right(v))
        if op not in ("==", "!=", "<", "<=", ">", ">=", "in"):
            return left
        self.pos += 1
        right = self.operand()
        if op == "in":
            return lambda v: _contains(_scalar(left(v)), right(v))
        if op == "==":
            return lambda v: _equal(_scalar(left(v)), _scalar(right(v)))
        if op == "!=":
            return lambda v: not _equal(_scalar(left(v)), _scalar(right(v)))
        return lambda v: _order(op, _scalar(left(v)), _scalar(right(v)))

    def operand(self) -> Getter:
        tok = self.take()
        if tok.kind in ("num", "str"):
            const = tok.value
            return lambda v: const
        if tok.kind == "op" and tok.text in ("true", "false"):
            flag = tok.text == "true"
            return lambda v: flag
        if tok.kind == "name":
            name = tok.text
            self.names.add(name)
            return lambda v: v.get(name, "")
        if tok.kind == "op" and tok.text == "(":
            inner = self.or_()
            self.expect(")")
            return inner
        if tok.kind == "op" and tok.text == "[":
            items: list[Getter] = []
            if not self.accept("]"):
                items.append(self.operand())
                while self.accept(","):
                    items.append(self.operand())
                self.expect("]")
            return lambda v: [_scalar(i(v)) for i in items]
        what = tok.text or "the end"
        raise ExprError(f'expected a value (number, "string" or variable), got {what!r}', tok.col)


def _scalar(value: Value | list[Value]) -> Value:
    return bool(value) if isinstance(value, list) else value


def compile_expr(text: str) -> Expr:
    """Parse ``text``; raises :class:`ExprError` with the column of the problem."""
    if not text.strip():
        raise ExprError("empty expression", 1)
    parser = _Parser(text)
    fn = parser.parse()
    return Expr(source=text, names=frozenset(parser.names), _fn=fn)
