"""Segment rules over identity attributes (``attr.<name>``), pure: values decoded from their stored
JSON and compared by type, presence tests, the attributes a rule set needs, and definitions refused
with the offending place."""

from __future__ import annotations

import json

import pytest

from aura.state import segments as seg
from aura.state.profiles import Profile, ProfileConfig, segment_view
from aura.state.segments import RuleError, attributes_view, evaluate, matches, validate_segment


def stored(**attrs: object) -> dict[str, object]:
    """Attributes as the identity agent stores them (JSON text), decoded as the readers do."""
    names = sorted(attrs)
    return attributes_view(names, [json.dumps(attrs[n]) for n in names])


def view(**attrs: object) -> dict[str, object]:
    return segment_view(Profile(), ProfileConfig(), attrs=stored(**attrs))


@pytest.mark.parametrize(("cond", "attrs", "expected"), [
    # strings: the stored JSON "\"gold\"" is the string gold
    (["attr.plan", "==", "gold"], {"plan": "gold"}, True),
    (["attr.plan", "==", "gold"], {"plan": "silver"}, False),
    (["attr.plan", "!=", "gold"], {"plan": "silver"}, True),
    (["attr.plan", "==", "1"], {"plan": 1}, False),  # a string never equals a number
    # numbers: as numbers, whatever their JSON spelling
    (["attr.age", ">=", 30], {"age": 30}, True),
    (["attr.age", ">", 30], {"age": 30.5}, True),
    (["attr.age", "==", 30], {"age": 30.0}, True),
    (["attr.age", "<", 30], {"age": "29"}, False),  # a numeric string is a string
    (["attr.age", ">", 3], {"age": True}, False),
    # booleans: only booleans
    (["attr.vip", "==", True], {"vip": True}, True),
    (["attr.vip", "==", True], {"vip": 1}, False),
    (["attr.vip", "==", 1], {"vip": True}, False),
    (["attr.vip", "!=", True], {"vip": False}, True),
    # strings order as strings (ISO dates)
    (["attr.signup", ">=", "2026-01-01"], {"signup": "2026-03-04"}, True),
    (["attr.signup", ">=", "2026-01-01"], {"signup": 20260304}, False),
    # lists: in (any element), contains (one element), typed
    (["attr.tags", "contains", "beta"], {"tags": ["alpha", "beta"]}, True),
    (["attr.tags", "contains", 1], {"tags": ["1", "2"]}, False),
    (["attr.tags", "in", ["beta", "gamma"]], {"tags": ["alpha", "beta"]}, True),
    (["attr.tags", "not_in", ["beta"]], {"tags": ["alpha", "beta"]}, False),
    (["attr.plan", "in", ["gold", "platinum"]], {"plan": "gold"}, True),
    (["attr.plan", "in", [1, True]], {"plan": "1"}, False),
    (["attr.plan", "not_in", ["gold"]], {"plan": "silver"}, True),
    (["attr.email", "contains", "@example."], {"email": "a@example.com"}, True),
    (["attr.score", "contains", 1], {"score": 1}, False),
    # presence
    (["attr.plan", "exists", None], {"plan": "gold"}, True),
    (["attr.plan", "exists", None], {"plan": False}, True),  # a false value is present
    (["attr.plan", "exists", None], {}, False),
    (["attr.plan", "missing", None], {}, True),
    (["attr.plan", "missing", None], {"plan": ""}, False),
    # a missing attribute fails every comparison, negative ones included
    (["attr.plan", "==", "gold"], {}, False),
    (["attr.plan", "!=", "gold"], {}, False),
    (["attr.plan", "not_in", ["gold"]], {}, False),
    (["attr.age", "<", 30], {}, False),
    # objects compare by nothing but presence
    (["attr.address", "==", "x"], {"address": {"city": "x"}}, False),
])
def test_typed_attribute_conditions(cond, attrs, expected):
    assert matches([cond], view(**attrs)) is expected


