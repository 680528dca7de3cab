"""Routing examples: each strategy's exact choice, priorities, overflow, exits, offers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.acd.model import (
    AgentView,
    OverflowRule,
    QueueSpec,
    Strategy,
    WaitingCall,
    priority_for,
    queue_for_intent,
)
from engine.acd.reservations import Outcome, Reservation, stale_reservations
from engine.acd.routing import (
    CallAlreadyQueued,
    Exit,
    Overflowed,
    Router,
    UnknownQueue,
    route,
)
from engine.acd.scoring import CosineScorer, LogisticScorer, logistic_from_json
from engine.core.errors import ConfigError


def agent(agent_id: str, level: int = 5, **kw: object) -> AgentView:
    skills = kw.pop("skills", {"sales": level})
    return AgentView(agent_id, skills=skills, available=True, **kw)  # type: ignore[arg-type]


def call(
    call_id: str, at: float = 0.0, prio: int = 1, queue: str = "q", **kw: object
) -> WaitingCall:
    return WaitingCall(call_id, queue, at, priority=prio, **kw)  # type: ignore[arg-type]


def q(strategy: Strategy, **kw: object) -> QueueSpec:
    return QueueSpec("q", {"sales": 3}, strategy, **kw)  # type: ignore[arg-type]


def one(
    strategy: Strategy, agents: list[AgentView], features: tuple[float, ...] | None = None
) -> tuple[str, ...]:
    calls = [WaitingCall("c1", "q", 0.0, features=features)]
    return route([q(strategy)], agents, calls, 10.0).as_map()["c1"]


def test_longest_idle() -> None:
    agents = [agent("a", idle_since=5), agent("b", idle_since=2), agent("c", idle_since=8)]
    assert one(Strategy.LONGEST_IDLE, agents) == ("b",)


def test_fewest_calls_then_longest_idle() -> None:
    agents = [
        agent("a", calls_handled=3, idle_since=1),
        agent("b", calls_handled=1, idle_since=6),
        agent("c", calls_handled=1, idle_since=4),
    ]
    assert one(Strategy.FEWEST_CALLS, agents) == ("c",)


def test_least_talk_time() -> None:
    agents = [agent("a", talk_s=300), agent("b", talk_s=120), agent("c", talk_s=900)]
    assert one(Strategy.LEAST_TALK_TIME, agents) == ("b",)


def test_highest_skill_level_and_too_low_a_level_never_fits() -> None:
    agents = [agent("a", 4), agent("b", 9), agent("c", 7), agent("d", 2)]
    assert one(Strategy.HIGHEST_SKILL_LEVEL, agents) == ("b",)
    assert route([q(Strategy.LONGEST_IDLE)], [agent("d", 2)], [call("c1")], 10).as_map() == {}


def test_round_robin_goes_around_in_agent_id_order() -> None:
    router = Router([q(Strategy.ROUND_ROBIN)])
    for a in ("b", "a", "c"):
        router.upsert_agent(agent(a))
    picks = []
    for i in range(5):
        router.add_call(call(f"c{i}", at=i))
        [assignment] = router.decide(float(i)).assignments
        picks.append(assignment.agent_ids[0])
        router.offer_answered(f"c{i}", picks[-1], float(i))
        router.upsert_agent(agent(picks[-1]))  # back to available at once
    assert picks == ["a", "b", "c", "a", "b"]


def test_ring_all_rings_every_fitting_agent_and_an_answer_cancels_the_rest() -> None:
    router = Router([q(Strategy.RING_ALL)])
    for a in (agent("b"), agent("a"), agent("low", 1)):
        router.upsert_agent(a)
    router.add_call(call("c1"))
    [assignment] = router.decide(1.0).assignments
    assert assignment.agent_ids == ("a", "b")
    closed = router.offer_answered("c1", "b", 3.0)
    assert [(c.reservation.agent_id, c.outcome) for c in closed] == [
        ("b", Outcome.ANSWERED),
        ("a", Outcome.CANCELLED),
    ]
    assert router.reservations() == []


def test_weighted_random_is_seeded_and_follows_skill_levels() -> None:
    agents = [agent("a", 9), agent("b", 3)]

    def picks(seed: int) -> list[str]:
        return [
            route(
                [q(Strategy.WEIGHTED_RANDOM)], agents, [call(f"c{i}")], 1, seed=seed + i
            ).as_map()[f"c{i}"][0]
            for i in range(400)
        ]

    first = picks(7)
    assert picks(7) == first  # deterministic given the seed
    share = first.count("a") / len(first)
    assert 0.65 < share < 0.85  # weights 9:3 -> 75 %


def test_load_aware_favours_the_less_occupied_agent() -> None:
    busy = agent("busy", busy_s=900, available_s=100, available_since=1000)
    idle = agent("idle", busy_s=100, available_s=900, available_since=1000)
    got = [
        route([q(Strategy.LOAD_AWARE)], [busy, idle], [call("c")], 1000, seed=s).as_map()["c"][0]
        for s in range(300)
    ]
    assert got == [
        route([q(Strategy.LOAD_AWARE)], [busy, idle], [call("c")], 1000, seed=s).as_map()["c"][0]
        for s in range(300)
    ]
    assert 0.8 < got.count("idle") / len(got) < 0.98  # weights 0.9 : 0.1


def test_best_match_is_the_highest_cosine_similarity() -> None:
    agents = [
        agent("a", capability=(1.0, 0.0)),
        agent("b", capability=(0.6, 0.8)),
        agent("c", capability=(0.0, 1.0)),
    ]
    assert one(Strategy.BEST_MATCH, agents, features=(0.1, 0.9)) == ("c",)
    assert one(Strategy.BEST_MATCH, agents, features=(0.7, 0.7)) == ("b",)
    # No features with the call: the longest idle of the candidates.
    idle = [agent("a", idle_since=3, capability=(1.0, 0.0)), agent("b", idle_since=1)]
    assert one(Strategy.BEST_MATCH, idle) == ("b",)


def test_best_match_ties_go_to_the_longest_idle_then_the_lower_id() -> None:
    # Regression: equal scores (a team sharing one capability vector) went to the lowest agent
    # id every time, so one agent of the team took every call while the others sat idle.
    team = [
        agent("a", idle_since=9, capability=(0.3, 0.1)),
        agent("b", idle_since=4, capability=(0.3, 0.1)),
        agent("c", idle_since=6, capability=(0.3, 0.1)),
        agent("d", idle_since=1, capability=(0.1, 0.4)),  # idle longest, but a worse match
    ]
    assert one(Strategy.BEST_MATCH, team, features=(1.0, 0.0)) == ("b",)
    # Scaled vectors score the same cosine up to rounding: still a tie.
    scaled = [
        agent("a", idle_since=5, capability=(0.3, 0.1)),
        agent("b", idle_since=2, capability=(0.9, 0.3)),
    ]
    assert one(Strategy.BEST_MATCH, scaled, features=(0.7, 0.2)) == ("b",)
    same_idle = [
        agent("b", idle_since=3, capability=(1.0, 0.0)),
        agent("a", idle_since=3, capability=(1.0, 0.0)),
    ]
    assert one(Strategy.BEST_MATCH, same_idle, features=(1.0, 0.0)) == ("a",)


def test_best_match_with_a_pluggable_scorer() -> None:
    class PreferSecond:
        def score(self, features: np.ndarray, capabilities: np.ndarray) -> np.ndarray:
            out: np.ndarray = capabilities[:, 1]
            return out

    agents = [agent("a", capability=(1.0, 0.0)), agent("b", capability=(0.0, 0.5))]
    decision = route(
        [q(Strategy.BEST_MATCH)], agents, [call("c", features=(1.0, 0.0))], 1, scorer=PreferSecond()
    )
    assert decision.as_map() == {"c": ("b",)}


def test_cosine_and_logistic_scores() -> None:
    caps = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    assert CosineScorer().score(np.array([1.0, 0.0]), caps).tolist() == [1.0, 0.0, 0.6]
    model = LogisticScorer(0.0, np.array([0.0, 0.0]), np.array([1.0, -1.0]), np.array([2.0, 0.0]))
    got = model.score(np.array([1.0, 0.0]), caps)
    assert got == pytest.approx(1 / (1 + np.exp(-np.array([3.0, 0.0, 5.0]))))


def test_logistic_weights_from_json_and_their_errors() -> None:
    model = logistic_from_json(
        json.dumps({"bias": -1, "features": [0.5], "capabilities": [2.0], "interaction": [1.0]})
    )
    assert model.score(np.array([1.0]), np.array([[1.0]])).tolist() == pytest.approx(
        [1 / (1 + np.exp(-2.5))]
    )
    with pytest.raises(ConfigError) as info:
        logistic_from_json(
            json.dumps({"bias": "x", "features": [1, 2], "capabilities": [], "interaction": [1]}),
            "w.json",
        )
    assert info.value.path == "w.json"
    assert info.value.problems == [
        "bias: expected a finite number (got 'x')",
        "capabilities: expected a non-empty list of numbers",
        "interaction: expected 2 numbers, one per call feature (got 1)",
    ]
    with pytest.raises(ConfigError) as info:
        logistic_from_json('{"bias": 0, "features": [1], "capabilities": [1], "extra": 1}', "w")
    assert info.value.problems == [
        "extra: unknown key (expected bias, features, capabilities, interaction)"
    ]


def test_higher_priority_first_then_longest_waiting() -> None:
    calls = [call("old-normal", 0, 1), call("new-vip", 9, 3), call("vip", 5, 3)]
    decision = route([q(Strategy.LONGEST_IDLE)], [agent("a", idle_since=0)], calls, 10)
    assert decision.as_map() == {"vip": ("a",)}
    decision = route(
        [q(Strategy.LONGEST_IDLE)], [agent("a", idle_since=0), agent("b", idle_since=1)], calls, 10
    )
    assert decision.as_map() == {"vip": ("a",), "new-vip": ("b",)}


def test_priority_from_tags_and_queue_from_intent() -> None:
    assert priority_for(["VIP", "normal"]) == 3
    assert priority_for(["high_value"]) == 2
    assert priority_for(["unknown"]) == 1
    assert priority_for(["gold"], {"gold": 7}, default=0) == 7
    assert queue_for_intent("pre_sale", {"pre_sale": "sales"}) == "sales"
    assert queue_for_intent("other", {"pre_sale": "sales"}) is None


def overflow_queue() -> list[QueueSpec]:
    return [
        QueueSpec(
            "sales",
            {"sales": 6},
            overflow=(
                OverflowRule(30, relax_skills={"sales": 3}),
                OverflowRule(60, add_queue="tech"),
                OverflowRule(90, ivr_flow="voicemail"),
            ),
        ),
        QueueSpec("tech", {"tech": 5}),
    ]


def test_timed_overflow_widens_who_may_answer_then_leaves_for_ivr() -> None:
    router = Router(overflow_queue())
    router.upsert_agent(agent("mid", skills={"sales": 4}))
    router.upsert_agent(agent("tech", skills={"tech": 5}))
    router.add_call(WaitingCall("c1", "sales", 0.0))
    router.add_call(WaitingCall("c2", "sales", 0.0))
    router.add_call(WaitingCall("c3", "sales", 0.0))
    assert router.decide(29.9).assignments == ()
    d30 = router.decide(30.0)
    assert d30.as_map() == {"c1": ("mid",)}
    assert [(o.call_id, o.stage) for o in d30.overflowed] == [("c1", 1), ("c2", 1), ("c3", 1)]
    d60 = router.decide(60.0)
    assert d60.as_map() == {"c2": ("tech",)}
    assert Overflowed("c3", "sales", 2, 60.0) in d60.overflowed
    assert router.decide(90.0).exits == (Exit("c3", "sales", "overflow-ivr", "voicemail"),)
    # The same question asked of the plain function, at each wait:
    agents = [agent("mid", skills={"sales": 4}), agent("tech", skills={"tech": 5})]
    for now, expected in ((29.0, {}), (31.0, {"c": ("mid",)})):
        got = route(overflow_queue(), agents, [WaitingCall("c", "sales", 0.0)], now).as_map()
        assert got == expected


def test_max_wait_exit() -> None:
    router = Router([QueueSpec("q", {"sales": 9}, max_wait_s=60)])
    router.add_call(call("c1"))
    assert router.decide(59).exits == ()
    assert router.decide(60).exits == (Exit("c1", "q", "max-wait", None),)
    assert router.waiting_calls() == []


def test_a_missed_call_goes_back_to_the_head_for_the_next_agent() -> None:
    router = Router([q(Strategy.LONGEST_IDLE, ring_timeout_s=15)])
    router.upsert_agent(agent("a", idle_since=0))
    router.add_call(call("c1", 1))
    router.add_call(call("c2", 2))
    [first] = router.decide(3).assignments
    assert (first.call_id, first.agent_ids, first.expires_at) == ("c1", ("a",), 23.0)
    [closed] = router.offer_missed("c1", "a", 18)
    assert closed.outcome is Outcome.MISSED
    assert [c.call_id for c in router.waiting_calls()] == ["c1", "c2"]  # back at the head
    router.upsert_agent(agent("b", idle_since=5))
    router.upsert_agent(agent("a", idle_since=18))
    assert router.decide(18).as_map() == {"c1": ("b",), "c2": ("a",)}  # "a" is not rung again


def test_expired_reservations_and_reconcile() -> None:
    router = Router([q(Strategy.LONGEST_IDLE, ring_timeout_s=10)], reservation_grace_s=2)
    router.upsert_agent(agent("a"))
    router.add_call(call("c1"))
    router.decide(0)
    assert router.expired_reservations(11.9) == []
    [res] = router.expired_reservations(12)
    assert (res.call_id, res.agent_id, res.expires_at) == ("c1", "a", 12)
    [closed] = router.expire("c1", "a", 12)
    assert closed.outcome is Outcome.EXPIRED and router.reservations() == []
    r1 = Reservation("gone", "x", "q", 0, 100)
    r2 = Reservation("live", "y", "q", 0, 5)
    r3 = Reservation("live", "z", "q", 0, 100)
    assert stale_reservations([r1, r2, r3], {"live"}, 10) == [
        (r2, Outcome.EXPIRED),
        (r1, Outcome.CANCELLED),
    ]


def test_abandon_while_ringing_frees_the_agent() -> None:
    router = Router([q(Strategy.LONGEST_IDLE)])
    router.upsert_agent(agent("a"))
    router.add_call(call("c1"))
    router.decide(1)
    [closed] = router.remove_call("c1", 2)
    assert (closed.reservation.agent_id, closed.outcome) == ("a", Outcome.CANCELLED)
    assert router.reservations() == [] and router.call("c1") is None


def test_bad_calls_are_refused() -> None:
    router = Router([q(Strategy.LONGEST_IDLE)])
    with pytest.raises(UnknownQueue):
        router.add_call(call("c1", queue="nope"))
    router.add_call(call("c1"))
    with pytest.raises(CallAlreadyQueued):
        router.add_call(call("c1"))
    router.decide(5)
    with pytest.raises(ValueError, match="time went backwards"):
        router.decide(4)


def test_a_freed_agent_takes_the_best_call_across_all_its_queues() -> None:
    queues = [QueueSpec("tech", {"tech": 4}), QueueSpec("vip", {"sales": 2})]
    router = Router(queues)
    router.upsert_agent(AgentView("a1", {"sales": 4, "tech": 5}, available=False))
    router.add_call(WaitingCall("old", "tech", 0.0, priority=2))
    router.add_call(WaitingCall("new", "vip", 1.0, priority=2))
    router.add_call(WaitingCall("low", "vip", 0.0, priority=1))
    assert router.decide(2).assignments == ()
    router.upsert_agent(AgentView("a1", {"sales": 4, "tech": 5}, available=True))
    assert router.decide(3).as_map() == {"old": ("a1",)}
