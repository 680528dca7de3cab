"""``[[agents]]``, ``[[queues]]`` and ``[acd]``: defaults, and errors that name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.acd.model import Strategy
from engine.config import load_config, parse_config
from engine.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

BASE = """
[api]
tokens = ["0123456789abcdef0123"]
[[switches]]
kind = "asterisk"
name = "pbx1"
username = "engine"
secret = "s3cret-value"
"""

AGENTS = """
[[agents]]
id = "a1"
name = "Alice"
endpoints = { pbx1 = "PJSIP/1001" }
skills = { sales = 8, english = 10 }
capability = [0.1, 0.2]

[[agents]]
id = "a2"
skills = { tech = 4 }
"""

QUEUES = """
[[queues]]
name = "sales"
skills = { sales = 5 }
strategy = "best-match"
wrap_up_s = 10
  [[queues.overflow]]
  after_s = 30
  relax_skills = { sales = 2 }
  [[queues.overflow]]
  after_s = 60
  add_queue = "tech"
  [[queues.overflow]]
  after_s = 120
  ivr_flow = "voicemail"

[[queues]]
name = "tech"
skills = { tech = 3 }
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.toml")
    assert info.value.path == "cfg.toml"
    return info.value.problems


def test_empty_lists_and_default_acd_section() -> None:
    cfg = parse_config(BASE, "cfg.toml")
    assert cfg.agents == [] and cfg.queues == []
    assert cfg.acd.priorities == {"vip": 3, "high_value": 2, "normal": 1}
    assert cfg.acd.pause_reasons == ["break", "lunch", "training"]
    assert cfg.acd.intents == {}


def test_agents_and_queues_become_the_domain_values() -> None:
    text = BASE + AGENTS + QUEUES + '[acd]\nintents = { pre_sale = "sales" }\n'
    cfg = parse_config(text, "cfg.toml")
    alice = cfg.agents[0].to_config()
    assert (alice.id, alice.name, dict(alice.skills)) == (
        "a1",
        "Alice",
        {"sales": 8, "english": 10},
    )
    assert dict(alice.endpoints) == {"pbx1": "PJSIP/1001"}
    assert alice.capability == (0.1, 0.2)
    assert cfg.agents[1].to_config().name == "a2"  # the id when no name is given
    sales = cfg.queues[0].to_spec()
    assert sales.strategy is Strategy.BEST_MATCH and sales.wrap_up_s == 10
    assert [(r.after_s, r.add_queue, r.ivr_flow) for r in sales.overflow] == [
        (30, None, None),
        (60, "tech", None),
        (120, None, "voicemail"),
    ]
    assert cfg.acd.intents == {"pre_sale": "sales"}


def test_skill_level_out_of_range() -> None:
    got = problems(BASE + AGENTS.replace("sales = 8", "sales = 11"))
    assert got == ["agents[0].skills.sales: Input should be less than or equal to 10 (got 11)"]


def test_unknown_key_in_an_agent() -> None:
    got = problems(BASE + AGENTS.replace('name = "Alice"', 'nmae = "Alice"'))
    assert got == [
        "agents[0].nmae: unknown key (check the spelling; see telephony-config/engine.toml)"
    ]


def test_endpoint_that_could_inject_dial_syntax() -> None:
    got = problems(BASE + AGENTS.replace('"PJSIP/1001"', '"PJSIP/1001&PJSIP/666"'))
    assert len(got) == 1 and got[0].startswith("agents[0].endpoints.pbx1: String should match")


def test_endpoint_on_an_unknown_switch() -> None:
    got = problems(BASE + AGENTS.replace("pbx1 =", "pbx9 ="))
    assert got == ["agents[0].endpoints.pbx9: unknown switch 'pbx9' (switches: pbx1)"]


def test_duplicate_agent_ids_and_queue_names() -> None:
    got = problems(BASE + AGENTS.replace('id = "a2"', 'id = "a1"') + QUEUES + QUEUES)
    assert "agents[1].id: 'a1' is already used by agents[0]" in got
    assert "queues[2].name: 'sales' is already used by queues[0]" in got


