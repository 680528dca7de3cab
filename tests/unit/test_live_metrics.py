"""Live metrics: label budgets, the queue/campaign/trunk sources read at scrape time (their
figures agree with the API's KPIs), the cardinality cap under many names, failure classes,
a failing source or storage read, and the dashboard checker itself."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from engine.acd.model import QueueSpec
from engine.campaigns.abandon import AbandonFigures
from engine.campaigns.metrics import CampaignMetrics
from engine.campaigns.model import Outcome
from engine.telemetry.cardinality import OTHER, LabelBudget
from engine.telemetry.live import LiveCollector, LoopLag, Source, StorageGauges
from engine.trunks.fleet import Fleet
from engine.trunks.metrics import FAILURE_CLASSES, TrunkMetrics, failure_class
from engine.trunks.model import CauseInfo, TrunkSpec
from tests import grafana_check
from tests.unit.acd_fakes import Rig, agent, rig

Sample = tuple[str, dict[str, str], float]


def scrape(*sources: Source) -> tuple[set[str], list[Sample]]:
    registry = CollectorRegistry()
    live = LiveCollector()
    for s in sources:
        live.add(s)
    registry.register(live)
    return grafana_check.exported(generate_latest(registry).decode())


async def scrape_prepared(*sources: Source) -> tuple[set[str], list[Sample]]:
    registry = CollectorRegistry()
    live = LiveCollector()
    for s in sources:
        live.add(s)
    registry.register(live)
    await live.prepare()
    return grafana_check.exported(generate_latest(registry).decode())


def values(samples: list[Sample], name: str, label: str) -> dict[str, float]:
    return {lab[label]: v for n, lab, v in samples if n == name}


def labels_of(samples: list[Sample], key: str) -> set[str]:
    return {lab[key] for _n, lab, _v in samples if key in lab}


# ------------------------------------------------------------------ budget


def test_budget_keeps_configured_names_sorted_then_folds_the_rest_into_other() -> None:
    b = LabelBudget("queue", 3, ["c", "a", "b"])
    assert b.admitted == ["a", "b", "c"]
    assert [b.label(n) for n in ("a", "z", "c", "y", "z")] == ["a", OTHER, "c", OTHER, OTHER]
    assert b.folded == 2  # z and y, each once
    late = LabelBudget("campaign", 2)
    assert [late.label(n) for n in ("x", "y", "z", "x")] == ["x", "y", OTHER, "x"]
    assert LabelBudget("q", 5).label(OTHER) == OTHER  # a name "other" is never admitted
    with pytest.raises(ValueError, match="queue: the label cap must be at least 1"):
        LabelBudget("queue", 0)


# ------------------------------------------------------------------ queues

SALES = QueueSpec("sales", skills={"sales": 5}, ring_timeout_s=10, wrap_up_s=4.0)


def ready(r: Rig, *ids: str) -> None:
    for agent_id in ids:
        r.acd.login(agent_id)
        r.clock.t += 1
        r.acd.ready(agent_id)


async def test_queue_figures_match_the_api_kpis_and_counters_count_outcomes() -> None:
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"tech": 6})], [SALES])
    ready(r, "alice")
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    leg = r.calls.leg_of("alice")
    r.clock.t += 3
    r.answered(leg)
    await r.settle()
    r.clock.t += 20
    r.hung_up("c1")
    r.hung_up(leg)
    r.clock.t += 4
    r.acd.tick()
    r.calls.caller("c2")  # abandons after 30 s: outside the 20 s threshold
    await r.acd.enter("c2", queue="sales")
    r.clock.t += 30
    r.hung_up("c2")
    r.calls.caller("c3")  # still waiting, 7 s
    await r.acd.enter("c3", queue="sales")
    r.clock.t += 7

    _names, s = await scrape_prepared(r.acd.metrics_source(100))
    kpis = r.acd.queue_view("sales")["kpis"]
    one = {
        k: values(s, k, "queue")["sales"]
        for k in (
            "engine_queue_waiting",
            "engine_queue_longest_wait_seconds",
            "engine_queue_service_level_ratio",
            "engine_queue_asa_seconds",
            "engine_queue_aht_seconds",
            "engine_queue_abandon_ratio",
            "engine_queue_answered_within_sl_total",
            "engine_queue_answered_wait_seconds_total",
        )
    }
    assert one["engine_queue_waiting"] == kpis["waiting"] == 1
    assert one["engine_queue_longest_wait_seconds"] == kpis["longest_wait_s"] == 7.0
    assert 100 * one["engine_queue_service_level_ratio"] == kpis["service_level_pct"] == 50.0
    assert one["engine_queue_asa_seconds"] == kpis["asa_s"] == 3.0
    assert one["engine_queue_aht_seconds"] == kpis["aht_s"] == 24.0
    assert 100 * one["engine_queue_abandon_ratio"] == kpis["abandon_pct"] == 50.0
    assert one["engine_queue_answered_within_sl_total"] == 1
    assert one["engine_queue_answered_wait_seconds_total"] == 3.0
    calls = {lab["outcome"]: v for n, lab, v in s if n == "engine_queue_calls_total"}
    assert calls == {
        "answered": 1,
        "abandoned": 1,
        "overflow_ivr": 0,
        "max_wait": 0,
        "interrupted": 0,
        "other": 0,
    }
    agents = {lab["state"]: v for n, lab, v in s if n == "engine_queue_agents"}
    view_agents = r.acd.queue_view("sales")["agents"]
    assert agents == {st: len(ids) for st, ids in view_agents.items()}
    assert agents["reserved"] == 1 and sum(agents.values()) == 1  # c3 rings alice; bob: tech
    everyone = values(s, "engine_agents", "state")
    assert everyone["reserved"] == 1 and everyone["logged_out"] == 1
    # A direct render (no prepare) gives the same figures.
    _names, again = scrape(r.acd.metrics_source(100))
    assert values(again, "engine_queue_asa_seconds", "queue") == {"sales": 3.0}


async def test_queue_agents_follow_a_supervisors_move() -> None:
    # engine_queue_agents counted an agent in every queue its skills fit, after a move too,
    # while GET /v1/queues and the wallboard count it where it is rostered.
    sales, tech = QueueSpec("sales", skills={"sales": 5}), QueueSpec("tech", skills={"tech": 5})
    r = rig([agent("bob", {"sales": 6, "tech": 6})], [sales, tech])
    r.acd.login("bob")
    r.acd.move("bob", "sales", "tech", "token:sup")
    _names, s = await scrape_prepared(r.acd.metrics_source(100))
    for name in ("sales", "tech"):
        scraped = {
            lab["state"]: v
            for n, lab, v in s
            if n == "engine_queue_agents" and lab["queue"] == name
        }
        view = r.acd.queue_view(name)["agents"]
        assert scraped == {st: len(ids) for st, ids in view.items()}, name
    paused = {
        lab["queue"]: v
        for n, lab, v in s
        if n == "engine_queue_agents" and lab["state"] == "paused"
    }
    assert paused == {"sales": 0, "tech": 1}


async def test_many_queues_stay_within_the_cap_and_other_adds_up() -> None:
    queues = [QueueSpec(f"q{i:02d}", skills={"s": 1}) for i in range(40)]
    r = rig([agent("alice", {"s": 5})], queues)
    for i in range(40):
        r.calls.caller(f"c{i}")
        await r.acd.enter(f"c{i}", queue=f"q{i:02d}")
        r.clock.t += 1
    for i in range(0, 40, 2):  # half of them abandon
        r.hung_up(f"c{i}")
    source = r.acd.metrics_source(5)
    _n, s = await scrape_prepared(source)
    for family in ("engine_queue_waiting", "engine_queue_calls_total", "engine_queue_agents"):
        got = {lab["queue"] for n, lab, _v in s if n == family}
        assert got == {"q00", "q01", "q02", "q03", "q04", OTHER}, family
    waiting = values(s, "engine_queue_waiting", "queue")
    assert sum(waiting.values()) == 20 and waiting[OTHER] == 18  # q05..q39, odd ones
    abandoned = {
        lab["queue"]: v
        for n, lab, v in s
        if n == "engine_queue_calls_total" and lab["outcome"] == "abandoned"
    }
    assert sum(abandoned.values()) == 20 and abandoned[OTHER] == 17
    # The longest wait of "other" is the worst of its queues (q05's caller came first of them).
    assert values(s, "engine_queue_longest_wait_seconds", "queue")[OTHER] == 35.0
    assert values(s, "engine_metrics_labels_folded", "kind") == {"queue": 35}
    # More events never add label values; the series stay within the bound: per queue label
    # 21 (waiting, longest, 6 agent states, 6 outcomes, 2 counters, 4 KPIs, threshold),
    # plus engine_agents' 6 states and the collector's own 3 (errors, folded, cap).
    bound = 6 * 21 + 6 + 3
    assert len(s) <= bound
    for i in range(40, 200):
        r.calls.caller(f"c{i}")
        await r.acd.enter(f"c{i}", queue=f"q{i % 40:02d}")
        r.hung_up(f"c{i}")
    _n, s2 = await scrape_prepared(source)
    assert labels_of(s2, "queue") == labels_of(s, "queue") and len(s2) <= bound
    assert values(s2, "engine_metrics_labels_folded", "kind") == {"queue": 35}


# --------------------------------------------------------------- campaigns


def _runner(i: int) -> Any:
    view = SimpleNamespace(lines_in_use=6, agents=2)
    return SimpleNamespace(
        view_now=lambda: view,
        period_figures=lambda: AbandonFigures(100.0, 2.0 + i % 2, 0.0),
        dialing=True,
        stopping=False,
        flights={"f1": 1, "f2": 2},
        spec=SimpleNamespace(abandon_limit=0.03),
        outcomes={"human": 3, "busy": 1},
    )


async def test_many_campaigns_stay_within_the_cap() -> None:
    runners = {f"camp{i:03d}": _runner(i) for i in range(60)}
    service: Any = SimpleNamespace(
        runners=runners, ended_outcomes={("camp000", "human"): 10, ("gone", "machine"): 4}
    )
    cm = CampaignMetrics(service, 4)  # its storage loop is not run here
    _n, s = await scrape_prepared(Source("campaigns", cm.families, cm.prepare, cm.budget))
    assert labels_of(s, "campaign") == {"camp000", "camp001", "camp002", "camp003", OTHER}
    level = values(s, "engine_campaign_dial_level", "campaign")
    assert level["camp000"] == 3.0 and level[OTHER] == 3.0  # 6 lines / 2 agents, summed
    abandon = values(s, "engine_campaign_abandon_ratio", "campaign")
    assert abandon["camp000"] == 0.02 and abandon["camp001"] == 0.03
    attempts = {
        (lab["campaign"], lab["outcome"]): v
        for n, lab, v in s
        if n == "engine_campaign_attempts_total"
    }
    assert attempts[("camp000", "human")] == 13  # 10 from a runner that ended + 3 live
    assert attempts[(OTHER, "human")] == 3 * 56 and attempts[(OTHER, "machine")] == 4
    assert {o for _c, o in attempts} == {o.value for o in Outcome}
    assert len(s) <= 5 * (5 + len(Outcome)) + 10


async def test_campaign_storage_rows_fold_over_the_cap() -> None:
    rows = [
        {"campaign_id": f"c{i}", "state": "running" if i % 2 else "paused", "left": 10 * i}
        for i in range(6)
    ]
    asked: list[Any] = []

    async def fetch(doing: str, sql: str, *args: Any) -> list[dict[str, Any]]:
        asked.append(args)
        return rows

    service: Any = SimpleNamespace(
        runners={}, ended_outcomes={}, _d=SimpleNamespace(store=SimpleNamespace(fetch=fetch))
    )
    cm = CampaignMetrics(service, 2)
    assert await cm.storage.refresh_once()
    assert asked == [(20,)]  # at most 10 x the cap rows
    _n, s = scrape(Source("campaigns", cm.families, cm.prepare, cm.budget))
    left = values(s, "engine_campaign_contacts_left", "campaign")
    assert left == {"c0": 0, "c1": 10, OTHER: 20 + 30 + 40 + 50}
    running = {
        lab["campaign"]: v
        for n, lab, v in s
        if n == "engine_campaign_state" and lab["state"] == "running"
    }
    assert running == {"c0": 0, "c1": 1, OTHER: 2}  # c3 and c5


# ------------------------------------------------------------------ trunks


def test_many_trunks_stay_within_the_cap_and_failure_classes_are_bounded() -> None:
    specs = [TrunkSpec(f"t{i:02d}", "sw", f"t{i}", max_channels=10, max_cps=2) for i in range(30)]
    fleet = Fleet.build(specs, [])
    tm = TrunkMetrics(lambda: fleet, lambda: 0.0, 3)
    _n, s = scrape(Source("trunks", tm.families, budget=tm.budget))
    assert labels_of(s, "trunk") == {"t00", "t01", "t02", OTHER}
    assert values(s, "engine_trunk_max_channels", "trunk")[OTHER] == 270
    closed = {
        lab["trunk"]: v
        for n, lab, v in s
        if n == "engine_trunk_breaker_state" and lab["state"] == "closed"
    }
    assert closed == {"t00": 1, "t01": 1, "t02": 1, OTHER: 27}
    cases = {
        None: "other",
        CauseInfo(34, None, "Circuit/channel congestion"): "congestion",
        CauseInfo(41, 503, ""): "server_error",
        CauseInfo(102, None, ""): "timeout",
        CauseInfo(None, 408, ""): "timeout",
        CauseInfo(27, None, "GATEWAY_DOWN"): "gateway_down",
        CauseInfo(38, None, "NETWORK_OUT_OF_ORDER"): "network",
        CauseInfo(99, None, "Something new"): "other",
    }
    for cause, want in cases.items():
        assert failure_class(cause) == want, cause
        assert want in FAILURE_CLASSES


# --------------------------------------------------- collector robustness


def test_a_failing_source_is_left_out_and_counted() -> None:
    from prometheus_client.core import GaugeMetricFamily

    def broken() -> list[Any]:
        raise RuntimeError("bug")

    def fine() -> list[Any]:
        g = GaugeMetricFamily("engine_fine", "ok")
        g.add_metric([], 1)
        return [g]

    names, s = scrape(Source("broken", broken), Source("fine", fine))
    assert "engine_fine" in names
    errors = values(s, "engine_metrics_source_errors_total", "source")
    assert errors == {"broken": 1, "fine": 0}


async def test_storage_gauges_keep_the_last_good_values_on_failure_and_timeout() -> None:
    answers: list[Any] = [{"left": {("a",): 5.0}}, RuntimeError("down"), "hang"]
    hang = asyncio.Event()

    async def read() -> dict[str, dict[tuple[str, ...], float]]:
        got = answers.pop(0)
        if isinstance(got, Exception):
            raise got
        if got == "hang":
            await hang.wait()
        return dict(got)

    g = StorageGauges("campaigns", read, timeout_s=0.05)
    assert await g.refresh_once()
    assert not await g.refresh_once()
    assert not await g.refresh_once()  # timed out
    assert g.values == {"left": {("a",): 5.0}} and g.failures == 2 and g.age() >= 0


async def test_loop_lag_is_how_late_the_wake_up_ran() -> None:
    # The clock says the 10 ms wait took 210 ms (a loop blocked for 200 ms); reading the
    # clock the second time also ends the loop after this one sample.
    times = iter([100.0, 100.21])
    lag: LoopLag

    def clock() -> float:
        t = next(times)
        if t > 100.0:
            lag.close()
        return t

    lag = LoopLag(every_s=0.01, clock=clock)
    await asyncio.wait_for(lag.run(), 5)
    assert lag.samples == 1 and lag.last_s == pytest.approx(0.2)
    fams = {f.name: f.samples[0].value for f in lag.families()}
    assert fams["engine_event_loop_lag_max_seconds"] == pytest.approx(0.2)
    assert fams["engine_event_loop_lag_accumulated_seconds"] == pytest.approx(0.2)


# ------------------------------------------------------- dashboard checker


def test_checker_finds_metrics_and_ignores_functions_labels_keywords() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, switch) (rate(engine_originate_seconds_bucket"
        '{switch=~"$switch"}[$__rate_interval]))) > bool on(switch) group_left(state) '
        "max without (instance) (engine_switch_link_up offset 5m) "
        'or {__name__="engine_calls_live"} unless absent(engine_trunk_state) * -1'
    )
    assert grafana_check.metric_names(expr) == {
        "engine_originate_seconds_bucket",
        "engine_switch_link_up",
        "engine_calls_live",
        "engine_trunk_state",
    }


def test_checker_reports_a_metric_the_engine_does_not_export() -> None:
    text = (
        "# HELP engine_x_total x\n# TYPE engine_x_total counter\nengine_x_total 1.0\n"
        "# HELP engine_y y\n# TYPE engine_y gauge\n"
    )
    names, _s = grafana_check.exported(text)
    dashboard = {
        "panels": [
            {
                "type": "row",
                "panels": [{"title": "p", "targets": [{"expr": "rate(engine_x_total[5m])"}]}],
            },
            {"title": "q", "targets": [{"expr": "engine_y + engine_typo"}]},
        ]
    }
    used = {
        n for _t, e in grafana_check.expressions(dashboard) for n in grafana_check.metric_names(e)
    }
    assert used - names == {"engine_typo"}
