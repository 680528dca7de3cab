"""Queues that split their callers between routing strategies (docs/acd.md "Alternating
strategies"): the split itself, the router routing each call by its own strategy, the
service recording it on the entry, and the config's errors."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from engine.acd.errors import CallNotAnswered
from engine.acd.live_store import LiveSnapshot
from engine.acd.model import AgentView, QueueSpec, Strategy, WaitingCall
from engine.acd.routing import Router, StrategyNotInQueue, route
from engine.acd.strategy_split import StrategySplitter
from engine.calls.model import CallState
from engine.config import parse_config
from engine.core.errors import ConfigError
from engine.pbx.base import LiveChannel, Resynced
from tests.unit.acd_fakes import SnapshotStore, agent, rig

LI, HS, FC, BM = (
    Strategy.LONGEST_IDLE,
    Strategy.HIGHEST_SKILL_LEVEL,
    Strategy.FEWEST_CALLS,
    Strategy.BEST_MATCH,
)


def ab(*strategies: Strategy, **kw: object) -> QueueSpec:
    return QueueSpec("ab", {"sales": 3}, strategies=strategies, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the split


def test_alternate_takes_the_strategies_in_turn_per_queue() -> None:
    split = StrategySplitter()
    three = QueueSpec("three", strategies=(BM, LI, FC))
    other = QueueSpec("other", strategies=(LI, BM))
    single = QueueSpec("single", strategy=FC)
    got = [split.assign(three) for _ in range(4)]
    assert got == [BM, LI, FC, BM]
    # Another queue has its own turn; a one-strategy queue neither takes nor moves a turn.
    assert [split.assign(other), split.assign(single), split.assign(other)] == [LI, FC, BM]
    assert split.assign(three) == LI


def test_random_is_seeded_per_queue_and_follows_the_weights() -> None:
    even = ab(BM, LI, strategy_split="random")

    def draws(seed: int, spec: QueueSpec, n: int = 400) -> list[Strategy]:
        split = StrategySplitter(seed)
        return [split.assign(spec) for _ in range(n)]

    assert draws(7, even) == draws(7, even)  # same seed, same split
    assert draws(7, even) != draws(8, even)
    counts = Counter(draws(7, even))
    assert set(counts) == {BM, LI} and 150 < counts[BM] < 250  # about half of 400
    heavy = ab(BM, LI, strategy_split="random", strategy_weights=(9.0, 1.0))
    counts = Counter(draws(7, heavy))
    assert 320 < counts[BM] < 390  # about 9 in 10 of 400
    # One queue's draws do not depend on another's.
    other = QueueSpec("other", strategies=(BM, LI), strategy_split="random")
    split = StrategySplitter(7)
    mixed = []
    for _ in range(50):
        mixed.append(split.assign(even))
        split.assign(other)
    assert mixed == draws(7, even, 50)


def test_queue_spec_normalises_and_checks_its_strategies() -> None:
    assert QueueSpec("q", strategy=FC).strategies == (FC,)
    spec = ab(HS, LI)
    assert spec.strategy is HS and spec.strategies == (HS, LI)
    with pytest.raises(ValueError, match="listed twice"):
        ab(LI, LI)
    with pytest.raises(ValueError, match="one positive number per strategy"):
        ab(LI, HS, strategy_split="random", strategy_weights=(1.0,))
    with pytest.raises(ValueError, match="with strategy_split random"):
        ab(LI, HS, strategy_weights=(1.0, 2.0))


# ---------------------------------------------------------------- the router


def _agents() -> list[AgentView]:
    # alice: idle longest, level 6, one call handled; bob: level 9, no call yet, the caller's
    # features match his capability.
    return [
        AgentView(
            "alice",
            {"sales": 6},
            available=True,
            idle_since=1.0,
            calls_handled=1,
            capability=(1.0, 0.0),
        ),
        AgentView(
            "bob",
            {"sales": 9},
            available=True,
            idle_since=5.0,
            calls_handled=0,
            capability=(0.0, 1.0),
        ),
    ]


@pytest.mark.parametrize(
    ("strategy", "expected"), [(LI, "alice"), (HS, "bob"), (FC, "bob"), (BM, "bob")]
)
def test_each_call_is_routed_by_its_own_strategy(strategy: Strategy, expected: str) -> None:
    spec = ab(LI, HS, FC, BM)
    call = WaitingCall("c1", "ab", 0.0, features=(0.0, 1.0), strategy=strategy)
    assert route([spec], _agents(), [call], 10.0).as_map() == {"c1": (expected,)}


def test_calls_of_both_strategies_in_one_queue_share_its_agents() -> None:
    spec = ab(HS, LI)
    router = Router([spec])
    for view in _agents():
        router.upsert_agent(view)
    # The first call (highest-skill-level) takes bob; the second (longest-idle) the one left.
    router.add_call(WaitingCall("c1", "ab", 0.0, strategy=HS))
    router.add_call(WaitingCall("c2", "ab", 1.0, strategy=LI))
    assert router.decide(10.0).as_map() == {"c1": ("bob",), "c2": ("alice",)}
    # Both offers missed: the agents are back in every strategy's pool; a new longest-idle
    # call takes alice (idle longest), a highest-skill-level one bob. c1 and c2 are not
    # offered again to the agent who missed them, so each goes to the other agent.
    router.offer_missed("c1", "bob", 11.0)
    router.offer_missed("c2", "alice", 11.0)
    views = {v.agent_id: v for v in _agents()}
    router.upsert_agent(views["alice"])
    router.upsert_agent(views["bob"])
    assert router.decide(12.0).as_map() == {"c1": ("alice",), "c2": ("bob",)}
    # No call's strategy given: the queue's first (highest-skill-level).
    spec_default = route([spec], _agents(), [WaitingCall("c3", "ab", 0.0)], 1.0)
    assert spec_default.as_map() == {"c3": ("bob",)}


def test_a_strategy_the_queue_does_not_run_is_refused() -> None:
    router = Router([ab(HS, LI)])
    with pytest.raises(StrategyNotInQueue) as err:
        router.add_call(WaitingCall("c1", "ab", 0.0, strategy=BM))
    assert err.value.error_id == "strategy-not-in-queue"
    assert "runs highest-skill-level, longest-idle" in str(err.value)


# ---------------------------------------------------------------- the service


async def test_entries_alternate_are_recorded_and_each_routed_by_its_own() -> None:
    spec = QueueSpec("ab", {"sales": 5}, strategies=(LI, HS), ring_timeout_s=10)
    r = rig([agent("alice", {"sales": 6}), agent("bob", {"sales": 9})], [spec])
    for agent_id in ("alice", "bob"):  # alice is idle longest, bob has the higher level
        r.acd.login(agent_id)
        r.clock.t += 1
        r.acd.ready(agent_id)
    got = []
    for n in range(4):
        if n == 2:
            # A caller refused at the door takes no turn of the split.
            r.calls.caller("ringing", CallState.RINGING)
            with pytest.raises(CallNotAnswered):
                await r.acd.enter("ringing", queue="ab")
        caller = r.calls.caller(f"c{n}")
        entry = await r.acd.enter(caller, queue="ab")
        await r.settle()
        got.append((entry.strategy, r.calls.originates[-1][1].endpoint))
        assert r.acd.queue_view("ab")["waiting"][0]["strategy"] == entry.strategy
        r.clock.t += 1
        r.hung_up(caller)  # the caller leaves while the agent rings: the agent is free again
        await r.settle()
    assert got == [("longest-idle", "alice"), ("highest-skill-level", "bob")] * 2
    rows = {row["entry_id"]: row["strategy"] for row in r.history.of("queue_entry", "kind")}
    assert Counter(rows.values()) == {"longest-idle": 2, "highest-skill-level": 2}
    view = r.acd.queue_view("ab")
    assert view["strategy"] == "longest-idle"
    assert view["strategies"] == ["longest-idle", "highest-skill-level"]
    assert view["strategy_split"] == "alternate"


async def test_a_restored_caller_keeps_its_strategy_while_its_queue_runs_it() -> None:
    before = rig([agent("alice", {"sales": 9})], [QueueSpec("ab", strategies=(LI, HS))])
    for caller in ("c1", "c2"):  # nobody is ready: both wait
        before.calls.caller(caller)
        await before.acd.enter(caller, queue="ab")
    await before.settle()
    assert [before.acd.entry_of(c).strategy for c in ("c1", "c2")] == [  # type: ignore[union-attr]
        "longest-idle",
        "highest-skill-level",
    ]
    written = before.live.writes
    entries: list[dict[str, Any]] = [v for (k, _), v in written.items() if k == "entry" and v]

    # Restarted with a config that dropped longest-idle from the split.
    after = rig([agent("alice", {"sales": 9})], [QueueSpec("ab", strategies=(FC, HS))])
    after.clock.t = before.clock.t + 5
    after.acd._store = SnapshotStore(LiveSnapshot({}, [], entries))  # type: ignore[assignment]
    assert await after.acd.restore() == 2
    for caller in ("c1", "c2"):
        after.calls.caller(caller)
    live = (LiveChannel("c1", "c1", "answered"), LiveChannel("c2", "c2", "answered"))
    after.acd.handle(Resynced(switch="sw", call_id="", ts=after.clock.t, live=live))
    await after.settle()
    # c2 keeps its strategy; c1's is gone, so the queue's first routes it, and it says so.
    assert [after.acd.entry_of(c).strategy for c in ("c1", "c2")] == [  # type: ignore[union-attr]
        "fewest-calls",
        "highest-skill-level",
    ]
    after.hung_up("c1")  # the caller leaves: its row is written with what routed it
    (row,) = [r for r in after.history.of("queue_entry", "kind") if r["call_id"] == "c1"]
    assert row["strategy"] == "fewest-calls" and row["outcome"] == "abandoned"


# ---------------------------------------------------------------- the config

BASE = """
[api]
tokens = ["0123456789abcdef0123"]
[[switches]]
kind = "asterisk"
name = "pbx1"
username = "engine"
secret = "s3cret-value"
[[queues]]
name = "ab"
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + text, "cfg.toml")
    return info.value.problems


