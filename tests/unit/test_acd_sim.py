"""Inbound routing simulator: scenario files, event semantics, the router contract, the engine's
router behind the simulator (against a naive oracle), the best-match scenario and the ``simulate``
command."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.acd import routing
from engine.acd.model import Strategy
from engine.acd.sim.engine_router import EngineRouter, EngineRouterError, agent_view
from engine.acd.sim.report import pooled
from engine.acd.sim.router_port import RouterPort, SimAgent, SimCall
from engine.acd.sim.routers import ROUTERS, make_router
from engine.acd.sim.scenario import (
    InboundScenario,
    InboundScenarioError,
    load_scenario,
    parse_scenario,
)
from engine.acd.sim.simulator import RouterContractError, simulate
from engine.cli import main
from tests.acd_sim_oracle import ORACLES, LongestIdleRouter, cosine

SCENARIOS = Path(__file__).resolve().parents[2] / "engine" / "acd" / "sim" / "scenarios"
BEST_MATCH = SCENARIOS / "best-match-sales.json"
OUTBOUND = Path(__file__).resolve().parents[1] / "fixtures" / "pacing" / "S0.json"


def real(name: str, sc: InboundScenario, seed: int = 0) -> RouterPort:
    """The engine's router, as the simulator's CLI builds it."""
    return make_router(name, sc, seed)


def base(**queue: Any) -> dict[str, Any]:
    q: dict[str, Any] = {
        "skills": {"sales": 1},
        "arrivals": {"poisson_per_hour": 60},
        "handle_s": {"exponential": {"mean": 120}},
    }
    q.update(queue)
    return {
        "kind": "inbound",
        "duration_s": 7200,
        "queues": {"sales": q},
        "agents": [{"id": "a", "count": 3, "skills": {"sales": 5}}],
    }


# -- scenario files ---------------------------------------------------------------------------
def test_the_shipped_scenario_parses() -> None:
    sc = load_scenario(BEST_MATCH)
    assert [q.name for q in sc.queues] == ["sales"]
    assert len(sc.agents) == 16 and sc.agents[0].id == "retail-pro-1"
    assert sc.has_conversions and sc.routers == ("longest-idle", "best-match")
    late = [a for a in sc.agents if a.id.startswith("late")]
    assert late[0].shift_start_s == 7200 and late[0].shift_end_s == 25200


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d["queues"]["sales"].pop("handle_s"), "queues.sales.handle_s: required key"),
        (
            lambda d: d["queues"]["sales"].update(handle_s={"gamma": 3}),
            'queues.sales.handle_s: expected a number (constant), {"exponential"',
        ),
        (
            lambda d: d["queues"]["sales"].update(patience_s={"exponential": {"mean": 0}}),
            'queues.sales.patience_s.exponential: expected {"mean": m > 0}',
        ),
        (
            lambda d: d["queues"]["sales"].update(
                arrivals={
                    "poisson_per_hour": [{"from_s": 100, "rate": 5}, {"from_s": 50, "rate": 5}]
                }
            ),
            "queues.sales.arrivals.poisson_per_hour[1].from_s: expected a time after 100.0",
        ),
        (lambda d: d["queues"]["sales"].update(skils={}), "queues.sales.skils: unknown key"),
        (
            lambda d: d["agents"][0].update(skills={"sales": 11}),
            "agents[0].skills.sales: expected an integer >= 1 and <= 10, got 11",
        ),
        (
            lambda d: d["agents"][0].update(conversion={"gold": 0.2}),
            "agents[0].conversion.gold: expected a segment of a queue (none defined)",
        ),
        (
            lambda d: d["agents"][0].update(shift_s=[100, 50]),
            "agents[0].shift_s: expected [start, end]",
        ),
        (
            lambda d: d["agents"].append({"id": "a-2"}),
            "agents: expected distinct agent ids",
        ),
        (
            lambda d: d["agents"][0].update(skills={"tech": 5}),
            "queues.sales.skills: no agent has the required skills",
        ),
        (lambda d: d.update(kind="outbound"), 'kind: expected "inbound"'),
        (
            lambda d: d["agents"].extend(
                [
                    {"id": "x", "skills": {"sales": 2}, "capability": [0.1, 0.2]},
                    {"id": "y", "skills": {"sales": 2}, "capability": [0.1, 0.2, 0.3]},
                ]
            ),
            "agents[2].capability: expected 2 numbers, as many as agents[1].capability",
        ),
        (
            lambda d: (
                d.update(agents=[{"id": "x", "skills": {"sales": 2}, "capability": [1, 0]}])
                or d["queues"]["sales"].update(
                    segments=[{"name": "r", "share": 1, "features": [1]}]
                )
            ),
            "queues.sales.segments[0].features: expected 2 numbers, as many as agents[0]",
        ),
        (lambda d: d.update(warmup_s=9000), "warmup_s: expected less than duration_s"),
    ],
)
def test_bad_scenarios_name_the_file_key_and_expectation(mutate: Any, needle: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(InboundScenarioError) as err:
        parse_scenario(data, "x/bad.json")
    assert str(err.value).startswith("x/bad.json: ")
    assert needle in str(err.value)


def test_unreadable_and_invalid_json_files_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"kind": "inbound",', encoding="utf-8")
    with pytest.raises(InboundScenarioError, match=r"broken\.json: line 1 column \d+: invalid"):
        load_scenario(bad)
    with pytest.raises(InboundScenarioError, match="cannot read file"):
        load_scenario(tmp_path / "missing.json")


# -- simulation semantics ---------------------------------------------------------------------
def test_same_seed_repeats_exactly_and_another_seed_differs() -> None:
    sc = parse_scenario(base(patience_s={"exponential": {"mean": 60}}))
    a = simulate(sc, real("longest-idle", sc), 7, record_trace=True)
    b = simulate(sc, real("longest-idle", sc), 7, record_trace=True)
    c = simulate(sc, real("longest-idle", sc), 8, record_trace=True)
    assert a.trace == b.trace and a.as_dict() == b.as_dict()
    assert a.trace != c.trace


def test_a_lone_agent_serves_in_arrival_order_with_exact_timings() -> None:
    # Constant times: calls at ~Poisson instants, 100 s handle, 10 s wrap, one agent.
    data = base(handle_s=100, wrap_s=10)
    data["agents"] = [{"id": "solo", "skills": {"sales": 1}}]
    sc = parse_scenario(data)
    res = simulate(sc, real("longest-idle", sc), 3, record_trace=True)
    connects = [(t, c) for t, what, c, _ in res.trace if what == "connect"]
    arrivals = {c: t for t, what, c, _ in res.trace if what == "arrive"}
    assert [c for _, c in connects] == sorted(arrivals, key=arrivals.__getitem__)
    free_at = 0.0
    for t, call in connects:
        # Served the moment both the caller and the agent are there: no idle agent with a caller.
        assert t == pytest.approx(max(arrivals[call], free_at))
        free_at = t + 110.0
    k = res.total.kpis()
    assert k["aht_s"] == pytest.approx(110.0) and k["abandoned"] == 0


def test_impatient_callers_abandon_and_are_counted() -> None:
    data = base(patience_s=5)  # everyone who waits more than 5 s leaves
    data["agents"] = [{"id": "solo", "skills": {"sales": 1}}]
    data["queues"]["sales"]["arrivals"] = {"poisson_per_hour": 120}
    sc = parse_scenario(data)
    res = simulate(sc, real("longest-idle", sc), 1, record_trace=True)
    k = res.total.kpis()
    assert k["abandoned"] > 0
    assert k["answered"] + k["abandoned"] + k["unserved"] == k["offered"]
    waits = []
    arrivals = {c: t for t, what, c, _ in res.trace if what == "arrive"}
    for t, what, c, _ in res.trace:
        if what == "connect":
            waits.append(t - arrivals[c])
        if what == "abandon":
            assert t - arrivals[c] == pytest.approx(5.0)
    assert max(waits) <= 5.0


def test_shifts_bound_when_agents_take_calls_and_occupancy() -> None:
    data = base(handle_s=30)
    data["agents"] = [{"id": "day", "skills": {"sales": 1}, "shift_s": [1800, 3600]}]
    sc = parse_scenario(data)
    res = simulate(sc, real("longest-idle", sc), 2, record_trace=True)
    connects = [t for t, what, _, _ in res.trace if what == "connect"]
    assert connects and min(connects) >= 1800 and max(connects) < 3600
    # Callers before the shift wait for it; callers after it are never served (no patience).
    assert res.total.unserved > 0
    assert res.logged_s == pytest.approx(1800.0, abs=30.0)


def test_higher_priority_queue_is_served_first() -> None:
    data = base(handle_s=600)
    data["queues"]["vip"] = {
        "priority": 3,
        "skills": {"sales": 1},
        "arrivals": {"poisson_per_hour": 30},
        "handle_s": 600,
    }
    data["agents"] = [{"id": "solo", "skills": {"sales": 1}}]
    sc = parse_scenario(data)
    res = simulate(sc, real("longest-idle", sc), 5, record_trace=True)
    waiting: dict[str, float] = {}
    for t, what, c, _ in res.trace:
        if what == "arrive":
            waiting[c] = t
        elif what == "connect":
            waiting.pop(c)
            if c.startswith("sales"):
                assert not any(w.startswith("vip") for w in waiting), f"{c} passed a VIP at {t}"
    vip, normal = res.queues["vip"].kpis(), res.queues["sales"].kpis()
    assert vip["asa_s"] < normal["asa_s"]


class _Rogue(LongestIdleRouter):
    name = "rogue"

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def decide(self, now: float) -> list[tuple[str, str]]:
        pairs = super().decide(now)
        if self.mode == "double" and pairs:
            return [*pairs, pairs[0]]
        if self.mode == "unskilled" and self.pool.order:
            call = self.pool.calls[self.pool.order[0]]
            return [(call.id, "tech-1")]
        return pairs


@pytest.mark.parametrize(
    ("mode", "needle"),
    [("double", "not waiting"), ("unskilled", "not available|lacks a required skill")],
)
def test_the_simulator_refuses_assignments_the_contract_forbids(mode: str, needle: str) -> None:
    data = base()
    data["agents"].append({"id": "tech", "count": 1, "skills": {"tech": 9}})
    with pytest.raises(RouterContractError, match=needle):
        simulate(parse_scenario(data), _Rogue(mode), 1)


# -- the engine's router behind the port -----------------------------------------------------
def _agent(aid: str, idle: float, cap: tuple[float, ...] | None = None, lvl: int = 5) -> SimAgent:
    return SimAgent(aid, {"sales": lvl}, cap, idle, 0, 0.0, 0.0, 0.0)


def _call(cid: str, t: float, feat: tuple[float, ...] | None = None, prio: int = 1) -> SimCall:
    return SimCall(cid, "sales", prio, {"sales": 3}, feat, None, t)


SALES = parse_scenario(base(skills={"sales": 3}))
Factory = Any  # (strategy name) -> RouterPort
ENGINE_AND_ORACLE = [
    pytest.param(lambda name: real(name, SALES), id="engine"),
    pytest.param(
        lambda name: ORACLES[name](),
        id="oracle",
    ),
]


@pytest.mark.parametrize("make", ENGINE_AND_ORACLE)
def test_longest_idle_picks_the_agent_idle_longest_among_those_with_the_skill(
    make: Factory,
) -> None:
    r = make("longest-idle")
    r.on_agent_free(_agent("low", 1.0, lvl=2), 1.0)  # idle longest but below level 3
    r.on_agent_free(_agent("b", 5.0), 5.0)
    r.on_agent_free(_agent("c", 3.0), 5.0)
    r.on_call_arrived(_call("x", 6.0), 6.0)
    assert r.decide(6.0) == [("x", "c")]
    assert r.decide(6.0) == []


@pytest.mark.parametrize("make", ENGINE_AND_ORACLE)
def test_best_match_picks_the_most_similar_capability_and_priority_goes_first(
    make: Factory,
) -> None:
    r = make("best-match")
    r.on_agent_free(_agent("retail", 1.0, (0.3, 0.1)), 1.0)
    r.on_agent_free(_agent("biz", 9.0, (0.1, 0.4)), 9.0)
    r.on_call_arrived(_call("b", 10.0, (0.0, 1.0)), 10.0)
    r.on_call_arrived(_call("vip", 11.0, (1.0, 0.0), prio=3), 11.0)
    # The VIP chooses first and gets the retail specialist; the business caller gets "biz".
    assert sorted(r.decide(11.0)) == [("b", "biz"), ("vip", "retail")]


@pytest.mark.parametrize("make", ENGINE_AND_ORACLE)
def test_best_match_falls_back_to_longest_idle_without_vectors(make: Factory) -> None:
    r = make("best-match")
    r.on_agent_free(_agent("new", 9.0), 9.0)
    r.on_agent_free(_agent("old", 2.0), 9.0)
    r.on_call_arrived(_call("x", 10.0), 10.0)
    assert r.decide(10.0) == [("x", "old")]


@pytest.mark.parametrize("make", ENGINE_AND_ORACLE)
def test_a_caller_who_left_or_an_agent_away_is_not_assigned(make: Factory) -> None:
    r = make("longest-idle")
    r.on_agent_free(_agent("a", 1.0), 1.0)
    r.on_agent_free(_agent("b", 2.0), 2.0)
    r.on_agent_away("a", 3.0)
    r.on_call_arrived(_call("x", 4.0), 4.0)
    r.on_call_arrived(_call("y", 5.0), 5.0)
    r.on_call_left("x", 6.0)
    assert r.decide(6.0) == [("y", "b")]


def test_an_answered_agent_is_not_offered_again_until_freed() -> None:
    r = real("longest-idle", SALES)
    r.on_agent_free(_agent("a", 1.0), 1.0)
    r.on_call_arrived(_call("x", 2.0), 2.0)
    r.on_call_arrived(_call("y", 2.5), 2.5)
    assert r.decide(3.0) == [("x", "a")]
    assert r.decide(50.0) == []  # on a call: y waits
    r.on_agent_free(SimAgent("a", {"sales": 5}, None, 60.0, 1, 40.0, 57.0, 59.0), 60.0)
    assert r.decide(60.0) == [("y", "a")]


def test_ring_all_lets_one_rung_agent_answer_and_frees_the_others_at_once() -> None:
    r = real("ring-all", SALES, seed=3)
    for aid, idle in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        r.on_agent_free(_agent(aid, idle), idle)
    for cid, t in (("x", 4.0), ("y", 4.5), ("z", 4.8)):
        r.on_call_arrived(_call(cid, t), t)
    pairs = r.decide(5.0)
    # x rings all three, one answers; the two cancelled agents ring for y, one answers; the last
    # takes z. Every call gets one agent, every agent one call, nothing stays reserved.
    assert [c for c, _ in pairs] == ["x", "y", "z"]
    assert sorted(a for _, a in pairs) == ["a", "b", "c"]
    assert isinstance(r, EngineRouter) and r.router.reservations() == []


def test_the_engine_router_refuses_a_call_whose_skills_are_not_its_queue_s() -> None:
    r = real("longest-idle", SALES)
    odd = SimCall("x", "sales", 1, {"sales": 7}, None, None, 0.0)
    with pytest.raises(
        EngineRouterError, match=r"requires \{'sales': 7\}.*reads skills from the queue"
    ):
        r.on_call_arrived(odd, 0.0)


def test_agent_view_carries_the_load_figures() -> None:
    snap = SimAgent("a", {"sales": 5}, (0.1, 0.2), 100.0, 4, 300.0, 400.0, 1000.0)
    view = agent_view(snap, 1000.0)
    assert view.available and view.idle_since == 100.0
    assert (view.calls_handled, view.talk_s, view.capability) == (4, 300.0, (0.1, 0.2))
    # Occupancy as the simulator counts it now, and it falls while the agent stays idle.
    assert view.occupancy(1000.0) == pytest.approx(snap.occupancy) == pytest.approx(0.4)
    assert view.occupancy(1600.0) == pytest.approx(400.0 / 1600.0)


def test_the_simulator_runs_the_engine_s_router_code() -> None:
    # Issue 9 item 7: the simulator drives the same routing code as the live ACD. Every
    # strategy of the engine's router is a simulator router, each an engine Router...
    assert set(ROUTERS) == {s.value for s in Strategy}
    sc = load_scenario(BEST_MATCH)
    for name in ROUTERS:
        r = make_router(name, sc, 1)
        assert isinstance(r, EngineRouter) and type(r.router) is routing.Router
        assert r.name == name and r.strategy is Strategy(name)


def test_every_simulated_assignment_is_a_decision_of_engine_acd_routing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ...and what the simulator connects is exactly what engine.acd.routing.Router.decide chose.
    decided: list[tuple[str, str]] = []
    original = routing.Router.decide

    def spy(self: routing.Router, now: float) -> routing.Decision:
        d = original(self, now)
        decided.extend((a.call_id, a.agent_ids[0]) for a in d.assignments)
        return d

    monkeypatch.setattr(routing.Router, "decide", spy)
    sc = parse_scenario(base(patience_s={"exponential": {"mean": 60}}))
    res = simulate(sc, make_router("longest-idle", sc, 1), 1, record_trace=True)
    connects = [(c, a) for _, what, c, a in res.trace if what == "connect"]
    assert len(connects) > 50 and connects == decided


MULTI = {
    "kind": "inbound",
    "duration_s": 10800,
    "warmup_s": 600,
    "queues": {
        "sales": {
            "skills": {"sales": 3},
            "arrivals": {"poisson_per_hour": 70},
            "handle_s": {"exponential": {"mean": 200}},
            "patience_s": {"exponential": {"mean": 120}},
            "wrap_s": {"uniform": [5, 15]},
            "segments": [
                {"name": "retail", "share": 0.7, "features": [1, 0]},
                {"name": "business", "share": 0.3, "features": [0, 1]},
            ],
        },
        "tech": {
            "skills": {"tech": 5},
            "arrivals": {"poisson_per_hour": 30},
            "handle_s": {"lognormal": {"mean": 300, "sd": 150}},
        },
        "vip": {
            "priority": 3,
            "skills": {"sales": 6},
            "arrivals": {
                "poisson_per_hour": [{"from_s": 0, "rate": 10}, {"from_s": 3600, "rate": 25}]
            },
            "handle_s": 240,
            "patience_s": 90,
            "segments": [{"name": "premium", "share": 1, "features": [0.5, 0.5]}],
        },
    },
    "agents": [
        {"id": "s", "count": 4, "skills": {"sales": 4}, "capability": [0.3, 0.1]},
        {"id": "senior", "count": 2, "skills": {"sales": 8, "tech": 5}, "capability": [0.2, 0.4]},
        {"id": "t", "count": 2, "skills": {"tech": 7}, "capability": [0.1, 0.1]},
        {"id": "eve", "skills": {"sales": 6}, "shift_s": [3600, 9000], "capability": [0.3, 0.3]},
    ],
}


@pytest.mark.parametrize("name", ["longest-idle", "best-match"])
@pytest.mark.parametrize("which", ["shipped", "multi-queue"])
def test_the_engine_router_makes_the_oracle_s_exact_decisions(name: str, which: str) -> None:
    # Differential test against a brute-force router written without the engine's indexes:
    # several queues, priorities, skill levels, abandonment and a shift; identical traces.
    sc = load_scenario(BEST_MATCH) if which == "shipped" else parse_scenario(MULTI)
    oracle = ORACLES[name]()
    a = simulate(sc, real(name, sc, 1), 1, record_trace=True)
    b = simulate(sc, oracle, 1, record_trace=True)
    assert sum(1 for t in a.trace if t[1] == "connect") > 300
    assert a.trace == b.trace


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_every_strategy_runs_a_multi_queue_day_within_the_contract(name: str) -> None:
    # The simulator checks every assignment (waiting call, free agent with the skills, nobody
    # twice) and the adapter that no reservation is left open; the books must balance.
    sc = parse_scenario(MULTI)
    res = simulate(sc, real(name, sc, 4), 4, record_trace=True)
    k = res.total.kpis()
    assert k["answered"] > 300
    assert k["answered"] + k["abandoned"] + k["unserved"] == k["offered"]
    # Priority passes through: no agent who fits the VIP queue takes another call while a VIP
    # caller waits.
    vip_fit = {a.id for a in sc.agents if a.skills.get("sales", 0) >= 6}
    waiting_vips: set[str] = set()
    passed_over = 0
    for _, what, call, agent in res.trace:
        if what == "arrive" and call.startswith("vip"):
            waiting_vips.add(call)
        elif what in ("connect", "abandon"):
            waiting_vips.discard(call)
            if what == "connect" and agent in vip_fit and not call.startswith("vip"):
                passed_over += bool(waiting_vips)
    assert passed_over == 0
    assert res.queues["vip"].kpis()["answered"] > 20


def test_seeded_strategies_repeat_with_the_seed() -> None:
    sc = parse_scenario(MULTI)
    for name in ("weighted-random", "load-aware", "ring-all"):
        a = simulate(sc, real(name, sc, 2), 2, record_trace=True)
        b = simulate(sc, real(name, sc, 2), 2, record_trace=True)
        assert a.trace == b.trace, name


def test_cosine() -> None:
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine(np.array([0.0, 0.0]), np.array([1.0, 1.0])) == 0.0


# -- the best-match scenario ------------------------------------------------------------------
def test_best_match_converts_more_than_longest_idle_at_the_same_service_level() -> None:
    sc = load_scenario(BEST_MATCH)
    seeds = list(sc.seeds)
    li_runs = [simulate(sc, real("longest-idle", sc, s), s) for s in seeds]
    bm_runs = [simulate(sc, real("best-match", sc, s), s) for s in seeds]
    li, bm = pooled(li_runs), pooled(bm_runs)
    assert li["offered"] == bm["offered"] > 5000
    assert abs(li["sl_pct"] - bm["sl_pct"]) <= 1.0
    assert abs(li["abandon_pct"] - bm["abandon_pct"]) <= 0.5
    # Per seed, not only pooled: best-match wins on every seed.
    for s, a, b in zip(seeds, li_runs, bm_runs, strict=True):
        assert b.total.converted > a.total.converted, f"seed {s}"
    assert bm["conversion_pct"] > li["conversion_pct"] + 3.0


def test_without_capability_vectors_best_match_is_longest_idle() -> None:
    # Control: strip the vectors and the two strategies must make identical decisions.
    data = json.loads(BEST_MATCH.read_text(encoding="utf-8"))
    stripped = copy.deepcopy(data)
    for agent in stripped["agents"]:
        agent.pop("capability")
    sc = parse_scenario(stripped)
    a = simulate(sc, real("longest-idle", sc), 1, record_trace=True)
    b = simulate(sc, real("best-match", sc), 1, record_trace=True)
    assert a.trace == b.trace


# -- the simulate command ---------------------------------------------------------------------
def test_simulate_runs_an_inbound_scenario_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r" / "acd.json"
    code = main(["simulate", str(BEST_MATCH), "--seeds", "1,2", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "longest-idle" in text and "best-match" in text and "conv %" in text
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["seeds"] == [1, 2] and set(payload["routers"]) == {"longest-idle", "best-match"}
    assert len(payload["runs"]) == 4


def test_simulate_reports_inbound_errors_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "inbound", "duration_s": 10}), encoding="utf-8")
    assert main(["simulate", str(bad)]) == 2
    assert f"{bad}: queues: required key is missing" in capsys.readouterr().err
    assert main(["simulate", str(BEST_MATCH), "--router", "fastest"]) == 2
    assert "unknown router 'fastest'" in capsys.readouterr().err


def test_simulate_still_runs_outbound_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(OUTBOUND), "--policy", "progressive", "--seeds", "1"]) == 0
    assert "compliance gates" in capsys.readouterr().out
    assert main(["simulate", str(OUTBOUND), "--router", "best-match"]) == 2
    assert "--router applies to inbound scenarios only" in capsys.readouterr().err
