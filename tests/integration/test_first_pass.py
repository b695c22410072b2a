"""The bounded first pass of a user without a candidate pool (``Ranker.bounded``, served by
``Recommender.recommend`` when the request finds no usable pool and marks it wanted), against real Redis:
it is the whole ranking over the heads of the lists (the reference ranking with the bounds), so it
excludes seen items and respects filters and explicit preferences; with lists and a history shorter
than the bounds it equals the whole ranking; requests no pool answers still take the whole ranking."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import numpy as np
import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.ranking.blend import Diversity, Filters
from aura.ranking.factors import ItemFactors
from aura.ranking.reader import Recommender
from aura.ranking.request import Request
from aura.state.catalog import filter_record
from aura.state.cooccurrence import USER_MF, encode_vector
from aura.state.pools import wanted_member
from tests.integration.test_recs_serving import CATS, reference, seed

pytestmark = [pytest.mark.integration]

BOUNDS = (50, 10, 3)  # candidates, list_k, recent
SHAPES = [
    Request("u0"), Request("u2", limit=15), Request("u3", limit=1),
    Request("u0", filters=Filters(min_price=10, max_price=30)),
    Request("u2", filters=Filters(exclude_categories=frozenset({"a", "b"}))),
    Request("u3", filters=Filters(in_stock_only=False)),
    Request("u0", filters=Filters(boost_categories={"c": 2.0})),
    Request("u2", diversity=Diversity(max_per_category=1)),
    Request("u4"),  # history, no model candidates
    Request("nobody"),  # no history at all: the global lists
]


def run(settings: Any, body: Any) -> Any:
    async def go() -> Any:
        r = bootstrap.redis_async(settings)
        try:
            return await body(r)
        finally:
            await r.aclose()

    return asyncio.run(go())


def ids(result: Any) -> list[str]:
    return [i for i, _s, _w in result.items]


@pytest.mark.parametrize("seed_", [31, 32])
def test_the_first_pass_is_the_whole_ranking_over_the_heads(isolated, redis_client, seed_):
    k = RedisKeys(isolated.redis.prefix)
    seed(redis_client, k, random.Random(seed_))
    seen = {u: set(redis_client.zrange(k.recs_user_seen(u), 0, -1)) for u in ("u0", "u2", "u3", "u4")}

    async def body(r: Any) -> list[tuple[Any, Any, Any, Any]]:
        rec = Recommender(r, k, wanted_placements=["default"], wanted_max=100, first_pass=BOUNDS)
        assert rec.first_pass is not None and rec.first_pass.first_script is not None
        piped = rec.bounded(*BOUNDS)
        piped.first_script = None  # the Redis Cluster path: the three round trips, bounded
        return [(await rec.recommend(q), await rec.first_pass.compute(q), await rec.compute(q),
                 await piped.compute(q)) for q in SHAPES]

    for q, (served, first, whole, piped) in zip(SHAPES, run(isolated, body), strict=True):
        assert ids(served) == ids(first) == ids(piped), q  # no pool: the request is answered by the first pass
        bounded = Request(q.user_id, limit=q.limit, filters=q.filters, diversity=q.diversity, recent_n=3)
        want = reference(redis_client, k, bounded, n=50, list_k=10)
        assert ids(first) == [i for i, _s, _w in want], q
        assert [s for _i, s, _w in first.items] == pytest.approx([s for _i, s, _w in want], rel=1e-9), q
        assert [sorted(w) for *_x, w in first.items] == [sorted(w) for *_x, w in want], q
        assert len(first.items) == len(whole.items) == q.limit, q  # a full page, as the whole ranking
        assert not set(ids(first)) & seen.get(q.user_id or "", set()), q
    served_u0 = redis_client.zscore(k.recs_cands_wanted(), wanted_member("default", "u0"))
    assert served_u0 is not None  # the worker ranks u0's pool for the next requests


def test_the_first_pass_respects_explicit_preferences(isolated, redis_client):
    k = RedisKeys(isolated.redis.prefix)
    seed(redis_client, k, random.Random(33))

    async def body(r: Any) -> tuple[Any, Any]:
        rec = Recommender(r, k, wanted_placements=["default"], wanted_max=100, first_pass=BOUNDS)
        before = await rec.recommend(Request("u0", limit=20))
        blocked = ids(before)[:3]
        await r.hset(k.user_attrs("u0"), mapping={"p:blocked_items": json.dumps(blocked),
                                                  "p:categories": json.dumps({"a": -1, "c": 1.5})})
        return blocked, await rec.recommend(Request("u0", limit=20))

    blocked, after = run(isolated, body)
    assert after.items and not set(blocked) & set(ids(after))
    cats = {i: json.loads(redis_client.hget(k.recs_item_meta(i), "categories") or "[]") for i in ids(after)}
    assert all("a" not in c for c in cats.values()), cats


def short_state(r: Any, k: RedisKeys) -> None:
    """Every list shorter than the bounds: 2 recent items, 8 neighbours per list, 30 candidates, a cohort."""
    rng = random.Random(34)
    items = [f"i{n}" for n in range(60)]
    pipe = r.pipeline(transaction=False)
    for n, i in enumerate(items):
        pipe.hset(k.recs_item_meta(i), mapping={"categories": json.dumps([CATS[n % 6]]), "price": str(n),
                                               "available": "1"})
        pipe.hset(k.recs_item_filters(), i, filter_record({"categories": [CATS[n % 6]], "price": float(n),
                                                           "available": True}))
        for src in ("cooc", "content", "ease", "bought"):
            pipe.zadd(k.recs_item_similar(i, src), {j: rng.random() for j in rng.sample(items, 8) if j != i})
    pipe.zadd(k.recs_popular(), {i: rng.random() for i in rng.sample(items, 30)})
    pipe.zadd(k.recs_trending(), {i: rng.random() for i in rng.sample(items, 30)})
    hist = rng.sample(items, 2)
    pipe.rpush(k.recs_user_seq("s0"), *[f"{i}|2|{100 - n}|0" for n, i in enumerate(hist)])
    pipe.zadd(k.recs_user_seen("s0"), {i: n for n, i in enumerate(hist)})
    nrng = np.random.default_rng(34)  # MF factors of 30 items: 30 MF candidates
    pipe.hset(k.recs_mf_items(), mapping={i: encode_vector(nrng.standard_normal(9).astype(np.float32))
                                          for i in rng.sample(items, 30)})
    pipe.hset(k.recs_user_state("s0"), USER_MF, encode_vector(nrng.standard_normal(8).astype(np.float32)))
    pipe.zadd(k.recs_user_batch("s0", "ease"), {i: rng.random() for i in rng.sample(items, 30)})
    pipe.hset(k.user_attrs("s0"), mapping={"x:country": '"FR"', "x:age": "30"})  # a cohort (weight 0.1)
    pipe.zadd(k.recs_cohort_popular("country:fr"), {i: float(n) for n, i in enumerate(items[:20])})
    pipe.execute()


def test_with_short_lists_the_first_pass_equals_the_whole_ranking(isolated, redis_client):
    k = RedisKeys(isolated.redis.prefix)
    short_state(redis_client, k)
    reqs = [Request("s0"), Request("s0", limit=5), Request("s0", filters=Filters(max_price=40)),
            Request("s0", filters=Filters(exclude_categories=frozenset({"a"})))]

    async def body(r: Any) -> list[tuple[Any, Any]]:
        rec = Recommender(r, k, wanted_placements=["default"], wanted_max=100, first_pass=BOUNDS)
        return [(await rec.recommend(q), await rec.compute(q)) for q in reqs]

    for q, (first, whole) in zip(reqs, run(isolated, body), strict=True):
        assert first.items and first.strategy == whole.strategy == "hybrid", q
        assert first.items == whole.items, q
        assert any("cohort" in w for *_x, w in first.items), q


def test_requests_no_pool_answers_take_the_whole_ranking(isolated, redis_client):
    """Only a request the pool would answer (and that marked it wanted) takes the first pass."""
    k = RedisKeys(isolated.redis.prefix)
    seed(redis_client, k, random.Random(35))

    async def body(r: Any) -> None:
        rec = Recommender(r, k, wanted_placements=["default"], wanted_max=100, first_pass=BOUNDS)
        assert rec.first_pass is not None
        calls: list[Request] = []
        real = rec.first_pass.compute

        async def counted(q: Request, raw: Any = None) -> Any:
            calls.append(q)
            return await real(q, raw)

        rec.first_pass.compute = counted  # type: ignore[method-assign]
        for q in (Request("u0", context_item="i3"), Request("u0", placement="homepage"),
                  Request("u0", filters=Filters(categories=frozenset({"b"}))), Request("u0", method="collaborative")):
            got = await rec.recommend(q)
            assert ids(got) == ids(await rec.compute(q)), q
        assert calls == []
        await rec.recommend(Request("u1"))
        assert [q.user_id for q in calls] == ["u1"]
        # pools off, or the first pass off: the whole ranking
        assert Recommender(r, k, first_pass=BOUNDS).first_pass is None
        assert Recommender(r, k, wanted_placements=["default"], wanted_max=100).first_pass is None

    run(isolated, body)


def test_a_first_request_is_one_script_call_and_one_hmget(isolated, redis_client, redis_round_trips):
    """The pool read brings the first pass's reads on a miss (``COLD_LUA``): a user without a pool costs
    two round trips, the same answer as the first pass read on its own; a stale pool (ranked before the
    user's last event) is a miss too; a usable pool is served by the one call."""
    k = RedisKeys(isolated.redis.prefix)
    seed(redis_client, k, random.Random(36))
    reqs = [Request("u0"), Request("u2", limit=15), Request("u4"), Request("nobody"),
            Request("u3", filters=Filters(min_price=10, max_price=30))]

    async def body(r: Any) -> list[tuple[Any, Any, list[int]]]:
        # the MF item factors loaded once (a reload behind a request would be a round trip of its own)
        rec = Recommender(r, k, wanted_placements=["default"], wanted_max=100, first_pass=BOUNDS,
                          factors=ItemFactors(r, k, refresh_s=3600))
        assert rec.first_pass is not None
        await rec.recommend(Request("warm"))  # the placement's batch lists and the MF item factors read once
        out = []
        for q in reqs:
            del redis_round_trips[:]
            served = await rec.recommend(q)
            trips = list(redis_round_trips)
            out.append((served, await rec.first_pass.compute(q), trips))
        return out

    for q, (served, alone, trips) in zip(reqs, run(isolated, body), strict=True):
        # COLD_LUA, then the HMGET of the best candidates' filter records (a second one when the filters
        # drop too many of the first ones, as in the whole ranking)
        assert trips == [1, 1] if q.filters == Filters() else trips[:2] == [1, 1] and len(trips) <= 3, (q, trips)
        assert served.items == alone.items and served.strategy == alone.strategy, q
        assert served.items, q
    wanted = {m for m in redis_client.zrange(k.recs_cands_wanted(), 0, -1)}
    assert {wanted_member("default", q.user_id or "") for q in reqs} <= wanted
