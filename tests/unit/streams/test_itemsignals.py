"""The item side of the recommender signals (streams/itemsignals.py, aura/state/cooccurrence.py): an item
delta's fences per source partition, the item script's argument layout, and which neighbour lists are
republished."""

from __future__ import annotations

import json

from aura.state import trending
from aura.state.cooccurrence import ItemDelta
from streams.itemsignals import item_lua_args, log_trend, publish_split


def test_an_item_delta_counts_each_source_event_once_above_the_fence_of_its_partition():
    a = ItemDelta()
    assert not a.touch(5, 0, 5)               # at the stored fence of partition 0: dropped
    assert a.touch(5, 0, 7) and a.touch(5, 0, 7)  # the same event twice (an item and a pair): counted once
    a.hit(0, 7, 2000, 1.0)
    a.hit(0, 7, 2000, 2.0)                    # two lines of one order: one hit
    assert a.touch(None, 1, 2)
    a.hit(1, 2, 1500, 2.0)
    assert a.entries == 2 and a.weight == 5.0 and a.hits == [(2000, 3.0), (1500, 2.0)]
    assert a.fences == {0: (5, 7), 1: (None, 2)}
    assert not a.touch(5, 0, 6)               # below what the batch moved the fence to


def test_item_lua_argument_layout():
    a = ItemDelta()
    a.touch(None, 3, 9)
    a.hit(3, 9, 1, 1.0)
    a.cooc["b"] = 2.0
    largs = item_lua_args(a, 50, 1000.0)
    item = json.loads(largs[0])
    assert item["f"] == [["f:3", "", "9"]] and item["w"] == "1.0" and item["c"] == {"b": 2.0}
    assert item["b"] == {} and item["cap"] == "50" and item["t"] == repr(log_trend(a, 1000.0))
    assert log_trend(a, 1000.0) == trending.log_weight(1.0, 1, 1000.0)


def test_publish_split_republishes_new_grown_or_old_lists_and_keeps_the_rest_dirty():
    published = {"old": (10.0, 0.0), "grown": (10.0, 50.0), "same": (10.0, 50.0), "small": (10.0, 50.0)}
    pops = {"new": 1.0, "old": 10.5, "grown": 12.0, "same": 10.0, "small": 11.9}
    due, wait = publish_split({"new", "old", "grown", "same", "small"}, pops, published, now=70.0,
                              growth=0.2, max_age_s=60.0)
    # never published; published 70 s ago (>= max age); weight grew by 20%: now. Others wait, still dirty.
    assert due == ["grown", "new", "old"] and wait == {"same", "small"}
    # growth 0: every touched item
    assert publish_split({"same", "small"}, pops, published, 70.0, 0.0, 60.0) == (["same", "small"], set())


def test_publish_split_caps_a_pass_to_the_most_changed_lists():
    published = {"old": (10.0, 0.0), "grown": (10.0, 50.0), "doubled": (10.0, 50.0), "same": (10.0, 50.0)}
    pops = {"new": 1.0, "old": 10.5, "grown": 12.0, "doubled": 20.0, "same": 10.0}
    dirty = {"new", "old", "grown", "doubled", "same"}
    # never published first, then the largest growth; the rest stay dirty for the next pass
    assert publish_split(dirty, pops, published, 70.0, 0.2, 60.0, max_items=2) == (
        ["doubled", "new"], {"grown", "old", "same"})
    assert publish_split(dirty, pops, published, 70.0, 0.2, 60.0, max_items=3) == (
        ["doubled", "grown", "new"], {"old", "same"})
    assert publish_split(dirty, pops, published, 70.0, 0.2, 60.0, max_items=0) == ([], dirty)
    assert publish_split(dirty, pops, published, 70.0, 0.2, 60.0, max_items=10) == (
        publish_split(dirty, pops, published, 70.0, 0.2, 60.0))
