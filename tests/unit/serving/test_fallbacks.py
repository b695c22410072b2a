"""Degraded answers (serving/fallbacks.py): Redis first then Cassandra, and the stale popular list."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions as rexc
from cassandra.cluster import NoHostAvailable
from fastapi import Response

from serving.breakers import DependencyUnavailable
from serving.fallbacks import DEGRADED_HEADER, PopularCache, read_through, stale_popular


def run(coro):
    return asyncio.run(coro)


async def _value(v):
    return v


async def _redis_down():
    raise rexc.ConnectionError("refused")


def test_read_through_prefers_redis_then_cassandra_and_marks_degraded_answers():
    resp = Response()
    got = run(read_through(resp, lambda: _value({"a": 1}), lambda: _value({"a": 2})))
    assert (got.value, got.source) == ({"a": 1}, "redis") and DEGRADED_HEADER not in resp.headers
    got = run(read_through(resp, lambda: _value(None), lambda: _value({"a": 2})))
    assert (got.value, got.source) == ({"a": 2}, "cassandra") and DEGRADED_HEADER not in resp.headers
    got = run(read_through(resp, _redis_down, lambda: _value({"a": 2})))
    assert (got.value, got.source) == ({"a": 2}, "cassandra") and resp.headers[DEGRADED_HEADER] == "redis-down"


def test_read_through_raises_unavailable_when_no_store_answers():
    async def cassandra_down():
        raise NoHostAvailable("down", {})

    with pytest.raises(DependencyUnavailable) as err:
        run(read_through(Response(), _redis_down, cassandra_down))
    assert err.value.dependency == "redis+cassandra"
    with pytest.raises(DependencyUnavailable):
        run(read_through(Response(), _redis_down))


def test_popular_cache_survives_a_restart_and_marks_stale_answers(tmp_path):
    cache = PopularCache(path=tmp_path / "popular.json", snapshot_every_s=0)
    cache.remember([{"item_id": "a"}, {"item_id": "b"}, {"item_id": "c"}])
    cache.remember([{"item_id": "z"}], key="shoes")
    again = PopularCache(path=tmp_path / "popular.json")
    again.load()
    resp = Response()
    assert stale_popular(again, resp, limit=2) == [{"item_id": "a"}, {"item_id": "b"}]
    assert resp.headers[DEGRADED_HEADER] == "stale-popular"
    assert again.get("shoes") == [{"item_id": "z"}]
    assert again.get("unknown-category") == again.get("")  # falls back to the global list
    assert PopularCache().get() == []
