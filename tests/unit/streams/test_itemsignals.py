"""The item side of the recommender signals (streams/itemsignals.py, aura/state/cooccurrence.py): an item
delta's fences per source partition, the item script's argument layout, and which neighbour lists are
republished, and how often (live, catching up)."""

from __future__ import annotations

import json
import time

import pytest

from aura.layout import RedisKeys
from aura.settings import Settings
from aura.state import trending
from aura.state.cooccurrence import ItemDelta, encode_published
from streams.durable import WriteBehind
from streams.itemsignals import ItemSignals, item_lua_args, log_trend, publish_split
from streams.runtime import Backlog, Resources


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


class _Pipe:
    def __init__(self, published: str | None) -> None:
        self.published, self.n = published, 0

    def hget(self, *_args: object) -> None:
        self.n += 1

    async def execute(self) -> list[str | None]:
        return [self.published] * self.n


class _Redis:
    """The publisher's Redis: the first pipeline reads when each list was published (10 s ago, at a
    tenth of the item's weight now); asking for a second one (the lists to republish) raises."""

    def __init__(self) -> None:
        self.pipelines = 0

    def register_script(self, _lua: str) -> object:
        return object()

    def pipeline(self, transaction: bool = False) -> _Pipe:
        self.pipelines += 1
        if self.pipelines > 1:
            raise RuntimeError("publishing")
        return _Pipe(encode_published(1.0, time.time() - 10.0))


def _items() -> ItemSignals:
    res = Resources(settings=Settings().replace(recs_publish_interval_s=5.0, recs_publish_max_age_s=60.0,
                                                recs_publish_min_growth=0.2),
                    redis=_Redis(), session=None, keys=RedisKeys("t"), durable=WriteBehind(1.0, 100))
    items = ItemSignals(res)
    items.dirty = {"i1"}
    items.pops = {"i1": 10.0}  # grew tenfold since its list was published
    return items


async def test_a_grown_list_is_republished_when_live() -> None:
    items = _items()
    assert not items.res.backlog.catching_up()
    with pytest.raises(RuntimeError, match="publishing"):
        await items.publish_due(force=True)


async def test_while_catching_up_only_lists_older_than_the_max_age_are_republished() -> None:
    items = _items()
    items.res.backlog.mark()
    assert await items.publish_due(force=True) == 0  # grown, but only 10 s old
    assert items.dirty == {"i1"}  # still due after the backlog
    items.res.backlog.behind_at -= Backlog.HOLD_S + 0.1  # the backlog has ended
    items.redis.pipelines = 0
    with pytest.raises(RuntimeError, match="publishing"):
        await items.publish_due(force=True)


def test_the_backlog_mark_lapses_after_its_hold() -> None:
    b = Backlog()
    assert not b.catching_up()
    b.mark()
    assert b.catching_up()
    b.behind_at -= Backlog.HOLD_S + 0.1
    assert not b.catching_up()
