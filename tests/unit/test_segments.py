"""Segment rules: parsing, evaluation, and bad rules refused."""

from __future__ import annotations

import pytest

from streams.segments import RuleError, evaluate, parse_rules


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

    assert set(parse_rules(Settings().segment_rules)) >= {"vip", "buyer"}
