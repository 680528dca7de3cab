"""What a phonenumbers pattern can tell about the last digits of a number, given the digits
before them. Pure, for engine/campaigns/contacts/phones.py.

phonenumbers evaluates its metadata's regular expressions on strings of ASCII digits only, so
a pattern here is its language over the alphabet ``0``-``9``: Python's parsed form
(``re._parser``) is turned into a small tree whose atoms are digit sets, and read with
Brzozowski derivatives (the pattern left to match once a digit is consumed). Two questions:

- :func:`fullmatch_blind`: for every string ``head + tail`` with ``tail`` of ``k`` digits, is
  ``re.fullmatch(pattern, s)`` the same, whatever the tail? Proven when, step by step through the
  tail, all ten digits lead to the *same* derivative (structurally, after dropping what cannot
  reach the string's length): the end state, hence the answer, is then the same for every tail.
  Conservative: a pattern whose tail does matter in a way this cannot see is "not proven",
  never wrongly "proven".
- :func:`prefix_blind`: is ``re.match(pattern, head + tail)`` the same, whatever the tail? When
  the pattern can look no further than the head, or when every way through it dies inside the
  head before any could end (no match at all).

For a fullmatch the language is all that matters (backtracking finds a match iff the string is
in it). For ``re.match`` which match is found also depends on the alternatives' order, hence
the stricter rule. Constructs outside plain regular expressions (anchors, look-arounds,
back-references, flags) are :class:`Unsupported`, and the callers then prove nothing.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

sre_c: Any = importlib.import_module("re._constants")
sre_parse: Any = importlib.import_module("re._parser")

DIGITS = "0123456789"
_ALL = frozenset(DIGITS)
INF = 1 << 30  # an unbounded repeat's maximum

# The tree: ("set", frozenset[str]) | ("alt", tuple[Seq, ...]) | ("rep", lo, hi, Seq);
# a Seq is a tuple of nodes, matched one after another. Tuples, so derivatives can be cached.
Node = tuple[Any, ...]
Seq = tuple[Node, ...]
State = frozenset[Seq]


class Unsupported(ValueError):
    """The pattern uses something this module does not model."""


def _in_set(items: list[Any]) -> frozenset[str]:
    chars: set[str] = set()
    negate = False
    for op, av in items:
        if op is sre_c.NEGATE:
            negate = True
        elif op is sre_c.LITERAL:
            chars.add(chr(av))
        elif op is sre_c.RANGE:
            chars.update(chr(c) for c in range(av[0], av[1] + 1) if chr(c) in _ALL)
        elif op is sre_c.CATEGORY and av is sre_c.CATEGORY_DIGIT:
            chars.update(_ALL)
        else:
            raise Unsupported(f"set item {op}")
    digits = frozenset(chars) & _ALL
    return _ALL - digits if negate else digits


def _convert(items: list[Any]) -> Seq:
    out: list[Node] = []
    for op, av in items:
        if op is sre_c.LITERAL:
            out.append(("set", frozenset({chr(av)}) & _ALL))
        elif op is sre_c.NOT_LITERAL:
            out.append(("set", _ALL - {chr(av)}))
        elif op is sre_c.ANY:
            out.append(("set", _ALL))
        elif op is sre_c.IN:
            out.append(("set", _in_set(list(av))))
        elif op is sre_c.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags:
                raise Unsupported("inline flags")
            out.extend(_convert(list(sub)))
        elif op is sre_c.BRANCH:
            out.append(("alt", tuple(_convert(list(b)) for b in av[1])))
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, hi, sub = av
            body = _convert(list(sub))
            if _width(body)[0] == 0:
                # A body that can match nothing would let a derivative loop; not needed here.
                raise Unsupported("repeat of a possibly empty pattern")
            out.append(("rep", int(lo), INF if hi is sre_c.MAXREPEAT else int(hi), body))
        else:
            raise Unsupported(f"operator {op}")
    return tuple(out)


@lru_cache(maxsize=4096)
def compile_digits(pattern: str) -> Seq:
    """``pattern`` as a digit-set tree (:class:`Unsupported` if it cannot be)."""
    return _convert(list(sre_parse.parse(pattern)))


@lru_cache(maxsize=65536)
def _width(seq: Seq) -> tuple[int, int]:
    lo = hi = 0
    for node in seq:
        kind = node[0]
        if kind == "set":
            lo, hi = lo + 1, hi + 1
        elif kind == "alt":
            widths = [_width(s) for s in node[1]]
            lo += min(w[0] for w in widths)
            hi += max(w[1] for w in widths)
        else:
            body_lo, body_hi = _width(node[3])
            lo += node[1] * body_lo
            hi = INF if node[2] >= INF or body_hi >= INF else hi + node[2] * body_hi
        hi = min(hi, INF)
    return lo, hi


def _nullable(seq: Seq) -> bool:
    return _width(seq)[0] == 0


@lru_cache(maxsize=262144)
def _deriv(seq: Seq, digit: str) -> State:
    """What is left to match of ``seq`` after it has consumed ``digit`` (every way)."""
    if not seq:
        return frozenset()
    node, rest = seq[0], seq[1:]
    kind = node[0]
    if kind == "set":
        return frozenset({rest}) if digit in node[1] else frozenset()
    if kind == "alt":
        out: set[Seq] = set()
        for alt in node[1]:
            out |= _deriv(alt + rest, digit)
        return frozenset(out)
    lo, hi, body = node[1], node[2], node[3]
    out = set()
    if lo == 0:
        out |= _deriv(rest, digit)  # the repeat is done
    if hi > 0:
        again: Seq = ((("rep", max(lo - 1, 0), hi - 1 if hi < INF else INF, body)),)
        out |= _deriv(body + again + rest, digit)  # one more round (body is never empty)
    return frozenset(out)


def _step(state: State, digit: str, remaining: int | None) -> State:
    out: set[Seq] = set()
    for seq in state:
        for nxt in _deriv(seq, digit):
            if remaining is None or _width(nxt)[0] <= remaining <= _width(nxt)[1]:
                out.add(nxt)
    return frozenset(out)


@lru_cache(maxsize=65536)
def _after(pattern: str, head: str, length: int) -> State:
    """The derivatives of ``pattern`` by ``head``, keeping only what can reach ``length``."""
    if not head:
        start = compile_digits(pattern)
        lo, hi = _width(start)
        return frozenset({start}) if lo <= length <= hi else frozenset()
    return _step(_after(pattern, head[:-1], length), head[-1], length - len(head))


def fullmatch_blind(pattern: str, head: str, tail: int) -> bool:
    """Whether ``re.fullmatch(pattern, head + t)`` is the same for every ``t`` of ``tail``
    digits (see the module docstring). ``head`` is digits."""
    try:
        state = _after(pattern, head, len(head) + tail)
    except Unsupported:
        return False
    for left in range(tail - 1, -1, -1):
        if not state:
            return True  # dead: no tail matches
        first = _step(state, DIGITS[0], left)
        if any(_step(state, d, left) != first for d in DIGITS[1:]):
            return False
        state = first
    return True


@lru_cache(maxsize=65536)
def prefix_blind(pattern: str, head: str, peek: int = 0) -> bool:
    """Whether ``re.match(pattern, head + anything)`` is the same whatever follows ``head``,
    and so are the ``peek`` characters after the match (the caller reads them)."""
    try:
        seq = compile_digits(pattern)
    except Unsupported:
        return False
    if _width(seq)[1] + peek <= len(head):
        return True  # it cannot look past the head
    state: State = frozenset({seq})
    for digit in head:
        if any(_nullable(s) for s in state):
            return False  # a match could end inside the head: which one is found depends
        state = _step(state, digit, None)
        if not state:
            return True  # every way through the pattern died: no match at all
    return False
