"""Segment rules (aura/state/segments.py): parsing, evaluation, and bad rules refused with the one
RuleError of the rules."""

from __future__ import annotations

import pytest

from aura.state import rules as personalization_rules
from aura.state.segments import OPS, RuleError, evaluate, matches, parse_rules


def test_rules_evaluate_all_conditions_and_missing_fields():
    rules = parse_rules('{"vip": [["ltv", ">", 500]], "shopper": [["count.view", ">=", 3], ["orders", "==", 0]],'
                        '"stage": [["stage", "in", ["new", "reactivated"]]]}')
    assert evaluate(rules, {"ltv": 501, "orders": 0, "count.view": 3, "stage": "active"}) == ["shopper", "vip"]
    assert evaluate(rules, {"ltv": 500, "orders": 1, "stage": "new"}) == ["stage"]
    assert evaluate(rules, {}) == []  # missing ltv never matches; missing count.* is 0


@pytest.mark.parametrize("text", ["not json", "[]", '{"x": []}', '{"x": [["ltv", "~", 1]]}', '{"x": [["ltv", ">"]]}'])
def test_bad_rules_are_refused(text):
    with pytest.raises(RuleError):
        parse_rules(text)


def test_default_rules_from_settings_parse():
    from aura.settings import Settings

    assert set(parse_rules(Settings().profiles.segment_rules)) >= {"vip", "buyer"}


def test_rule_error_is_the_one_of_the_personalization_rules():
    assert RuleError is personalization_rules.RuleError
    with pytest.raises(ValueError) as err:  # callers catching ValueError keep working
        parse_rules('{"x": [["ltv", "~", 1]]}')
    assert err.value.errors == [{"loc": ["segment_rules", "x"], "msg": err.value.errors[0]["msg"]}]
    assert "bad condition" in str(err.value)


@pytest.mark.parametrize(("op", "value", "actual", "expected"), [
    (">", 1, 2, True), (">", 2, 2, False), (">=", 2, 2, True), ("<", 3, 2, True), ("<=", 2, 3, False),
    ("==", "new", "new", True), ("!=", "new", "new", False), ("in", ["a", "b"], "b", True), ("in", ["a"], "c", False),
])
def test_every_operator(op, value, actual, expected):
    assert op in OPS
    assert matches([["f", op, value]], {"f": actual}) is expected


def test_a_condition_on_a_value_of_another_type_does_not_match():
    assert not matches([["stage", ">", 3]], {"stage": "new"})
    assert matches([["count.view", "==", 0], ["affinity.brand:x", "<", 1]], {})  # absent counts are 0
    assert evaluate({}, {"ltv": 1}) == []
    assert parse_rules("") == {}


@pytest.mark.parametrize("op", [[">="], {"op": ">="}, None, 3])
def test_a_definition_whose_operator_is_not_a_string_is_refused_at_the_operator(op):
    from aura.state.segments import validate_segment

    with pytest.raises(RuleError) as err:
        validate_segment({"id": "s1", "conditions": [["orders", op, 1]]})
    assert err.value.errors[0]["loc"] == ["conditions", 0, "op"]
