"""The lean request path of the hybrid ranker (aura/ranking) against real Redis: the same
answers as the dict-based reference (the pre-vectorized implementation, kept here verbatim in its
pure parts: ``recency_knn``/``normalise``/``blend``/``rank`` over per-item ``meta`` hashes), for
every filter, boost, diversity option, context item and cold start; and a bounded number of Redis
commands per request (three round trips, no per-item reads)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import numpy as np
import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.ranking.blend import (
    DEFAULT_WEIGHTS,
    METHOD_SOURCES,
    Diversity,
    Filters,
    blend,
    meta_of,
    normalise,
    rank,
    recency_knn,
    similar_read,
    similar_reference,
)
from aura.ranking.reader import Recommender
from aura.ranking.request import Request
from aura.state.catalog import FILTER_DELETED, filter_record
from aura.state.cooccurrence import USER_MF, decode_vector, encode_vector

pytestmark = [pytest.mark.integration]

N_ITEMS, CATS = 400, ["a", "b", "c", "d", "e", "f"]


def seed(r: Any, k: RedisKeys, rng: random.Random) -> list[str]:
    items = [f"i{n}" for n in range(N_ITEMS)]
    pipe = r.pipeline(transaction=False)
    for n, i in enumerate(items):
        doc = {"categories": rng.sample(CATS, rng.randint(0, 2)), "price": None if n % 9 == 0 else float(n % 50),
               "available": n % 11 != 0}
        if n % 37 == 5:  # not in the catalog at all
            pass
        else:
            pipe.hset(k.recs_item_meta(i), mapping={"categories": json.dumps(doc["categories"]),
                                                   "price": "" if doc["price"] is None else repr(doc["price"]),
                                                   "available": "1" if doc["available"] else "0"})
            pipe.hset(k.recs_item_filters(), i, filter_record(doc))
        for src in ("cooc", "content", "ease", "bought"):
            nb = rng.sample(items, 60)
            pipe.zadd(k.recs_item_similar(i, src), {j: rng.random() for j in nb if j != i})
    pipe.zadd(k.recs_popular(), {i: rng.random() * 100 for i in rng.sample(items, 300)})
    pipe.zadd(k.recs_trending(), {i: rng.random() * 10 for i in rng.sample(items, 250)})
    for c in CATS:
        pipe.zadd(k.recs_trending(c), {i: rng.random() * 10 for i in rng.sample(items, 40)})
    # MF factors whose scores are exact in float32 (quarters; a bias below a quarter, one per item: no
    # ties), so that the reference's sums equal the reader's matrix product whatever the order
    nrng = np.random.default_rng(rng.randrange(2**32))
    pipe.hset(k.recs_mf_items(), mapping={
        i: encode_vector(np.append(nrng.integers(-8, 9, 8) / 4, n / 2048).astype(np.float32))
        for n, i in enumerate(items)})
    for u in range(5):
        user = f"u{u}"
        hist = rng.sample(items, 30)
        pipe.rpush(k.recs_user_seq(user), *[f"{i}|{rng.choice([1, 2, 3])}|{1000 - n}|0" for n, i in enumerate(hist)])
        pipe.zadd(k.recs_user_seen(user), {i: n for n, i in enumerate(hist)})
        if u != 4:  # u4: no model candidates
            pipe.hset(k.recs_user_state(user), USER_MF, encode_vector(nrng.integers(-2, 3, 8).astype(np.float32)))
            pipe.zadd(k.recs_user_batch(user, "ease"), {i: rng.random() for i in rng.sample(items, 200)})
    pipe.execute()
    return items


def reference(r: Any, k: RedisKeys, req: Request, n: int = 200, list_k: int = 50) -> list[tuple[str, float, list[str]]]:
    """The pre-vectorized Recommender.recommend, synchronous, over the per-item meta hashes."""
    raw = r.hget(k.recs_placement(req.placement), "weights")
    base = json.loads(raw) if raw else DEFAULT_WEIGHTS.get(req.placement, DEFAULT_WEIGHTS["default"])
    allowed = METHOD_SOURCES[req.method]
    weights = {a: v for a, v in base.items() if a in allowed} or {a: 1.0 for a in allowed}
    cats = req.filters.categories or (frozenset(req.preferred_categories) if req.preferred_categories else None)
    uid = req.user_id
    seq, seen, mf, batch = [], set(), {}, {}
    if uid:
        seq = [x.rsplit("|", 3) for x in r.lrange(k.recs_user_seq(uid), 0, req.recent_n - 1)]
        seen = set(r.zrange(k.recs_user_seen(uid), 0, -1))
        raw_mf = r.hget(k.recs_user_state(uid), USER_MF)
        if raw_mf:  # the user's factors against every item's (bias last), the best n
            u = decode_vector(raw_mf).astype(float)
            vs = {i: decode_vector(b).astype(float) for i, b in r.hgetall(k.recs_mf_items()).items()}
            mf = dict(sorted(((i, float(v[:-1] @ u + v[-1])) for i, v in vs.items()), key=lambda t: -t[1])[:n])
        batch = dict(r.zrevrange(k.recs_user_batch(uid, req.batch_model), 0, n - 1, withscores=True))
    trend_keys = [k.recs_trending(c) for c in sorted(cats)] if cats else [k.recs_trending()]
    trend: dict[str, float] = {}
    for tk in trend_keys:
        for rank_, i in enumerate(r.zrevrange(tk, 0, n - 1)):
            trend[i] = max(trend.get(i, 0.0), 1.0 / (1 + rank_))
    popular = {i: 1.0 / (1 + q) for q, i in enumerate(r.zrevrange(k.recs_popular(), 0, n - 1))}
    recent = [(e[0], float(e[1])) for e in seq[: req.recent_n]]
    if req.context_item:
        recent = [(req.context_item, 2.0), *[x for x in recent if x[0] != req.context_item]]
    sources: dict[str, dict[str, float]] = {"mf": mf, "trending": trend, "popular": popular}
    if batch:
        sources["ease"] = batch
    for src in [s for s in ("cooc", "content", "bought", "ease") if weights.get(s, 0) > 0]:
        if not recent:
            continue
        lists = [r.zrevrange(k.recs_item_similar(i, src), 0, list_k - 1, withscores=True) for i, _ in recent]
        knn = recency_knn(recent, lists, req.recent_decay)
        if src == "ease" and "ease" in sources:
            merged = normalise(sources["ease"])
            for i, s in normalise(knn).items():
                merged[i] = merged.get(i, 0.0) + 0.5 * s
            sources["ease"] = merged
        else:
            sources[src] = knn
    sources = {s: v for s, v in sources.items() if weights.get(s, 0) > 0 and v}
    if not any(sources.values()):
        sources, weights = {"popular": popular}, {"popular": 1.0}
    sources = {name: normalise(v) for name, v in sources.items()}
    scores, _ = blend(sources, weights, normalised=True)
    f = req.filters
    ok = {i for i in scores if i not in f.exclude_ids and (f.include_ids is None or i in f.include_ids)}
    pool = sorted(ok, key=lambda i: (-scores[i], i))[: max(req.limit * 20, 300)]
    if f.exclude_seen:
        pool = [i for i in pool if i not in seen]
    metas = {i: meta_of(r.hmget(k.recs_item_meta(i), ["categories", "price", "available", "deleted"])) for i in pool}
    trimmed = {name: {i: v for i, v in src.items() if i in set(pool)} for name, src in sources.items()}
    return rank(trimmed, weights, metas, seen, f, req.diversity, req.limit, normalised=True)


REQUESTS = [
    Request("u0"),
    Request("u1", limit=30),
    Request("u2", context_item="i7"),
    Request("u3", placement="product_page", context_item="i9"),
    Request("u0", placement="cart"),
    Request("u1", placement="homepage", limit=20),
    Request("u4"),  # history, no model candidates
    Request("nobody"),  # cold start
    Request(None, context_item="i3"),  # anonymous visitor on a product page
    Request("nobody", preferred_categories=["a", "c"]),
    Request("u0", method="collaborative"),
    Request("u1", method="content"),
    Request("u2", method="trending"),
    Request("u3", method="popular"),
    Request("u0", filters=Filters(categories=frozenset({"b"}))),
    Request("u1", filters=Filters(exclude_categories=frozenset({"a", "b"}), min_price=10, max_price=30)),
    Request("u2", filters=Filters(exclude_seen=False, in_stock_only=False)),
    Request("u3", filters=Filters(exclude_ids=frozenset({"i1", "i2", "i3"}))),
    Request("u0", filters=Filters(boost_items={"i5": 5.0}, boost_categories={"c": 2.0})),
    Request("u1", diversity=Diversity(max_per_category=2), limit=15),
    Request("u2", diversity=Diversity(mmr_lambda=0.6)),
]


@pytest.mark.parametrize("seed_", [1, 2])
def test_lean_path_answers_as_the_reference(isolated, redis_client, seed_):
    k = RedisKeys(isolated.redis.prefix)
    items = seed(redis_client, k, random.Random(seed_))
    reqs = [*REQUESTS, Request("u4", filters=Filters(include_ids=frozenset(items[::3])))]

    async def run(cluster: bool) -> list[Any]:
        r = bootstrap.redis_async(isolated)
        try:
            rec = Recommender(r, k)
            if cluster:  # the Redis Cluster path: pipelined neighbour lists merged in the API
                rec.knn_script = None
            return [await rec.recommend(q) for q in reqs]
        finally:
            await r.aclose()

    got = asyncio.run(run(False))
    piped = asyncio.run(run(True))
    for q, res, res2 in zip(reqs, got, piped, strict=True):
        assert [i for i, _s, _w in res.items] == [i for i, _s, _w in res2.items], q
        want = reference(redis_client, k, q)
        assert [i for i, _s, _w in res.items] == [i for i, _s, _w in want], q
        assert [s for _i, s, _w in res.items] == pytest.approx([s for _i, s, _w in want], rel=1e-9), q
        assert [sorted(w) for _i, _s, w in res.items] == [sorted(w) for _i, _s, w in want], q
        assert res.items or q.method == "content", q  # every request here has an answer
    assert got[7].strategy == "hybrid:cold_start" and got[0].strategy == "hybrid"


def test_deleted_items_are_never_served_and_commands_are_few(isolated, redis_client, redis_round_trips):
    k = RedisKeys(isolated.redis.prefix)
    seed(redis_client, k, random.Random(3))
    counted = redis_round_trips

    async def run(req: Request) -> Any:
        r = bootstrap.redis_async(isolated)
        try:
            return await Recommender(r, k).recommend(req)
        finally:
            await r.aclose()

    first = asyncio.run(run(Request("u0")))
    # hybrid, default placement, no pool ranked by the stream (streams/usercands.py: one script call that
    # finds none), then the whole ranking: the process's first loads the MF item factors (one HSCAN
    # page), then one round trip of 9 commands (placement, sequence, seen, MF factors, EASE, user
    # neighbours, attributes, trending, popular), one script call for the kNN of 10 recent items x 3
    # weighted list sources, one HMGET of filter records
    assert counted == [1, 1, 9, 1, 1]
    top = first.items[0][0]
    redis_client.hset(k.recs_item_filters(), top, FILTER_DELETED)  # as the catalog agent does on delete
    again = asyncio.run(run(Request("u0")))
    assert top not in [i for i, _s, _w in again.items] and len(again.items) == 10


def test_user_neighbours_exactly_once_and_served_as_a_source(isolated, redis_client):
    """streams/neighbours.py against real Redis: a redelivered batch changes nothing, an overlapping
    one adds only what lies above the fences (as if only the new events came); the hybrid with a
    ``users`` weight serves what the neighbours did lately, the same through the script and through
    the Redis Cluster path."""
    from types import SimpleNamespace

    from schemas.events import Behavior
    from streams.intake import Accepted
    from streams.neighbours import NeighbourStore

    k = RedisKeys(isolated.redis.prefix)
    rng = random.Random(5)
    users = [f"u{rng.randrange(8)}" for _ in range(200)]  # a user's events come from one partition
    events = [Accepted(Behavior(f"e{n}", "view", u, f"i{rng.randrange(12)}", 1000 + n), int(u[1:]) % 2, n)
              for n, u in enumerate(users)]

    async def state(r: Any) -> dict[str, dict[str, float]]:
        return {u: dict(await r.zrange(k.recs_user_nbrs(u), 0, -1, withscores=True)) for u in sorted(set(users))}

    async def run() -> tuple[dict, dict, dict, dict]:
        r = bootstrap.redis_async(isolated)
        try:
            store = NeighbourStore(SimpleNamespace(settings=isolated, keys=k, redis=r))
            await store.apply(events[:120])
            first = await state(r)
            await store.apply(events[:120])  # redelivered whole
            again = await state(r)
            await store.apply(events[100:])  # overlapping redelivery
            overlap = await state(r)
            for key in await r.keys(f"{isolated.redis.prefix}:recs:*"):
                await r.delete(key)
            await store.apply(events[:120])
            await store.apply(events[120:])
            return first, again, overlap, await state(r)
        finally:
            await r.aclose()

    first, again, overlap, clean = asyncio.run(run())
    assert any(first.values()) and again == first
    assert overlap != first
    for u in clean:
        assert overlap[u] == pytest.approx(clean[u]), u

    # served: u0's neighbours' recent items, weighted by similarity and recency
    seed(redis_client, k, random.Random(6))
    redis_client.hset(k.recs_placement("with-users"), "weights", json.dumps({"users": 1.0}))
    redis_client.delete(k.recs_user_nbrs("u0"))
    redis_client.zadd(k.recs_user_nbrs("u0"), {"u1": 2.0, "u2": 1.0})

    async def serve(cluster: bool) -> Any:
        r = bootstrap.redis_async(isolated)
        try:
            rec = Recommender(r, k)
            if cluster:
                rec.users_script = None
            return await rec.recommend(Request("u0", placement="with-users", limit=20,
                                               filters=Filters(exclude_seen=False, in_stock_only=False)))
        finally:
            await r.aclose()

    lua, piped = asyncio.run(serve(False)), asyncio.run(serve(True))
    assert lua.items and [i for i, _s, _w in lua.items] == [i for i, _s, _w in piped.items]
    assert {i for i, _s, _w in lua.items} <= {x.split("|")[0] for u in ("u1", "u2")
                                             for x in redis_client.lrange(k.recs_user_seq(u), 0, 9)}
    assert all(w == ["users"] for _i, _s, w in lua.items)


def test_cohort_popularity_exactly_once_and_demographic_cold_start(isolated, redis_client):
    """streams/cohorts.py against real Redis: a redelivered or overlapping batch counts each event once;
    a new user whose profile says country FR gets FR's popular items first (cold start), a user
    without attributes the global popular list."""
    from types import SimpleNamespace

    from schemas.events import Behavior
    from streams.cohorts import CohortStore
    from streams.intake import Accepted

    s = isolated.replace(**{"recs_cohort_cap": 1000})
    k = RedisKeys(s.redis.prefix)
    # members: fr1, fr2 (country FR, 25-34), us1 (US); identity attributes as streams/identity.py writes them
    redis_client.hset(k.user_attrs("fr1"), mapping={"x:country": '"FR"', "x:age": "30"})
    redis_client.hset(k.user_attrs("fr2"), mapping={"x:country": '"fr"'})
    redis_client.hset(k.user_attrs("us1"), mapping={"x:country": '"US"', "x:age": "31"})
    redis_client.hset(k.user_attrs("newfr"), mapping={"x:country": '"FR"'})
    views = [("fr1", "croissant"), ("fr2", "croissant"), ("fr1", "baguette"), ("us1", "bagel"), ("us1", "bagel"),
             ("us1", "bagel"), ("anon", "bagel")]
    parts = {"fr1": 0, "fr2": 1, "us1": 0, "anon": 1}
    events = [Accepted(Behavior(f"e{n}", "view", u, i, 1000 + n), parts[u], n) for n, (u, i) in enumerate(views)]

    async def run() -> None:
        r = bootstrap.redis_async(s)
        try:
            store = CohortStore(SimpleNamespace(settings=s, keys=k, redis=r))
            await store.apply(events[:4])
            await store.apply(events[:4])  # redelivered
            await store.apply(events[2:])  # overlapping
        finally:
            await r.aclose()

    asyncio.run(run())
    assert dict(redis_client.zrange(k.recs_cohort_popular("country:fr"), 0, -1, withscores=True)) == {
        "croissant": 2.0, "baguette": 1.0}
    assert dict(redis_client.zrange(k.recs_cohort_popular("age:25-34"), 0, -1, withscores=True)) == {
        "croissant": 1.0, "baguette": 1.0, "bagel": 3.0}
    redis_client.zadd(k.recs_popular(), {"bagel": 4.0, "croissant": 2.0, "baguette": 1.0})

    async def serve(user: str) -> Any:
        r = bootstrap.redis_async(s)
        try:
            return await Recommender(r, k).recommend(Request(user, limit=3, filters=Filters(in_stock_only=False)))
        finally:
            await r.aclose()

    fr, nobody = asyncio.run(serve("newfr")), asyncio.run(serve("stranger"))
    assert fr.strategy == "hybrid:cold_start" and [i for i, _s, _w in fr.items][:2] == ["croissant", "baguette"]
    assert "cohort" in fr.items[0][2]
    assert [i for i, _s, _w in nobody.items][0] == "bagel"


@pytest.mark.parametrize("seed_", [11, 12, 13])
def test_similar_items_one_script_call_answers_as_the_reference(isolated, redis_client, seed_):
    """``SIMILAR_LUA`` (one script call) and the Redis Cluster path (pipeline + HMGET) give the answer
    of the former route code (``similar_reference``) on random lists: ties, negative and zero scores
    (the other ``normalise`` branch), the item in its own list, deleted / unavailable / unknown items,
    empty and missing lists."""
    k = RedisKeys(isolated.redis.prefix)
    rng = random.Random(seed_)
    items = [f"i{n}" for n in range(120)]
    pipe = redis_client.pipeline(transaction=False)
    for n, i in enumerate(items):
        kind = n % 7
        if kind == 1:
            pipe.hset(k.recs_item_filters(), i, FILTER_DELETED)
        elif kind == 2:
            pipe.hset(k.recs_item_filters(), i, filter_record({"available": False, "price": 3.0}))
        elif kind != 3:  # kind 3: not in the catalog (shown)
            pipe.hset(k.recs_item_filters(), i, filter_record({"stock": 0 if kind == 4 else 5,
                                                               "categories": ["a"]}))
        for src in ("cooc", "ease", "content", "bought"):
            if rng.random() < 0.15:
                continue  # no list for this source
            nb = rng.sample(items, rng.randint(1, 90))
            style = rng.random()
            if style < 0.2:
                scores = {j: float(rng.randint(0, 3)) for j in nb}  # many ties, zeros
            elif style < 0.35:
                scores = {j: rng.uniform(-2, 0.5) for j in nb}  # negative: the min-max branch
            elif style < 0.45:
                scores = {j: -1.0 for j in nb}  # constant negative: span 0
            else:
                scores = {j: rng.random() for j in nb}
            pipe.zadd(k.recs_item_similar(i, src), scores)
    pipe.execute()
    shapes = [({"cooc": 1.0, "ease": 0.7, "content": 0.4}, 10), ({"bought": 1.0}, 10),
              ({"cooc": 1.0, "ease": 0.7, "content": 0.4}, 1), ({"content": 1.0}, 25),
              ({"cooc": 1.0, "ease": 0.7, "content": 0.4}, 100)]

    def want(item: str, sources: dict[str, float], limit: int) -> list[tuple[str, float]]:
        lists = [(w, [(j, float(s)) for j, s in redis_client.zrevrange(k.recs_item_similar(item, src), 0,
                                                                        similar_read(limit) - 1, withscores=True)])
                 for src, w in sources.items()]
        records = dict(zip(items, redis_client.hmget(k.recs_item_filters(), items), strict=True))
        return similar_reference(item, lists, records, limit)

    async def run(cluster: bool) -> list[list[tuple[str, float]]]:
        r = bootstrap.redis_async(isolated)
        try:
            rec = Recommender(r, k)
            if cluster:
                rec.similar_script = None
            return [await rec.similar(i, sources, limit) for i in [*items, "unknown"] for sources, limit in shapes]
        finally:
            await r.aclose()

    lua, piped = asyncio.run(run(False)), asyncio.run(run(True))
    expected = [want(i, sources, limit) for i in [*items, "unknown"] for sources, limit in shapes]
    assert lua == expected  # exactly: same items, same order, same floating-point scores
    assert piped == expected
    assert sum(map(len, expected)) > 1000  # not vacuous
    deleted = {i for n, i in enumerate(items) if n % 7 in (1, 2, 4)}
    assert not deleted & {j for lst in lua for j, _s in lst}
    assert any(j in {i for n, i in enumerate(items) if n % 7 == 3} for lst in lua for j, _s in lst)
