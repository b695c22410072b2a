"""Explicit preferences applied by the ranking against real Redis: blocked items and "never"
categories are not served, other category and brand weights and the price range scale scores by the
documented factors, in the whole ranking and from the stream's pools (the same answers, and a
preference changed after a pool was ranked applies at once, read in the pool's one script call)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from aura.keys import RedisKeys
from aura.ranking.reader import Recommender
from aura.ranking.request import Request
from aura.state.catalog import filter_record, parse_filter_record
from tests.integration.test_user_cands import PLACEMENTS, accepted, cands, on_redis, shapes, state

pytestmark = [pytest.mark.integration]

CATS_W = {"b": -0.5, "c": 1.0}
BRANDS_W = {"acme": 0.6, "zed": -1.0}
BAND = {"min": 10.0, "max": 30.0}


def expected_factor(meta: dict[str, Any] | None) -> float:
    """The documented multipliers, spelled independently of aura/ranking: 1 + 0.5 w per category and
    brand weight, x 0.5 for a price outside the range."""
    if meta is None:
        return 1.0
    f = math.prod(1 + 0.5 * CATS_W[c] for c in meta["categories"] if c in CATS_W)
    f *= 1 + 0.5 * BRANDS_W.get(meta.get("brand") or "", 0.0)
    price = meta["price"]
    if price is not None and not BAND["min"] <= price <= BAND["max"]:
        f *= 0.5
    return f


def test_preferences_filter_and_scale_in_both_paths(isolated, redis_client):
    k = RedisKeys(isolated.redis.prefix)
    items = state(redis_client, k, 31)
    # brands on a third of the catalog (records written by the catalog agent carry them)
    for n, i in enumerate(items):
        raw = redis_client.hget(k.recs_item_filters(), i)
        meta = parse_filter_record(raw)
        if meta is not None and not meta.get("deleted") and n % 3:
            redis_client.hset(k.recs_item_filters(), i, filter_record({
                "available": meta["available"], "price": meta["price"], "categories": meta["categories"],
                "brand": "acme" if n % 3 == 1 else "zed"}))

    async def before(r: Any) -> list[Any]:
        rec = Recommender(r, k)
        return [await rec.compute(Request("u0", limit=40)), await rec.compute(Request("u0", limit=10))]

    plain, plain10 = on_redis(isolated, before)
    blocked = [i for i, _s, _w in plain10.items[:3]]
    redis_client.hset(k.user_attrs("u0"), mapping={
        "p:blocked_items": json.dumps(sorted(blocked)), "p:categories": json.dumps({"a": -1.0, **CATS_W}),
        "p:brands": json.dumps(BRANDS_W), "p:price_range": json.dumps(BAND)})

    async def after(r: Any) -> tuple[Any, list[Any], list[Any], list[Any]]:
        uc = cands(isolated, r)
        uc.note([accepted("u0", 100)])
        await uc.rank()
        rec = Recommender(r, k)
        whole40 = await rec.compute(Request("u0", limit=40))
        reqs = [q for pl in PLACEMENTS.split(",") for q in shapes("u0", pl)]
        return whole40, reqs, [await rec.from_precomputed(q) for q in reqs], [await rec.compute(q) for q in reqs]

    whole40, reqs, pooled, whole = on_redis(isolated, after)
    records = dict(zip(items, redis_client.hmget(k.recs_item_filters(), items), strict=True))
    served = [i for res in [whole40, *pooled, *whole] for i, _s, _w in res.items]
    assert served and not set(served) & set(blocked)
    assert not any("a" in (parse_filter_record(records[i]) or {}).get("categories", []) for i in served)
    # the pool answers as the whole ranking with the preferences applied
    for q, a, b in zip(reqs, pooled, whole, strict=True):
        assert a is not None, q
        assert a.items == b.items, q
    # each score is the unpersonalised score times the documented factor
    base = {i: s for i, s, _w in plain.items}
    checked = 0
    for i, s, _w in whole40.items:
        if i in base:
            assert s == pytest.approx(base[i] * expected_factor(parse_filter_record(records[i])), rel=1e-9), i
            checked += 1
    assert checked >= 10
    assert any(expected_factor(parse_filter_record(records[i])) != 1.0 for i, _s, _w in whole40.items)

    # a preference changed after the pool was ranked applies at once to the pool's answer
    top = pooled[0].items[0][0]
    redis_client.hset(k.user_attrs("u0"), "p:blocked_items", json.dumps(sorted([*blocked, top])))

    async def again(r: Any) -> Any:
        rec = Recommender(r, k)
        got = await rec.from_precomputed(reqs[0])
        rec.cands_script = None  # the Redis Cluster path reads the same fields in its pipeline
        return got, await rec.from_precomputed(reqs[0])

    got, piped = on_redis(isolated, again)
    assert got is not None and top not in [i for i, _s, _w in got.items]
    assert piped.items == got.items