def test_attributes_mix_with_profile_fields_and_names_are_collected():
    rules = {"gold_buyers": [["attr.plan", "==", "gold"], ["orders", ">=", 1]],
             "adults": [["attr.age", ">=", 18]], "vip": [["ltv", ">", 500]]}
    assert seg.uses_attributes(rules) and not seg.uses_attributes({"vip": [["ltv", ">", 500]]})
    assert seg.attribute_names(rules) == ["age", "plan"]
    p = Profile(orders=2, ltv=10.0)
    attrs = stored(plan="gold", age=17)
    assert evaluate(rules, segment_view(p, ProfileConfig(), attrs=attrs)) == ["gold_buyers"]
    assert evaluate(rules, segment_view(p, ProfileConfig())) == []  # no attributes read: none match


def test_stored_values_that_are_not_json_count_as_their_text_and_absent_ones_are_left_out():
    assert attributes_view(["a", "b", "c"], ['"x"', "plain", None]) == {"a": "x", "b": "plain"}
    assert matches([["attr.b", "==", "plain"]], segment_view(Profile(), ProfileConfig(),
                                                             attrs=attributes_view(["b"], ["plain"])))


def test_typed_equality_is_strict():
    assert seg.same(1, 1.0) and seg.same("a", "a") and seg.same([1, "a"], [1.0, "a"])
    assert not seg.same(True, 1) and not seg.same(0, False) and not seg.same("1", 1) and not seg.same([1], [1, 2])


def test_a_definition_over_attributes_is_normalised():
    doc = validate_segment({"id": "gold", "conditions": [
        ["attr.plan", "equals", "gold"], {"field": "attr.beta", "op": "exists"}, ["attr.churn_risk", "missing"],
        {"field": "attr.tags", "op": "contains", "value": "x"}, ["attr.signup", "gte", "2026-01-01"]]})
    assert doc["conditions"] == [["attr.plan", "==", "gold"], ["attr.beta", "exists", None],
                                 ["attr.churn_risk", "missing", None], ["attr.tags", "contains", "x"],
                                 ["attr.signup", ">=", "2026-01-01"]]
    # stored, read back and validated again (the config cache re-validates): unchanged
    assert validate_segment(json.loads(json.dumps(doc))) == doc


@pytest.mark.parametrize(("cond", "where"), [
    (["attr.", "==", "x"], "field"),  # no name
    (["attr." + "n" * 129, "==", "x"], "field"),  # longer than an attribute key may be
    (["attrs.plan", "==", "x"], "field"),
    ([7, "==", "x"], "field"),
    (["attr.plan", "like", "x"], "op"),
    (["orders", "contains", 1], "op"),  # contains / exists / missing: attributes only
    (["orders", "exists", None], "op"),
    (["attr.plan", "in", "gold"], "value"),  # in needs a list
    (["attr.plan", "in", [["nested"]]], "value"),
    (["attr.plan", ">", True], "value"),  # order over numbers or strings only
    (["attr.plan", ">", None], "value"),
    (["attr.plan", "==", {"a": 1}], "value"),
    (["attr.plan", "==", None], "value"),
    (["attr.plan", "contains", ["x"]], "value"),
    (["attr.plan", "exists", "yes"], "value"),
    (["attr.plan", "==", "x" * 201], "value"),
    (["attr.age", ">=", float("nan")], "value"),
])
def test_bad_attribute_conditions_are_refused_at_their_place(cond, where):
    with pytest.raises(RuleError) as err:
        validate_segment({"id": "s1", "conditions": [["orders", ">=", 0], cond]})
    loc = err.value.errors[0]["loc"]
    assert loc == ["conditions", 1, where]
    if where == "value":
        assert str(cond[0]) in err.value.errors[0]["msg"]  # the message names the field


def test_settings_rules_may_test_attributes():
    rules = seg.parse_rules('{"beta": [["attr.beta", "==", true]], "known": [["attr.email", "exists", null]]}')
    assert evaluate(rules, view(beta=True, email="a@b.c")) == ["beta", "known"]
    assert evaluate(rules, view(beta="true")) == []