def test_capability_vectors_must_have_one_length() -> None:
    got = problems(BASE + AGENTS + "capability = [1.0, 2.0, 3.0]\n")
    assert got == [
        "agents[1].capability: 3 numbers, but agents[0] has 2 "
        "(every capability vector must have the same length)"
    ]


def test_unknown_strategy() -> None:
    got = problems(BASE + QUEUES.replace('"best-match"', '"random"'))
    assert len(got) == 1 and got[0].startswith("queues[0].strategy: Input should be ")
    assert "'longest-idle'" in got[0] and "(got 'random')" in got[0]


def test_overflow_rule_needs_exactly_one_action() -> None:
    got = problems(
        BASE + QUEUES.replace('add_queue = "tech"', 'add_queue = "tech"\n  ivr_flow = "x"')
    )
    assert got == [
        "queues[0].overflow[1]: expected exactly one of relax_skills, add_queue or ivr_flow "
        "(got add_queue, ivr_flow)"
    ]


def test_relax_must_lower_the_minimum() -> None:
    got = problems(
        BASE + QUEUES.replace("relax_skills = { sales = 2 }", "relax_skills = { sales = 7 }")
    )
    assert got == [
        "queues[0]: overflow[0].relax_skills.sales: 7 does not relax the minimum in force "
        "then (5); expected a lower level"
    ]


def test_rules_after_an_ivr_exit_can_never_apply() -> None:
    text = BASE + QUEUES.replace("after_s = 120", "after_s = 45")
    got = problems(text)
    assert got == [
        "queues[0]: overflow[1] (after 60.0 s) can never apply: the call has left for an IVR "
        "flow after 45.0 s"
    ]


def test_fallback_and_intent_must_name_a_queue() -> None:
    text = BASE + QUEUES.replace('add_queue = "tech"', 'add_queue = "billing"')
    text += '[acd]\nintents = { tech_support = "support" }\n'
    got = problems(text)
    assert got == [
        "queues[0].overflow[1].add_queue: unknown queue 'billing' (queues: sales, tech)",
        "acd.intents.tech_support: unknown queue 'support' (queues: sales, tech)",
    ]


def test_no_answer_is_reserved_and_reasons_unique() -> None:
    got = problems(BASE + '[acd]\npause_reasons = ["lunch", "no-answer"]\n')
    assert got == ["acd.pause_reasons: 'no-answer' is the engine's own reason; leave it out"]
    got = problems(BASE + '[acd]\npause_reasons = ["unreachable"]\n')
    assert got == ["acd.pause_reasons: 'unreachable' is the engine's own reason; leave it out"]
    got = problems(BASE + '[acd]\npause_reasons = ["lunch", "lunch"]\n')
    assert got == ["acd.pause_reasons: each reason may be listed once; repeated: lunch"]


def test_priority_map_is_configurable_and_case_insensitive() -> None:
    cfg = parse_config(BASE + "[acd]\npriorities = { VIP = 9, gold = 5 }\n", "cfg.toml")
    assert cfg.acd.priorities == {"vip": 9, "gold": 5}
    got = problems(BASE + "[acd]\npriorities = { vip = -1 }\n")
    assert got == ["acd.priorities.vip: Input should be greater than or equal to 0 (got -1)"]


def test_shipped_config_has_agents_and_two_queues_with_overflow() -> None:
    cfg = load_config(ROOT / "telephony-config" / "engine.toml")
    assert len(cfg.agents) >= 3
    with_overflow = [q for q in cfg.queues if q.overflow]
    assert len(with_overflow) >= 2
    assert set(cfg.acd.intents.values()) <= {q.name for q in cfg.queues}


def test_announce_position_is_refused_until_it_is_played() -> None:
    text = """
[[queues]]
name = "sales"
announce_position = true
"""
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + text, "engine.toml")
    assert any("announce_position" in p and "not supported" in p for p in err.value.problems)
