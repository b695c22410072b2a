"""serving/respcache.py's pure parts: entries expire after the TTL (injected clock), the size is
bounded (least recently used first), keys ignore the parameters' order, and ``cached_json`` keeps
neither errors nor degraded answers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import Response
from pydantic import BaseModel

from serving.fallbacks import mark_degraded
from serving.respcache import ResponseCache, cache_key, cached_json


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_an_entry_lives_for_the_ttl_then_is_gone() -> None:
    clock = Clock()
    c = ResponseCache(500, 10, clock=clock)
    k = cache_key("similar", {"item_id": "i1", "limit": 10})
    assert c.get(k) is None
    c.put(k, b"a")
    clock.t += 0.499
    assert c.get(k) == b"a"
    clock.t += 0.001
    assert c.get(k) is None and k not in c.entries  # expired entries are dropped
    c.put(k, b"b")  # stored again: a new TTL from now
    clock.t += 0.3
    assert c.get(k) == b"b"


def test_the_size_is_bounded_least_recently_used_out_first() -> None:
    c = ResponseCache(1000, 3, clock=Clock())
    keys = [cache_key("similar", {"item_id": f"i{n}"}) for n in range(4)]
    for n, k in enumerate(keys[:3]):
        c.put(k, b"%d" % n)
    assert c.get(keys[0]) == b"0"  # used: now the most recent
    c.put(keys[3], b"3")
    assert len(c.entries) == 3
    assert c.get(keys[1]) is None  # the least recently used went
    assert [c.get(k) for k in (keys[0], keys[2], keys[3])] == [b"0", b"2", b"3"]


def test_keys_same_parameters_in_another_order_are_one_key_others_are_not() -> None:
    a = cache_key("similar", {"item_id": "i1", "limit": 10})
    assert a == cache_key("similar", {"limit": 10, "item_id": "i1"})
    assert a != cache_key("similar", {"item_id": "i1", "limit": 11})
    assert a != cache_key("similar", {"item_id": "i2", "limit": 10})
    assert a != cache_key("also_bought", {"item_id": "i1", "limit": 10})
    c = ResponseCache(1000, 10, clock=Clock())
    c.put(a, b"x")
    assert c.get(cache_key("similar", {"limit": 10, "item_id": "i1"})) == b"x"
    assert c.get(cache_key("similar", {"limit": 5, "item_id": "i1"})) is None


class Out(BaseModel):
    item_id: str
    n: int


def state(ttl_ms: int = 1000) -> Any:
    return SimpleNamespace(response_cache=ResponseCache(ttl_ms, 10, clock=Clock()))


def serve(st: Any, render: Any, params: dict[str, Any] | None = None) -> Response:
    return asyncio.run(cached_json(st, "similar", params or {"item_id": "i1"}, render))


def test_cached_json_serves_the_stored_bytes_and_says_hit_or_miss() -> None:
    st, calls = state(), []

    async def render(_sub: Response) -> Out:
        calls.append(1)
        return Out(item_id="i1", n=len(calls))

    first, second = serve(st, render), serve(st, render)
    assert first.body == second.body == b'{"item_id":"i1","n":1}' and len(calls) == 1
    assert (first.headers["x-aura-cache"], second.headers["x-aura-cache"]) == ("miss", "hit")
    assert second.headers["content-type"] == "application/json"
    off = state(ttl_ms=0)  # AURA_API_CACHE_MS=0: every call renders, no header
    assert [serve(off, render).body for _ in range(2)] == [b'{"item_id":"i1","n":2}', b'{"item_id":"i1","n":3}']
    assert "x-aura-cache" not in serve(off, render).headers


def test_cached_json_keeps_no_error_and_no_degraded_answer() -> None:
    st, calls = state(), []

    async def failing(_sub: Response) -> Out:
        calls.append(1)
        raise RuntimeError("redis down")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            serve(st, failing)
    assert len(calls) == 2 and not st.response_cache.entries

    async def degraded(sub: Response) -> Out:
        calls.append(1)
        mark_degraded(sub, "stale-popular")
        return Out(item_id="i1", n=len(calls))

    a, b = serve(st, degraded), serve(st, degraded)
    assert a.headers["x-aura-degraded"] == "stale-popular" and a.headers["x-aura-cache"] == "miss"
    assert a.body != b.body and not st.response_cache.entries
