"""engine.core.frozen.replace is dataclasses.replace, for every kind of dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError, InitVar, dataclass, field

import pytest

from engine.core.frozen import fast_replace, replace
from engine.trunks.health import TrunkState


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "x"
    c: tuple[int, ...] = ()
    d: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("a < 0")


@dataclass(frozen=True, slots=True)
class Derived:
    a: int
    twice: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "twice", 2 * self.a)


@dataclass(frozen=True)
class NoSlots:
    a: int
    b: int = 0


@dataclass
class Mutable:
    a: int
    scale: InitVar[int] = 1

    def __post_init__(self, scale: int) -> None:
        self.a *= scale


def test_a_frozen_slotted_class_is_copied_with_the_changes() -> None:
    assert replace is fast_replace  # at run time; mypy checks calls as dataclasses.replace
    old = Plain(1, "y", (1, 2), {"k": 1})
    new = replace(old, b="z", c=(3,))
    assert new == dataclasses.replace(old, b="z", c=(3,))
    assert old == Plain(1, "y", (1, 2), {"k": 1})
    assert replace(old) == old and replace(old) is not old
    with pytest.raises(FrozenInstanceError):
        new.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field 'nope'"):
        fast_replace(old, nope=1)  # mypy would refuse it through replace
    st = TrunkState()
    assert replace(st, in_use=3) == dataclasses.replace(st, in_use=3)


def test_classes_it_cannot_copy_go_to_dataclasses_replace() -> None:
    with pytest.raises(ValueError, match="a < 0"):
        replace(Checked(1), a=-1)  # __post_init__ still runs
    assert replace(Derived(2), a=5).twice == 10  # init=False recomputed
    assert replace(NoSlots(1), b=2) == NoSlots(1, 2)
    assert replace(Mutable(2), scale=3).a == 6  # InitVar passed through


@dataclass(frozen=True, slots=True)
class WithInitVar:
    a: int
    unused: InitVar[int] = 0


def test_an_initvar_without_post_init_also_goes_to_dataclasses_replace() -> None:
    assert replace(WithInitVar(1), a=2) == dataclasses.replace(WithInitVar(1), a=2)
