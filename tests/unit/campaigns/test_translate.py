"""Per-trunk-group outbound number translation: first match wins, checked at load and at use."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.trunks.config import TrunkGroupConfig
from engine.trunks.model import GroupSpec
from engine.trunks.translate import TranslationError, compile_rule, translate

EXAMPLE = Path(__file__).resolve().parents[3] / "telephony-config" / "trunks.example.toml"


def group(*rules: tuple[str, str]) -> GroupSpec:
    return TrunkGroupConfig.model_validate(
        {
            "name": "g",
            "members": ["a"],
            "translations": [{"match": m, "replace": r} for m, r in rules],
        }
    ).to_spec()


def test_first_matching_rule_wins_and_no_match_keeps_e164() -> None:
    g = group((r"^\+1555(\d{4})$", r"\1"), (r"^\+1(\d{10})$", r"1\1"), (r"^\+1555", "9"))
    assert translate(g, "+15551234") == "1234"
    assert translate(g, "+14155550100") == "14155550100"
    assert translate(g, "+442079460123") == "+442079460123"


def test_named_groups_and_literals() -> None:
    g = group((r"^\+44(?P<nsn>\d{10})$", r"0\g<nsn>"), (r"^\+33(\d{9})$", r"*31#0\1"))
    assert translate(g, "+442079460123") == "02079460123"
    assert translate(g, "+33123456789") == "*31#0123456789"


def test_the_sandbox_example_reaches_four_digit_numbers() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    (sandbox,) = [g for g in data["trunk_groups"] if g["name"] == "sandbox"]
    g = TrunkGroupConfig(**sandbox).to_spec()
    assert translate(g, "+12025551234") == "1234"
    assert translate(g, "+12025557001") == "7001"
    assert translate(g, "+12025550123") == "0123"
    assert translate(g, "+12025550333") == "+12025550333"  # 03XX: not a sandbox number


@pytest.mark.parametrize(
    ("match", "replace", "message"),
    [
        (r"^(\d+", r"\1", "is not a valid regular expression"),
        (r"^\+(\d+)$", r"\2", "refers to group 2, but match has 1 group"),
        (r"^\+(\d+)$", r"\g<nsn>", "refers to no group named 'nsn'"),
        (r"^\+(\d+)$", r"sip:\1", "expected only digits, \\+, \\* and # besides group references"),
        (r"^\+(\d+)$", r"\1;x=1", "expected only digits"),
    ],
)
def test_bad_rules_are_refused_at_load(match: str, replace: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        TrunkGroupConfig.model_validate(
            {"name": "g", "members": ["a"], "translations": [{"match": match, "replace": replace}]}
        )
    assert info.value.errors()[0]["loc"] == ("translations", 0)


def test_unsafe_results_are_refused_at_use() -> None:
    # The template is safe, but a group can capture what is not: the result is checked.
    g = GroupSpec(
        "g",
        ("a",),
        TrunkGroupConfig(name="g", members=["a"]).policy(),
        translations=(compile_rule(r"^(.*)$", r"\1"),),
    )
    with pytest.raises(TranslationError, match="turned '1;evil' into '1;evil'"):
        translate(g, "1;evil")
    with pytest.raises(TranslationError, match="1-32 of digits"):
        translate(group((r"^\+(\d+)$", r"\1\1\1")), "+123456789012345")
    with pytest.raises(TranslationError, match=r"expected an E\.164 number"):
        translate(group(), "+1 (415)")
