"""Catalog items as stored (aura/state/items.py): the meta hash round trip, availability, tombstones and
the newest-change-wins rule."""

from __future__ import annotations

import pytest

from aura.state.items import deleted_fields, is_deleted, latest, meta_fields, parse_meta
from schemas.events import CatalogChange


def change(item_id: str, t: int, etype: str = "upsert", title: str = "x") -> CatalogChange:
    return CatalogChange(event_id=f"{item_id}{t}", event_type=etype, item_id=item_id, event_time=t,
                         item=None if etype == "delete" else {"title": title}, raw={})


def test_latest_change_wins_and_older_than_stored_is_ignored():
    out = latest([change("a", 5, title="old"), change("a", 9, title="new"), change("b", 3), change("c", 4, "delete")],
                 {"b": 7, "c": 1})
    assert out["a"].item["title"] == "new" and "b" not in out and out["c"].event_type == "delete"


def test_meta_fields_round_trip_and_availability():
    item = {"title": "T", "categories": ["c"], "tags": ["t"], "price": 9.5, "stock": 0, "available": True,
            "text": "body", "metadata": {"year": "1995"}, "brand": None}
    doc = parse_meta(meta_fields(item, 123))
    assert doc["categories"] == ["c"] and doc["price"] == pytest.approx(9.5) and doc["stock"] == 0
    assert doc["available"] is False  # stock 0
    assert doc["metadata"] == {"year": "1995"} and doc["event_time"] == 123
    assert parse_meta(meta_fields({**item, "stock": None}, 1))["available"] is True


def test_meta_hash_stored_text_and_every_field():
    item = {"title": "T", "categories": ["c", "d"], "tags": ["t"], "brand": "B", "price": 10, "stock": 3,
            "available": True, "text": "body", "metadata": {"year": "1995"}}
    raw = meta_fields(item, 123)
    assert raw == {"title": "T", "categories": '["c", "d"]', "tags": '["t"]', "brand": "B", "price": "10.0",
                   "stock": "3", "available": "1", "text": "body", "metadata": '{"year": "1995"}',
                   "event_time": "123"}
    assert parse_meta(raw) == {"title": "T", "categories": ["c", "d"], "tags": ["t"], "brand": "B", "price": 10.0,
                               "stock": 3, "available": True, "text": "body", "metadata": {"year": "1995"},
                               "event_time": 123}
    empty = parse_meta(meta_fields({"title": "x"}, 5))
    assert empty == {"title": "x", "categories": [], "tags": [], "brand": None, "price": None, "stock": None,
                     "available": True, "text": None, "metadata": {}, "event_time": 5}
    assert meta_fields({"title": "x", "available": False}, 5)["available"] == "0"


def test_deleted_items_are_tombstones_with_their_time():
    raw = deleted_fields(77)
    assert raw == {"deleted": "1", "event_time": "77"} and is_deleted(raw)
    assert not is_deleted(meta_fields({"title": "x"}, 5))
