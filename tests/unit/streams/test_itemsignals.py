"""The item side of the recommender signals (streams/itemsignals.py): the pure merge of item entries with
its fences per item and source partition, the item script's argument layout, and which neighbour lists
are republished."""

from __future__ import annotations

import json

from aura.state.cooccurrence import Entry
from streams.itemsignals import fold_items, item_lua_args, publish_split


def test_fold_items_applies_each_entry_once_per_item_and_source_partition():
    items = {("a", 0): [Entry(5, 1000, 1.0, {"b": 1.0}, {}), Entry(7, 2000, 1.0, {"b": 0.5, "c": 1.0}, {"c": 1.0})],
             ("a", 1): [Entry(2, 1500, 2.0, {}, {})]}
    out = fold_items(items, {("a", 0): 5, ("a", 1): None}, 3600_000.0)["a"]
    assert out.entries == 2 and out.weight == 3.0
    assert dict(out.cooc) == {"b": 0.5, "c": 1.0} and dict(out.bought) == {"c": 1.0}
    assert out.fences == {0: (5, 7), 1: (None, 2)}
    # a replay of the same entries changes nothing once the fences moved
    again = fold_items(items, {("a", 0): 7, ("a", 1): 2}, 3600_000.0)["a"]
    assert again.entries == 0 and again.weight == 0.0


def test_item_lua_argument_layout():
    a = fold_items({("a", 3): [Entry(9, 1, 1.0, {"b": 2.0}, {})]}, {}, 1000.0)["a"]
    largs = item_lua_args(a, 50)
    item = json.loads(largs[0])
    assert item["f"] == [["f:3", "", "9"]] and item["w"] == "1.0" and item["c"] == ["b", "2.0"]
    assert item["b"] == [] and item["cap"] == "50" and item["t"] != ""


def test_publish_split_republishes_new_grown_or_old_lists_and_keeps_the_rest_dirty():
    published = {"old": (10.0, 0.0), "grown": (10.0, 50.0), "same": (10.0, 50.0), "small": (10.0, 50.0)}
    pops = {"new": 1.0, "old": 10.5, "grown": 12.0, "same": 10.0, "small": 11.9}
    due, wait = publish_split({"new", "old", "grown", "same", "small"}, pops, published, now=70.0,
                              growth=0.2, max_age_s=60.0)
    # never published; published 70 s ago (>= max age); weight grew by 20%: now. Others wait, still dirty.
    assert due == ["grown", "new", "old"] and wait == {"same", "small"}
    # growth 0: every touched item
    assert publish_split({"same", "small"}, pops, published, 70.0, 0.0, 60.0) == (["same", "small"], set())
