"""Trunk and trunk-group config: defaults from issue 4, clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.trunks.config import (
    TrunkConfig,
    TrunkGroupConfig,
    TrunkingConfig,
    check_references,
    reference_problems,
)
from engine.trunks.model import Selection

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "telephony-config" / "trunks.example.toml"


def trunk(name: str, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": name,
        "switch": "asterisk-1",
        "target": name,
        "max_channels": 10,
        "max_cps": 2,
    }
    base.update(kw)
    return base


def errors(data: dict[str, object]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        TrunkingConfig.model_validate(data)
    return [str(e["msg"]) for e in info.value.errors()]


def test_group_defaults_are_the_issue_lists() -> None:
    g = TrunkGroupConfig(name="out", members=["a"])
    assert g.selection is Selection.PRIORITY
    assert sorted(g.failover_q850) == [34, 38, 41, 42, 44, 47, 102]
    assert sorted(g.failover_sip) == [408, 500, 502, 503]
    assert set(g.failover_names) == {"GATEWAY_DOWN", "INVALID_GATEWAY", "NORMAL_TEMPORARY_FAILURE"}
    assert sorted(g.never_q850) == [1, 16, 17, 19, 21]
    assert sorted(g.never_sip) == [404, 480, 486, 487, 603]


def test_trunk_defaults_and_spec() -> None:
    t = TrunkConfig.model_validate(trunk("carrier-a", tags=["primary"]))
    spec = t.to_spec()
    assert (spec.priority, spec.weight, spec.cps_burst) == (10, 100, 1)
    assert spec.tags == ("primary",)
    assert spec.breaker.failure_threshold == 5 and spec.breaker.close_after == 2


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ValidationError) as info:
        TrunkConfig.model_validate(trunk("a", max_chanels=3))
    assert info.value.errors()[0]["type"] == "extra_forbidden"
    assert info.value.errors()[0]["loc"] == ("max_chanels",)


def test_unknown_member_names_the_key_path() -> None:
    msgs = errors({"trunks": [trunk("a")], "trunk_groups": [{"name": "g", "members": ["a", "b"]}]})
    assert "trunk_groups[0].members[1]: unknown trunk 'b' (trunks: a)" in msgs[0]


def test_duplicate_names_and_targets() -> None:
    msgs = errors(
        {
            "trunks": [trunk("a"), trunk("a", target="x"), trunk("c", target="a")],
            "trunk_groups": [{"name": "g", "members": ["a"]}, {"name": "g", "members": ["c"]}],
        }
    )
    text = msgs[0]
    assert "trunks[1].name: 'a' is already used by trunks[0]" in text
    assert "trunks[2].target: 'a' on 'asterisk-1' is already trunk 'a'" in text
    assert "trunk_groups[1].name: 'g' is already used by trunk_groups[0]" in text


def test_member_listed_twice() -> None:
    with pytest.raises(ValidationError) as info:
        TrunkGroupConfig(name="g", members=["a", "a"])
    assert "repeated: a" in str(info.value)


def test_cause_in_both_lists_is_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError) as info:
        TrunkGroupConfig(name="g", members=["a"], failover_q850=[34, 17], failover_sip=[486])
    msg = str(info.value)
    assert "17 in both failover_q850 and never_q850" in msg
    assert "486 in both failover_sip and never_sip" in msg
    assert "remove it from never_*" in msg
    # The explicit way works.
    ok = TrunkGroupConfig(
        name="g", members=["a"], failover_q850=[34, 17], never_q850=[1, 16, 19, 21]
    )
    assert 17 in ok.policy().failover_q850


def test_bad_values_say_what_was_expected() -> None:
    with pytest.raises(ValidationError) as info:
        TrunkConfig.model_validate(trunk("a", max_channels=0, max_cps=-1))
    locs = {e["loc"][0] for e in info.value.errors()}
    assert locs == {"max_channels", "max_cps"}
    with pytest.raises(ValidationError) as info:
        TrunkGroupConfig(name="g", members=["a"], failover_sip=[200])
    assert "greater than or equal to 300" in str(info.value)
    with pytest.raises(ValidationError) as info:
        TrunkConfig.model_validate(trunk("a", breaker={"cooldown_s": 60, "max_cooldown_s": 10}))
    assert "max_cooldown_s (10.0) must be >= cooldown_s (60.0)" in str(info.value)
    with pytest.raises(ValidationError) as info:
        TrunkGroupConfig.model_validate({"name": "g", "members": ["a"], "selection": "random"})
    assert "selection" in str(info.value.errors()[0]["loc"])


def test_switch_references_are_checked_when_given() -> None:
    t = [TrunkConfig.model_validate(trunk("a", switch="fs-9"))]
    problems = reference_problems(t, [], {"asterisk-1", "fs-1"})
    assert problems == ["trunks[0].switch: unknown switch 'fs-9' (switches: asterisk-1, fs-1)"]
    with pytest.raises(ValueError, match="fs-9"):
        check_references(t, [], {"asterisk-1"})
    assert reference_problems(t, []) == []


def test_example_file_is_valid_and_fails_over() -> None:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    raw.pop("switches", None)
    cfg = TrunkingConfig.model_validate(raw)
    trunks, groups = cfg.specs()
    assert len(trunks) >= 2 and len({t.switch for t in trunks}) >= 1
    assert any(len(g.members) >= 2 for g in groups)