def test_config_builds_the_split() -> None:
    cfg = parse_config(
        BASE + 'strategies = ["best-match", "longest-idle"]\nstrategy_split = "random"\n'
        "strategy_weights = [3, 1]\n",
        "cfg.toml",
    )
    spec = cfg.queues[0].to_spec()
    assert spec.strategies == (BM, LI) and spec.strategy is BM
    assert spec.strategy_split == "random" and spec.strategy_weights == (3.0, 1.0)
    assert parse_config(BASE, "cfg.toml").queues[0].to_spec().strategies == (LI,)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            'strategy = "best-match"\nstrategies = ["best-match", "longest-idle"]\n',
            "queues[0]: strategy and strategies: give one",
        ),
        ('strategies = ["best-match"]\n', "queues[0].strategies: expected two or"),
        (
            'strategies = ["best-match", "best-match"]\n',
            "queues[0].strategies: each strategy may be listed once; repeated: best-match",
        ),
        ('strategies = ["best-match", "fastest"]\n', "queues[0].strategies[1]: Input should be"),
        ('strategy_split = "random"\n', "queues[0]: strategy_split: only with"),
        ('strategies = ["best-match", "longest-idle"]\nstrategy_split = "coin"\n', "(got 'coin')"),
        (
            'strategies = ["best-match", "longest-idle"]\nstrategy_weights = [1, 2]\n',
            'strategy_weights: only with strategy_split = "random"',
        ),
        (
            'strategies = ["best-match", "longest-idle"]\nstrategy_split = "random"\n'
            "strategy_weights = [1]\n",
            "strategy_weights: expected one weight per strategy (2), got 1",
        ),
        (
            'strategies = ["best-match", "longest-idle"]\nstrategy_split = "random"\n'
            "strategy_weights = [1, 0]\n",
            "queues[0].strategy_weights[1]: Input should be greater than 0",
        ),
    ],
)
def test_config_errors_name_the_key_and_what_was_expected(text: str, problem: str) -> None:
    got = _problems(text)
    assert len(got) == 1 and problem in got[0], got
