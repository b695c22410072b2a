"""The response micro-cache of item-keyed reads (serving/respcache.py) against real Redis, with the fast
path and under FastAPI's own routing (one implementation): an item's similar list is served from the
cache until the TTL after the stream changed it, then the new list; the same parameters (the default
``limit`` spelled or not) hit; a caller without a key, without the scope or over its rate never gets the
cached body."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aura.keys import RedisKeys
from serving.app import create_app
from serving.respcache import ResponseCache
from tests.integration.test_fastpath import fastapi_only

pytestmark = [pytest.mark.integration]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ids(r: Any) -> list[str]:
    return [x["item_id"] for x in r.json()["items"]]


def cache_count(c: TestClient, route: str, result: str) -> float:
    text = c.get("/metrics").text
    m = re.search(rf'aura_api_cache_total{{result="{result}",route="{route}"}} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("fast", [True, False])
def test_cached_until_the_ttl_then_the_new_list(isolated, redis_client, api_key, fast):
    k = RedisKeys(isolated.redis.prefix)
    redis_client.zadd(k.recs_item_similar("i1", "cooc"), {"i2": 3.0, "i3": 1.0})
    redis_client.zadd(k.recs_item_bought("i1"), {"x": 1.0})  # (raw counts: not read by the route)
    redis_client.zadd(k.recs_item_similar("i1", "bought"), {"i4": 2.0})
    read = {"X-API-Key": api_key("read")}
    s = isolated.replace(**{"api_cache_ms": 2000})
    with TestClient(create_app(s) if fast else fastapi_only(create_app(s))) as c:
        clock = Clock()
        c.app.state.aura.response_cache = ResponseCache(2000, 100, clock=clock)
        hits = cache_count(c, "similar", "hit")
        first = c.get("/v1/recommendations/similar/i1", headers=read)
        assert first.status_code == 200 and ids(first) == ["i2", "i3"] and first.headers["x-aura-cache"] == "miss"
        # the stream republishes i1's list (and the catalog hides i2): the cached answer until the TTL
        redis_client.delete(k.recs_item_similar("i1", "cooc"))
        redis_client.zadd(k.recs_item_similar("i1", "cooc"), {"i5": 2.0, "i2": 1.0})
        redis_client.hset(k.recs_item_filters(), "i2", "-")
        clock.t += 1.999
        for path in ("/v1/recommendations/similar/i1", "/v1/recommendations/similar/i1?limit=10"):
            again = c.get(path, headers=read)
            assert again.headers["x-aura-cache"] == "hit", path
            assert again.content == first.content and again.headers["content-type"] == "application/json"
        assert cache_count(c, "similar", "hit") == hits + 2
        other = c.get("/v1/recommendations/similar/i1?limit=1", headers=read)  # other parameters: a miss
        assert other.headers["x-aura-cache"] == "miss" and ids(other) == ["i5"]
        bought = c.get("/v1/recommendations/also-bought/i1", headers=read)  # another route, same item
        assert bought.headers["x-aura-cache"] == "miss" and ids(bought) == ["i4"]
        clock.t += 0.001  # the TTL is over: the new list, without the hidden item
        fresh = c.get("/v1/recommendations/similar/i1", headers=read)
        assert fresh.headers["x-aura-cache"] == "miss" and ids(fresh) == ["i5"]
        assert c.get("/v1/recommendations/similar/i1", headers=read).headers["x-aura-cache"] == "hit"


@pytest.mark.parametrize("fast", [True, False])
def test_callers_who_may_not_read_never_get_the_cached_body(isolated, redis_client, api_key, fast):
    k = RedisKeys(isolated.redis.prefix)
    redis_client.zadd(k.recs_item_similar("i1", "cooc"), {"i2": 3.0, "i3": 1.0})
    read, events, slow = api_key("read"), api_key("events"), api_key("read", rate=0.001, burst=1)
    s = isolated.replace(**{"api_cache_ms": 60_000})
    with TestClient(create_app(s) if fast else fastapi_only(create_app(s))) as c:
        c.app.state.aura.response_cache = ResponseCache(60_000, 100, clock=Clock())
        path = "/v1/recommendations/similar/i1"
        cached = c.get(path, headers={"X-API-Key": read})
        assert c.get(path, headers={"X-API-Key": read}).headers["x-aura-cache"] == "hit"
        assert c.get(path, headers={"X-API-Key": slow}).status_code == 200  # its burst of one
        for headers, status in [({}, 401), ({"X-API-Key": "nonsense"}, 401), ({"X-API-Key": events}, 403),
                                ({"X-API-Key": slow}, 429)]:
            r = c.get(path, headers=headers)
            assert r.status_code == status, headers
            assert "x-aura-cache" not in r.headers and b'"items"' not in r.content and r.content != cached.content
        bad = c.get(path + "?limit=0", headers={"X-API-Key": read})  # invalid parameters: 422, not cached
        assert bad.status_code == 422 and "x-aura-cache" not in bad.headers
