"""``replace`` for frozen, slotted dataclasses: ``dataclasses.replace``, several times cheaper.

Why: the call and trunk state machines are immutable values, replaced on every step (a
``Call`` ~15 times per call, the trunk fleet's states ~15 more), and
``dataclasses.replace`` walks the field list and re-runs the generated ``__init__``,
which sets every field through ``object.__setattr__``: ~25 us for the 37 fields of a
``Call`` on this machine. Here each class gets, once, a copier that sets each slot
through the slot's own descriptor, unrolled (generated the way dataclasses generates
``__init__``), and the changes are set after it: ~6 us for a ``Call``.

Only where that is the same thing: a frozen dataclass with ``__slots__``, no
``__post_init__``, no ``init=False`` field and no pseudo-field (``InitVar``, ``ClassVar``)
(``replace`` re-runs the first, resets the second and passes ``InitVar`` values on). Any
other class goes to ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T")

_copiers: dict[type, Callable[[Any], Any] | None] = {}
_fields: dict[type, frozenset[str]] = {}
# object.__setattr__ goes around the frozen class's own __setattr__ (which refuses), as
# the dataclass's generated __init__ does.
_set = object.__setattr__


def fast_replace(obj: T, /, **changes: Any) -> T:
    """``dataclasses.replace(obj, **changes)``."""
    cls = type(obj)
    try:
        copy = _copiers[cls]
    except KeyError:
        copy = _copiers[cls] = _make_copier(cls)
    if copy is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    new: T = copy(obj)
    names = _fields[cls]
    for name, value in changes.items():
        if name not in names:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
        _set(new, name, value)
    return new


if TYPE_CHECKING:
    # mypy's dataclasses plugin checks each change against the field's type in calls of
    # dataclasses.replace: callers keep that check.
    from dataclasses import replace as replace
else:
    replace = fast_replace


def _pseudo_and_fields(cls: type) -> dict[str, Any]:
    fields: dict[str, Any] = cls.__dict__.get("__dataclass_fields__", {})
    return fields


def _make_copier(cls: type) -> Callable[[Any], Any] | None:
    params = getattr(cls, "__dataclass_params__", None)
    if (
        params is None
        or not params.frozen
        or "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
        or any(not f.init for f in dataclasses.fields(cls))
        # InitVar (and ClassVar) pseudo-fields are in __dataclass_fields__, not in fields().
        or len(dataclasses.fields(cls)) != len(_pseudo_and_fields(cls))
    ):
        return None
    names = tuple(f.name for f in dataclasses.fields(cls))
    _fields[cls] = frozenset(names)
    namespace: dict[str, Any] = {"_cls": cls, "_new": object.__new__}
    lines = ["def _copy(src):", "    new = _new(_cls)"]
    for i, name in enumerate(names):
        namespace[f"_s{i}"] = cls.__dict__[name].__set__
        lines.append(f"    _s{i}(new, src.{name})")
    lines.append("    return new")
    exec("\n".join(lines), namespace)  # built from the field names only
    copier: Callable[[Any], Any] = namespace["_copy"]
    return copier
