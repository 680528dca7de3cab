"""The safe expression language of `if` / `switch` (engine/ivr/expr.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.ivr.expr import ExprError, Value, compile_expr
from engine.ivr.template import TemplateError, fields, render

VARS: dict[str, Value] = {
    "customer.response": "拒绝",
    "customer.interest_level": 0.75,
    "digits": "0042",
    "score": "0.9",
    "tier": "gold",
    "empty": "",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('customer.response == "拒绝"', True),
        ("customer.response == '接受'", False),
        ("customer.interest_level > 0.7", True),
        ("customer.interest_level > 0.75", False),
        ("customer.interest_level >= 0.75", True),
        ("score > 0.8", True),  # a numeric string against a number compares as numbers
        ("digits == 42", True),
        ('digits == "42"', False),  # two strings compare as text
        ("missing > 0.5", False),  # an unset variable is "" and is not greater than anything
        ("missing == ''", True),
        ('tier in ["gold", "platinum"]', True),
        ('tier not in ["gold", "platinum"]', False),
        ('"ol" in tier', True),
        ("tier == 'gold' and score > 0.5 or empty", True),
        ("not (tier == 'gold') or empty", False),
        ("empty", False),
        ("true and not false", True),
        ("-1 < 0", True),
    ],
)
def test_expressions_evaluate(text: str, expected: bool) -> None:
    assert compile_expr(text).test(VARS) is expected


def test_names_are_collected_for_the_load_time_check() -> None:
    expr = compile_expr('a.b == 1 and c in [d, "x"] or not e')
    assert expr.names == frozenset({"a.b", "c", "d", "e"})


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("tier = 'gold'", 6, "write == to compare"),
        ("tier == 'gold", 9, "string not closed"),
        ("score >", 8, "expected a value"),
        ("__import__('os').system('id')", 17, "unexpected character '.'"),
        ("len(tier) > 2", 4, "after a complete expression"),
        ("tier == 'gold' tier", 16, "after a complete expression"),
        ("(tier == 'gold'", 16, "expected ')'"),
        ("a + 1", 3, "unexpected character '+'"),
        ("", 1, "empty expression"),
    ],
)
def test_bad_expressions_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(text)
    assert info.value.column == column
    assert fragment in str(info.value)


@given(st.text(max_size=40))
def test_any_text_either_compiles_or_raises_expr_error(text: str) -> None:
    try:
        expr = compile_expr(text)
    except ExprError:
        return
    expr.test(VARS)  # never raises on data


def test_templates_take_dotted_names_and_chinese_text() -> None:
    text = "您好 {customer.name}，您的积分是 {points} {{分}}"
    assert fields(text) == ["customer.name", "points"]
    assert (
        render(text, {"customer.name": "王芳", "points": 1200}) == "您好 王芳，您的积分是 1200 {分}"
    )
    assert render("{x}", {}) == ""
    assert render("q={x}", {"x": "a b&c"}, lambda v: v.replace(" ", "+")) == "q=a+b&c"


@pytest.mark.parametrize("bad", ["{a", "a}", "{a b}", "{1x}", "{}"])
def test_bad_templates_are_refused(bad: str) -> None:
    with pytest.raises(TemplateError):
        fields(bad)
