"""Rules: grammar (every refusal names its location), operators, groups, priority, channels, time."""

from __future__ import annotations

import pytest

from aura.errors import AuraError
from aura.state.bandits import BanditError
from aura.state.experiments import ExperimentError
from aura.state.rules import (
    RuleError,
    evaluate,
    holds,
    ordered,
    profile_fields,
    referenced_segments,
    validate_rule,
    with_time,
)
from schemas.events import Identity
from streams.identity import apply_identity

NOW = 1_790_000_000_000  # 2026-09-21 (a Monday) 14:13:20 UTC


def rule(**kw):
    doc = {"id": "r1", "priority": 1, "content": {"banner": "b"}}
    doc.update(kw)
    return validate_rule(doc)


def cond(field, op, value=None):
    c = {"field": field, "op": op}
    if value is not None:
        c["value"] = value
    return c


def run(conditions, profile=None, segments=(), context=None, channel="web"):
    r = rule(conditions=conditions)
    ctx = with_time(context or {}, NOW)
    return bool(evaluate([r], channel, profile or {}, frozenset(segments), ctx))


@pytest.mark.parametrize(("c", "profile", "expected"), [
    (cond("profile.country", "equals", "FR"), {"country": "FR"}, True),
    (cond("profile.country", "equals", "FR"), {"country": "DE"}, False),
    (cond("profile.country", "equals", "FR"), {}, False),
    (cond("profile.country", "not_equals", "FR"), {}, True),
    (cond("profile.orders", "equals", 3), {"orders": "3"}, True),  # Redis strings compare as numbers
    (cond("profile.country", "in", ["FR", "BE"]), {"country": "BE"}, True),
    (cond("profile.country", "not_in", ["FR", "BE"]), {"country": "BE"}, False),
    (cond("profile.ltv", "gt", 100), {"ltv": 100}, False),
    (cond("profile.ltv", "gte", 100), {"ltv": "100"}, True),
    (cond("profile.ltv", "lt", 100), {"ltv": 99.5}, True),
    (cond("profile.ltv", "lte", 100), {"ltv": "abc"}, False),  # not a number: no match, no crash
    (cond("profile.signup", "gt", "2026-01-01"), {"signup": "2026-03-02"}, True),
    (cond("profile.email", "contains", "@acme"), {"email": "a@acme.com"}, True),
    (cond("profile.tags", "contains", "golf"), {"tags": ["tennis", "golf"]}, True),
    (cond("profile.email", "exists"), {"email": "x"}, True),
    (cond("profile.email", "exists"), {"email": ""}, False),
    (cond("profile.email", "exists", False), {}, True),
    (cond("profile.vip", "equals", True), {"vip": "true"}, True),
])
def test_operators(c, profile, expected):
    assert run(c, profile=profile) is expected


def test_segments_and_context():
    assert run(cond("segments", "contains", "vip"), segments={"vip"})
    assert not run(cond("segments", "contains", "vip"), segments={"buyer"})
    assert run(cond("segments", "in", ["vip", "buyer"]), segments={"buyer"})
    assert run(cond("segments", "not_in", ["vip"]), segments={"buyer"})
    assert run(cond("context.device", "in", ["ios", "android"]), context={"device": "ios"})
    assert run(cond("context.hour", "equals", 14))
    assert run(cond("context.weekday", "equals", 0))
    assert run(cond("context.date", "equals", "2026-09-21"))
    assert run(cond("context.hour", "gte", 9), context={"time": NOW - 6 * 3600 * 1000}) is False  # 08:13
    assert run(cond("context.channel", "equals", "email"), channel="email")


def test_nested_groups():
    tree = {"all": [cond("profile.country", "equals", "FR"),
                    {"any": [cond("segments", "contains", "vip"), cond("profile.ltv", "gte", 500)]},
                    {"not": cond("context.device", "equals", "tv")}]}
    assert run(tree, {"country": "FR", "ltv": 600}, context={"device": "ios"})
    assert run(tree, {"country": "FR", "ltv": 10}, segments={"vip"})
    assert not run(tree, {"country": "FR", "ltv": 10})
    assert not run(tree, {"country": "FR", "ltv": 600}, context={"device": "tv"})
    assert not run(tree, {"country": "DE", "ltv": 600})


def test_priority_ties_channels_and_disabled():
    rules = ordered([
        validate_rule({"id": "low", "priority": 1, "variant": "a"}),
        validate_rule({"id": "b-high", "priority": 5, "variant": "b", "channels": ["email"]}),
        validate_rule({"id": "a-high", "priority": 5, "variant": "c", "channels": ["web"]}),
        validate_rule({"id": "off", "priority": 99, "variant": "d", "enabled": False}),
    ])
    ctx = with_time({}, NOW)
    assert [m.rule_id for m in evaluate(rules, "web", {}, frozenset(), ctx)] == ["a-high"]
    assert [m.rule_id for m in evaluate(rules, "email", {}, frozenset(), ctx)] == ["b-high"]
    assert [m.rule_id for m in evaluate(rules, "mobile", {}, frozenset(), ctx)] == ["low"]
    assert [m.variant for m in evaluate(rules, "web", {}, frozenset(), ctx, first_only=False)] == ["c", "a"]


