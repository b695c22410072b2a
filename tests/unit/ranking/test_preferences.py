"""Explicit preferences as ranking filters (aura/ranking/preferences.py): what the identity hash holds
becomes exclusions and multipliers; malformed stored values are ignored, never raised."""

from __future__ import annotations

import json

import pytest

from aura.ranking.blend import Filters, Soft, apply_filters
from aura.ranking.preferences import of_hash, parse, personalise
from schemas.events import Identity
from streams.identity import apply_identity


def hash_of(prefs: dict) -> dict[str, str]:
    return apply_identity({}, Identity("e", "preferences", "u", 1, preferences=prefs))


def test_the_identity_hash_becomes_exclusions_and_multipliers():
    p = of_hash(hash_of({"blocked_items": ["i1", "i2"], "categories": {"toys": -1.0, "books": 0.5, "misc": 0.0},
                         "brands": {"acme": -0.4}, "price_range": {"min": 10.0, "max": None}}))
    assert p.blocked == {"i1", "i2"} and p.excluded == {"toys"}
    assert p.soft == Soft(categories={"books": 0.5}, brands={"acme": -0.4}, min_price=10.0, max_price=None)
    f = personalise(Filters(exclude_ids=frozenset({"i9"}), exclude_categories=frozenset({"x"})), p)
    assert f.exclude_ids == {"i1", "i2", "i9"} and f.exclude_categories == {"x", "toys"} and f.soft == p.soft
    assert personalise(Filters(), of_hash({})) == Filters()
    assert personalise(Filters(), of_hash({"x:name": '"Kim"', "p:channels": '{"sms": true}'})) == Filters()


@pytest.mark.parametrize("meta, factor", [
    (None, 1.0),
    ({"categories": ["books"], "price": 20.0}, 1.25),
    ({"categories": ["books", "comics"], "price": 5.0}, 1.25 * 1.5 * 0.5),
    ({"categories": [], "price": None, "brand": "acme"}, 0.5),
    ({"categories": ["other"], "price": 200.0, "brand": "zed"}, 0.5),
])
def test_soft_factor(meta, factor):
    soft = Soft(categories={"books": 0.5, "comics": 1.0}, brands={"acme": -1.0}, min_price=10.0, max_price=100.0)
    assert soft.factor(meta) == pytest.approx(factor)


def test_soft_preferences_reorder_but_never_drop():
    meta = {"a": {"categories": ["toys"], "price": 1.0}, "b": {"categories": ["books"], "price": 1.0}}
    f = Filters(soft=Soft(categories={"toys": -0.9}))
    out = apply_filters({"a": 1.0, "b": 0.8}, meta, set(), f)
    assert set(out) == {"a", "b"} and out["b"] > out["a"]


@pytest.mark.parametrize("raw", [("not json", "[1,", "{}", "3"), ('{"a": 1}', '["x"]', '"str"', "[]"),
                                 (None, json.dumps({"k": "v"}), None, json.dumps({"min": None})),
                                 (None, None, None, json.dumps({"min": "x", "max": [1]}))])
def test_malformed_stored_values_are_ignored(raw):
    p = parse(*raw)
    assert p.excluded == frozenset() and (p.soft is None or p.soft.categories == {})
