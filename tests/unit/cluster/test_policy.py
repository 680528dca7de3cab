"""The spread policy (engine/cluster/policy.py): rendezvous hashing with hysteresis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from engine.cluster.policy import View, placement, plan, preferred, weight

NAMES = [f"queue:q{i}" for i in range(60)] + [f"switch:s{i}" for i in range(4)]


def view(
    me: str,
    live_for: dict[str, float],
    holders: Mapping[str, str | None],
    held: set[str] | None = None,
    free_for: dict[str, float] | None = None,
) -> View:
    return View(me, live_for, holders, frozenset(held or ()), free_for or {})


def test_weight_is_stable_and_depends_on_both() -> None:
    assert weight("e1", "queue:a") == weight("e1", "queue:a")
    assert weight("e1", "queue:a") != weight("e2", "queue:a")
    assert weight("e1", "queue:a") != weight("e1", "queue:b")


def test_preferred_spreads_and_moves_only_the_leaving_engines_share() -> None:
    three = {n: preferred(n, ["e1", "e2", "e3"]) for n in NAMES}
    counts = Counter(three.values())
    assert set(counts) == {"e1", "e2", "e3"}
    assert min(counts.values()) >= len(NAMES) // 6  # no engine starved
    two = {n: preferred(n, ["e1", "e2"]) for n in NAMES}
    moved = [n for n in NAMES if three[n] != two[n]]
    assert moved and all(three[n] == "e3" for n in moved)
    assert preferred("queue:a", []) is None


def test_a_lone_engine_takes_every_free_lease_at_once() -> None:
    p = plan(view("e1", {}, dict.fromkeys(NAMES)), handback_after_s=10, grace_s=5)
    assert p.take == tuple(sorted(NAMES)) and p.hand_back == ()


def test_free_lease_goes_to_its_preferred_owner_only() -> None:
    holders: dict[str, str | None] = dict.fromkeys(NAMES)
    live = {"e1": 30.0, "e2": 30.0}
    p1 = plan(view("e1", {"e2": 30.0}, holders), handback_after_s=10, grace_s=5)
    p2 = plan(view("e2", {"e1": 30.0}, holders), handback_after_s=10, grace_s=5)
    assert set(p1.take).isdisjoint(p2.take)
    assert set(p1.take) | set(p2.take) == set(NAMES)
    for name in p1.take:
        assert preferred(name, live) == "e1"


def test_lease_of_a_dead_preferred_owner_is_taken_by_anyone() -> None:
    # e2 would prefer it, but e2 is not live: e1 takes it.
    name = next(n for n in NAMES if preferred(n, ["e1", "e2"]) == "e2")
    p = plan(view("e1", {}, {name: None}), handback_after_s=10, grace_s=5)
    assert p.take == (name,)


def test_held_lease_is_never_taken_and_ours_from_a_previous_life_is() -> None:
    p = plan(view("e1", {}, {"queue:a": "e2", "queue:b": "e1"}), handback_after_s=10, grace_s=5)
    assert p.take == ("queue:b",)


def test_hand_back_waits_for_the_preferred_owner_to_be_live_long_enough() -> None:
    name = next(n for n in NAMES if preferred(n, ["e1", "e2"]) == "e2")
    young = plan(view("e1", {"e2": 3.0}, {name: "e1"}, {name}), handback_after_s=10, grace_s=5)
    assert young.hand_back == ()
    old = plan(view("e1", {"e2": 12.0}, {name: "e1"}, {name}), handback_after_s=10, grace_s=5)
    assert old.hand_back == (name,)
    mine = next(n for n in NAMES if preferred(n, ["e1", "e2"]) == "e1")
    keep = plan(view("e1", {"e2": 99.0}, {mine: "e1"}, {mine}), handback_after_s=10, grace_s=5)
    assert keep.hand_back == () and keep.take == ()


def test_free_lease_left_by_a_live_preferred_owner_is_taken_after_grace() -> None:
    name = next(n for n in NAMES if preferred(n, ["e1", "e2"]) == "e2")
    soon = plan(
        view("e1", {"e2": 30.0}, {name: None}, free_for={name: 1.0}), handback_after_s=10, grace_s=5
    )
    late = plan(
        view("e1", {"e2": 30.0}, {name: None}, free_for={name: 6.0}), handback_after_s=10, grace_s=5
    )
    assert soon.take == () and late.take == (name,)


def test_placement_keeps_grouped_leases_together() -> None:
    names = {"switch:pbx1": None, "queue:sales": None, "campaign:c1": None}
    p1 = plan(
        view("e1", {"e2": 30.0}, names), handback_after_s=10, grace_s=5, placement=lambda n: "pbx1"
    )
    p2 = plan(
        view("e2", {"e1": 30.0}, names), handback_after_s=10, grace_s=5, placement=lambda n: "pbx1"
    )
    assert {len(p1.take), len(p2.take)} == {0, 3}


def test_placement_rule_of_the_cluster_section() -> None:
    one = placement({}, ["pbx1"])
    assert one("switch:pbx1") == one("queue:sales") == one("campaign:c1") == "pbx1"
    two = placement({"queue:sales": "pbx2"}, ["pbx1", "pbx2"])
    assert two("switch:pbx1") == "pbx1" and two("queue:sales") == "pbx2"
    assert two("campaign:c1") == "campaign:c1"