@pytest.mark.parametrize(("doc", "loc", "fragment"), [
    ({"priority": 1, "variant": "a"}, ["id"], "id is required"),
    ({"id": "bad id!", "variant": "a"}, ["id"], "id is required"),
    ({"id": "r", "variant": "a", "channels": ["fax"]}, ["channels"], "channels"),
    ({"id": "r"}, ["content"], "content, a variant"),
    ({"id": "r", "variant": "a", "priority": "high"}, ["priority"], "integer"),
    ({"id": "r", "variant": "a", "colour": 1}, ["colour"], "unknown key"),
    ({"id": "r", "variant": "a", "conditions": cond("profile.x", "between", 1)}, ["conditions", "op"],
     "unknown operator"),
    ({"id": "r", "variant": "a", "conditions": cond("wallet.x", "equals", 1)}, ["conditions", "field"],
     "unknown field"),
    ({"id": "r", "variant": "a", "conditions": cond("context.weather", "equals", 1)}, ["conditions", "field"],
     "unknown context field"),
    ({"id": "r", "variant": "a", "conditions": cond("profile.c", "in", "FR")}, ["conditions", "value"],
     "non-empty list"),
    ({"id": "r", "variant": "a", "conditions": cond("profile.c", "gt", [1])}, ["conditions", "value"], "number"),
    ({"id": "r", "variant": "a", "conditions": cond("segments", "gt", 1)}, ["conditions", "op"], "segments"),
    ({"id": "r", "variant": "a", "conditions": {"all": []}}, ["conditions", "all"], "non-empty list"),
    ({"id": "r", "variant": "a", "conditions": {"all": [cond("profile.a", "equals", 1)], "any": []}},
     ["conditions"], "exactly one key"),
    ({"id": "r", "variant": "a", "conditions": {"any": [cond("profile.a", "equals", 1), "x"]}},
     ["conditions", "any", 1], "must be an object"),
])
def test_invalid_rules_are_refused_with_their_location(doc, loc, fragment):
    with pytest.raises(RuleError) as err:
        validate_rule(doc)
    assert any(e["loc"] == loc and fragment in e["msg"] for e in err.value.errors), err.value.errors


@pytest.mark.parametrize("cls", [RuleError, ExperimentError, BanditError])
def test_decision_errors_derive_from_the_aura_root_and_stay_value_errors(cls):
    err = cls([{"loc": ["id"], "msg": "bad"}])
    assert isinstance(err, AuraError) and isinstance(err, ValueError)
    assert str(err) == "id: bad" and err.errors == [{"loc": ["id"], "msg": "bad"}]


def test_depth_and_size_limits():
    deep = cond("profile.a", "equals", 1)
    for _ in range(10):
        deep = {"all": [deep]}
    with pytest.raises(RuleError, match="nested deeper"):
        validate_rule({"id": "r", "variant": "a", "conditions": deep})
    wide = {"any": [cond("profile.a", "equals", i) for i in range(300)]}
    with pytest.raises(RuleError, match="more than 200"):
        validate_rule({"id": "r", "variant": "a", "conditions": wide})


def test_helpers():
    r = rule(conditions={"any": [cond("segments", "contains", "vip"), cond("segments", "in", ["a", "b"])]})
    assert referenced_segments([r]) == {"vip", "a", "b"}
    assert holds(None, {}, frozenset(), {})
    fields = profile_fields({"count.view": "3", "_off": "9"}, {"x:country": "FR", "ltv": "12.5"})
    assert fields == {"count.view": 3.0, "x:country": "FR", "country": "FR", "ltv": 12.5}


def test_identity_attributes_as_the_identity_agent_stores_them_compare_typed():
    """The docs' example (``profile.country equals "US"``) over the hash streams/identity.py writes."""
    attrs = apply_identity({}, Identity("e", "create", "u", 1, attributes={
        "country": "US", "age": 31, "vip": True, "plan": "3"}))
    attrs = apply_identity(attrs, Identity("e2", "preferences", "u", 2, preferences={"categories": {"books": 1.0}}))
    fields = profile_fields({"ltv": "5"}, attrs)
    assert fields["country"] == "US" and fields["x:country"] == "US" and fields["age"] == 31
    for c, want in [(cond("profile.country", "equals", "US"), True),
                    (cond("profile.country", "not_equals", "US"), False),
                    (cond("profile.country", "in", ["FR", "US"]), True), (cond("profile.age", "gte", 30), True),
                    (cond("profile.vip", "equals", True), True), (cond("profile.plan", "equals", "3"), True),
                    (cond("profile.categories", "contains", "books"), True),
                    (cond("profile.country", "contains", "U"), True)]:
        assert run(c, fields) is want, c
    assert profile_fields({"x:legacy": "not json"})["legacy"] == "not json"
