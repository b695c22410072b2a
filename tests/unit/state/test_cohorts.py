"""Demographic cohorts (aura/state/cohorts.py): attributes -> cohorts, and the contract between the
identity hash (as streams/identity.py writes it: ``x:<name>`` / ``p:<what>`` JSON fields) and the cohorts
the writer counts and the ranking reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aura.state.cohorts import AGE_BANDS, age_band, cohorts_from_hash, cohorts_of


def identity_hash(attributes: dict[str, Any], prefs: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``user_attrs`` hash as streams/identity.py writes it."""
    return {**{f"x:{k}": json.dumps(v) for k, v in attributes.items()},
            **{f"p:{k}": json.dumps(v, sort_keys=True) for k, v in (prefs or {}).items()}}


def test_cohorts_from_attributes():
    assert cohorts_of({"age": 30, "gender": "F", "country": " FR "}) == ["age:25-34", "gender:f", "country:fr"]
    assert cohorts_of({"birth_year": 2000}, this_year=2026) == ["age:25-34"]
    assert cohorts_of({"age": 70}) == ["age:65+"]
    assert cohorts_of({"age": True, "gender": "", "country": 3, "city": "Oslo"}) == []
    assert cohorts_of({"birth_year": 3000}, this_year=2026) == []
    assert cohorts_from_hash({"x:country": '"JP"', "p:categories": '["a"]'}) == ["country:jp"]
    assert cohorts_from_hash({"x:country": "not json"}) == []


@pytest.mark.parametrize("attributes", [
    {"age": 30, "gender": "F", "country": " FR "},
    {"age": 17.5, "country": "x" * 100},
    {"age": 0, "gender": "Non-Binary"},
    {"birth_year": 1990, "country": "us", "city": "Oslo", "tags": ["a", "b"]},
    {"age": 129.9, "gender": None, "country": {"nested": 1}},
    {},
])
def test_the_identity_hash_gives_the_cohorts_of_its_attributes(attributes):
    # whatever the hash's preferences, the cohorts are those of the attributes (any JSON value)
    raw = identity_hash(attributes, {"categories": {"books": 1.0}, "blocked_items": ["i1"], "locale": "fr"})
    assert cohorts_from_hash(raw) == cohorts_of(attributes)
    assert cohorts_from_hash(identity_hash(attributes)) == cohorts_of(attributes)


def test_a_malformed_field_gives_no_cohort_and_never_raises():
    good = identity_hash({"country": "FR"})
    assert cohorts_from_hash({**good, "x:age": "{"}) == []
    assert cohorts_from_hash({**good, "p:locale": "not json"}) == []  # any malformed field of the hash
    assert cohorts_from_hash({**good, "other": "not json"}) == ["country:fr"]  # fields of neither kind: ignored


def test_cohort_names_are_bounded_lowercase_and_one_per_kind():
    for attributes in ({"age": a, "gender": "ÉLAN " * 20, "country": "Fr"} for a in range(0, 130, 7)):
        out = cohorts_of(attributes)
        kinds = [c.split(":", 1)[0] for c in out]
        assert kinds == ["age", "gender", "country"]
        assert all(c == c.lower() and len(c.split(":", 1)[1]) <= 64 for c in out)
    bands = [name for _upper, name in AGE_BANDS] + ["65+"]
    assert [age_band(a) for a in (0, 17.9, 18, 24, 25, 34, 35, 44, 45, 54, 55, 64, 65)] == [
        "0-17", "0-17", "18-24", "18-24", "25-34", "25-34", "35-44", "35-44", "45-54", "45-54", "55-64", "55-64",
        "65+"]
    assert {age_band(a) for a in range(130)} == set(bands)
