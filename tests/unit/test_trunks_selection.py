"""Selection policies over a group, with a seeded RNG."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.trunks.causes import default_policy
from engine.trunks.fleet import Fleet
from engine.trunks.model import GroupSpec, Selection, TrunkSpec
from engine.trunks.selection import AllFull, NoneEligible, Picked, select


def spec(
    name: str, prio: int = 1, weight: int = 100, chans: int = 1000, cps: float = 1e6
) -> TrunkSpec:
    return TrunkSpec(name, "ast1", name, chans, cps, cps_burst=1000, priority=prio, weight=weight)


def fleet_of(trunks: list[TrunkSpec], selection: Selection = Selection.PRIORITY) -> Fleet:
    g = GroupSpec("g", tuple(t.name for t in trunks), default_policy(), selection)
    return Fleet.build(trunks, [g])


def picks(fleet: Fleet, n: int, seed: int = 7) -> Counter[str]:
    rng = random.Random(seed)
    out: Counter[str] = Counter()
    for _ in range(n):
        c = select(fleet, "g", (), 0.0, rng)
        assert isinstance(c, Picked)
        out[c.trunk] += 1
        fleet = fleet.with_cursor("g", c.cursor)
    return out


def test_priority_picks_the_best_tier_only() -> None:
    f = fleet_of([spec("backup", prio=2), spec("main", prio=1)])
    assert picks(f, 200) == {"main": 200}


def test_weights_are_respected_within_a_tier() -> None:
    f = fleet_of([spec("a", weight=70), spec("b", weight=20), spec("c", weight=10), spec("z", 2)])
    n = 20_000
    got = picks(f, n)
    assert "z" not in got
    for name, share in (("a", 0.7), ("b", 0.2), ("c", 0.1)):
        assert abs(got[name] / n - share) < 0.02, (name, got)


def test_same_seed_same_choices() -> None:
    f = fleet_of([spec("a"), spec("b"), spec("c")])
    assert picks(f, 50, seed=3) == picks(f, 50, seed=3)


def test_zero_weights_share_uniformly() -> None:
    f = fleet_of([spec("a", weight=0), spec("b", weight=0)])
    got = picks(f, 4000)
    assert abs(got["a"] - got["b"]) < 300


def test_overflow_to_next_tier_when_main_is_full_down_or_tried() -> None:
    f = fleet_of([spec("main", chans=1), spec("backup", prio=2)])
    rng = random.Random(0)
    full = f.dispatch("main", 0.0)
    assert select(full, "g", (), 0.0, rng) == Picked("backup", False, 0)
    down = f.report("main", "unreachable", 0.0)
    assert select(down, "g", (), 1.0, rng) == Picked("backup", False, 0)
    assert select(f, "g", {"main"}, 1.0, rng) == Picked("backup", False, 0)
    drained = f.drain("main")
    assert select(drained, "g", (), 1.0, rng) == Picked("backup", False, 0)
    assert select(drained.enable("main"), "g", (), 1.0, rng) == Picked("main", False, 0)


def test_dead_trunk_is_never_selected() -> None:
    f = fleet_of([spec("dead"), spec("good")])
    f = f.report("dead", "unreachable", 0.0)
    got = picks(f, 500)
    assert got == {"good": 500}


def test_round_robin_cycles_and_skips_unavailable() -> None:
    f = fleet_of([spec("a"), spec("b"), spec("c")], Selection.ROUND_ROBIN)
    rng = random.Random(0)
    seq = []
    for _ in range(7):
        c = select(f, "g", (), 0.0, rng)
        assert isinstance(c, Picked)
        seq.append(c.trunk)
        f = f.with_cursor("g", c.cursor)
    assert seq == ["a", "b", "c", "a", "b", "c", "a"]
    f = f.drain("c")
    seq = []
    for _ in range(4):
        c = select(f, "g", (), 0.0, rng)
        assert isinstance(c, Picked)
        seq.append(c.trunk)
        f = f.with_cursor("g", c.cursor)
    assert seq == ["b", "a", "b", "a"]


def test_least_used_picks_lowest_utilisation() -> None:
    f = fleet_of(
        [spec("big", chans=100), spec("small", chans=4), spec("mid", chans=10)],
        Selection.LEAST_USED,
    )
    f = f.set_in_use("big", 30).set_in_use("small", 1).set_in_use("mid", 2)
    # utilisation: big 0.30, small 0.25, mid 0.20
    c = select(f, "g", (), 0.0, random.Random(0))
    assert isinstance(c, Picked) and c.trunk == "mid"
    f = f.set_in_use("mid", 5)
    c = select(f, "g", (), 0.0, random.Random(0))
    assert isinstance(c, Picked) and c.trunk == "small"


@settings(max_examples=100, deadline=None)
@given(uses=st.lists(st.integers(0, 9), min_size=2, max_size=12))
def test_property_least_used_is_a_minimum(uses: list[int]) -> None:
    trunks = [spec(f"t{i}", chans=10) for i in range(len(uses))]
    f = fleet_of(trunks, Selection.LEAST_USED)
    for i, u in enumerate(uses):
        f = f.set_in_use(f"t{i}", u)
    c = select(f, "g", (), 0.0, random.Random(0))
    assert isinstance(c, Picked)
    assert f.states[c.trunk].in_use == min(uses)


def test_all_full_gives_the_earliest_cps_time() -> None:
    a = TrunkSpec("a", "ast1", "a", 10, 2)
    b = TrunkSpec("b", "ast1", "b", 10, 4)
    f = fleet_of([a, b]).dispatch("a", 10.0).dispatch("b", 10.0)
    assert select(f, "g", (), 10.1, random.Random(0)) == AllFull(retry_at=10.25)


def test_all_full_on_channels_waits_for_a_release() -> None:
    f = fleet_of([spec("a", chans=1)]).dispatch("a", 0.0)
    assert select(f, "g", (), 1.0, random.Random(0)) == AllFull(retry_at=None)


def test_none_eligible_says_why_and_when() -> None:
    f = fleet_of([spec("a"), spec("b"), spec("c")])
    f = f.report("a", "unreachable", 0.0).drain("b")
    c = select(f, "g", {"c"}, 1.0, random.Random(0))
    assert isinstance(c, NoneEligible)
    reasons = dict(c.reasons)
    assert reasons == {
        "a": "down (breaker open: unreachable)",
        "b": "drained",
        "c": "already tried by this call",
    }
    assert c.retry_at == 300.0  # the unreachable report goes stale then


def test_half_open_member_is_picked_as_a_probe_once() -> None:
    f = fleet_of([spec("a"), spec("b", prio=2)])
    f = f.report("a", "unreachable", 0.0).report("a", "reachable", 5.0)
    c = select(f, "g", (), 6.0, random.Random(0))
    assert c == Picked("a", True, 0)
    f = f.dispatch("a", 6.0, probe=True)
    assert select(f, "g", (), 6.5, random.Random(0)) == Picked("b", False, 0)


@pytest.mark.parametrize("selection", list(Selection))
def test_two_hundred_trunks_every_policy_picks_an_available_one(selection: Selection) -> None:
    trunks = [spec(f"t{i:03d}", prio=i % 5, chans=2) for i in range(200)]
    f = fleet_of(trunks, selection)
    rng = random.Random(1)
    for i in range(0, 200, 3):
        f = f.set_in_use(f"t{i:03d}", 2)
    for _ in range(50):
        c = select(f, "g", (), 0.0, rng)
        assert isinstance(c, Picked)
        assert f.states[c.trunk].in_use < 2
        f = f.dispatch(c.trunk, 0.0).with_cursor("g", c.cursor)
