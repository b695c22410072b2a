"""The compact item filter record (aura/state/catalog.py), as contract checks: what the catalog agent
writes for an item document is what the ranking's filters read back (availability, price, categories),
for every shape of document; a deleted item is never shown; an unknown item has no record."""

from __future__ import annotations

import pytest

from aura.state.catalog import FILTER_DELETED, FILTER_SEP, filter_record, parse_filter_record


@pytest.mark.parametrize("doc, available", [
    ({}, True),
    ({"available": True, "stock": 3}, True),
    ({"available": False, "stock": 3}, False),
    ({"stock": 0}, False),
    ({"stock": None}, True),
    ({"available": 0}, False),
])
def test_availability_round_trips(doc, available):
    assert parse_filter_record(filter_record(doc))["available"] is available


@pytest.mark.parametrize("price", [None, 0, 5, 9.99, 1e-7, 123456789.125, -1.5])
def test_price_round_trips_exactly(price):
    got = parse_filter_record(filter_record({"price": price}))["price"]
    assert got == (None if price is None else float(price))


@pytest.mark.parametrize("categories, want", [
    (None, []),
    ([], []),
    (["books"], ["books"]),
    (["a|b", "c||d", "|"], ["a|b", "c||d", "|"]),  # split at the record's first two bars only
    ([f"x{FILTER_SEP}y", "z"], ["xy", "z"]),  # the separator is dropped from names
    (["ünï", "用户", " spaced "], ["ünï", "用户", " spaced "]),
    ([3, 4.5], ["3", "4.5"]),
])
def test_categories_round_trip(categories, want):
    doc = {"categories": categories, "price": 2.0, "stock": 1}
    assert parse_filter_record(filter_record(doc)) == {"available": True, "price": 2.0, "categories": want}


def test_deleted_and_unknown_items():
    assert parse_filter_record(FILTER_DELETED) == {"deleted": True, "available": False, "price": None,
                                                   "categories": []}
    assert parse_filter_record(None) is None
    assert all(filter_record(d) != FILTER_DELETED for d in ({}, {"categories": ["-"]}, {"available": False}))


def test_the_record_starts_with_the_availability():
    # SIMILAR_LUA keeps an item when its record starts with "1|" (aura/ranking/scripts.py)
    assert filter_record({"categories": ["1|"]}).startswith("1|")
    assert filter_record({"stock": 0, "categories": ["1|"]}).startswith("0|")


@pytest.mark.parametrize("brand, want", [("Acme", "Acme"), ("A|c\x1em\x1fe", "A|cme"), ("", None), (None, None)])
def test_brand_round_trips_and_old_records_have_none(brand, want):
    got = parse_filter_record(filter_record({"categories": ["a|b"], "brand": brand, "price": 1.0}))
    assert got["categories"] == ["a|b"] and got.get("brand") == want
    assert "brand" not in parse_filter_record("1|2.0|books")
