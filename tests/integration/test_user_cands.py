"""Per-user candidate pools ranked by the stream (streams/usercands.py) and read by the API
(aura/ranking/reader.py ``from_precomputed``), against real Redis: for every request the pool answers,
the answer equals the whole ranking (``Recommender.compute``, itself tested against the dict-based
reference in test_recs_serving.py) item for item, score for score and source for source, through the
script and through the Redis Cluster path, in ONE Redis call; the pool is fenced by the user's
recommender offset (not ranked before the user step applied the batch, never replaced by a pool of
an older state); other requests, changed placement weights and users without a pool take the
whole ranking. Pools on demand: a request without a usable pool marks the user; the worker ranks pools
for marked users (without any event of theirs) and, after their events, for users who asked lately;
a user who never asked gets none."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from aura import bootstrap
from aura.keys import RedisKeys
from aura.ranking.blend import Diversity, Filters
from aura.ranking.reader import Recommender, precomputable
from aura.ranking.request import Request
from aura.state.pools import wanted_member
from schemas.events import Behavior
from streams.intake import Accepted
from streams.usercands import WRITE_LUA, UserCands
from tests.integration.test_recs_serving import reference, seed

T = TypeVar("T")

pytestmark = [pytest.mark.integration]

PLACEMENTS = "default,homepage,product_page,with-users"
SHAPES = [
    Request("u0"), Request("u0", limit=1), Request("u0", limit=15),
    Request("u0", filters=Filters(in_stock_only=False)),
    Request("u0", filters=Filters(min_price=10, max_price=12)),  # drops most: the rest of the pool is read
    Request("u0", filters=Filters(min_price=49)),
    Request("u0", filters=Filters(exclude_categories=frozenset({"a", "b"}))),
    Request("u0", filters=Filters(boost_items={"i5": 5.0, "i6": 0.1}, boost_categories={"c": 2.0})),
    Request("u0", diversity=Diversity(max_per_category=1)),
    Request("u0", diversity=Diversity(mmr_lambda=0.6), limit=12),
]


def shapes(user: str, placement: str) -> list[Request]:
    out = []
    for q in SHAPES:
        r = Request(user, placement=placement, limit=q.limit, filters=q.filters, diversity=q.diversity)
        assert precomputable(r)
        out.append(r)
    return out


def state(redis_client: Any, k: RedisKeys, seed_: int) -> list[str]:
    items = seed(redis_client, k, random.Random(seed_))
    # cohorts (default weight 0.1) and "users like you" (a placement that weighs them) in the pools too
    redis_client.hset(k.user_attrs("u1"), mapping={"x:country": '"FR"', "x:age": "30"})
    redis_client.zadd(k.recs_cohort_popular("country:fr"), {i: float(n) for n, i in enumerate(items[:80])})
    redis_client.hset(k.recs_placement("with-users"), "weights", json.dumps({"users": 0.5, "cooc": 1.0,
                                                                            "popular": 0.1}))
    redis_client.zadd(k.recs_user_nbrs("u0"), {"u1": 2.0, "u2": 1.0})
    redis_client.hset(k.recs_placement("default"), mapping={"model_id": "ease", "version": "3"})
    for u in range(5):
        redis_client.hset(k.recs_user_state(f"u{u}"), "_off", 100 + u)
    return items


def accepted(user: str, offset: int) -> Accepted:
    return Accepted(Behavior(f"e{user}{offset}", "view", user, "i1", 1000), 0, offset)


def cands(isolated: Any, r: Any) -> UserCands:
    s = isolated.replace(**{"recs_user_cands_placements": PLACEMENTS})
    return UserCands(SimpleNamespace(settings=s, keys=RedisKeys(s.redis.prefix), redis=r))


def on_redis(settings: Any, body: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``body`` with an async Redis client of ``settings``, closed afterwards."""

    async def run() -> T:
        r = bootstrap.redis_async(settings)
        try:
            return await body(r)
        finally:
            await r.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("seed_", [21, 22])
def test_pools_answer_as_the_whole_ranking(isolated, redis_client, seed_, redis_round_trips):
    k = RedisKeys(isolated.redis.prefix)
    state(redis_client, k, seed_)
    users = ["u0", "u1", "u2", "u3", "u4", "nohistory"]

    async def body(r: Any) -> tuple[list[Any], list[Any], list[Any], list[Any], int]:
        uc = cands(isolated, r)
        uc.note([accepted(u, 100 + n) for n, u in enumerate(users[:5])] + [accepted("nohistory", 7)])
        uc.pending["nohistory"] = (7, -1e9)  # no recommender state at all: ranked after the wait
        ranked = await uc.rank()
        rec = Recommender(r, k)
        reqs = [q for u in users for pl in PLACEMENTS.split(",") for q in shapes(u, pl)]
        pooled = [await rec.from_precomputed(q) for q in reqs]
        whole = [await rec.compute(q) for q in reqs]
        rec.cands_script = None  # the Redis Cluster path
        piped = [await rec.from_precomputed(q) for q in reqs]
        return reqs, pooled, whole, piped, ranked

    reqs, pooled, whole, piped, ranked = on_redis(isolated, body)
    assert ranked == len(users)
    for q, a, b, c in zip(reqs, pooled, whole, piped, strict=True):
        assert a is not None, q
        assert (a.items, a.strategy, a.weights, a.model) == (b.items, b.strategy, b.weights, b.model), q
        assert (c.items, c.strategy, c.weights, c.model) == (b.items, b.strategy, b.weights, b.model), q
    assert sum(len(a.items) for a in pooled) > 500  # not vacuous
    assert any("cohort" in w for a in pooled for _i, _s, w in a.items)
    assert any("users" in w for a in pooled for _i, _s, w in a.items)
    assert pooled[0].model == "ease:3" and pooled[0].strategy == "hybrid"
    assert any(a.strategy == "hybrid:cold_start" for a in pooled)
    # and the default placement's answers equal the dict-based reference (which knows no cohorts: u1 has
    # some; and cuts its pool before dropping seen items, which differs when a price filter exhausts it)
    for q, a in zip(reqs, pooled, strict=True):
        if q.placement == "default" and q.user_id not in ("nohistory", "u1") and q.filters.min_price is None:
            want = reference(redis_client, k, q)
            assert [i for i, _s, _w in a.items] == [i for i, _s, _w in want], q
            assert [s for _i, s, _w in a.items] == pytest.approx([s for _i, s, _w in want], rel=1e-9), q

    # ONE Redis call per request the pool answers; requests it does not answer, the whole ranking
    counted = redis_round_trips

    async def serve(q: Request) -> tuple[Any, list[int]]:
        r = bootstrap.redis_async(isolated)
        try:
            counted.clear()
            got = await Recommender(r, k).recommend(q)
            return got, list(counted)
        finally:
            await r.aclose()

    got, calls = asyncio.run(serve(Request("u0")))
    assert calls == [1] and got.items == pooled[0].items
    for q in [Request("u0", context_item="i3"), Request("u0", filters=Filters(categories=frozenset({"a"}))),
              Request("u0", filters=Filters(exclude_seen=False)), Request("u0", limit=16),
              Request("u0", method="collaborative"), Request("u0", filters=Filters(exclude_ids=frozenset({"i1"})))]:
        assert not precomputable(q)
        _got, calls = asyncio.run(serve(q))
        # straight to the whole ranking; a fresh process first loads the MF item factors (one HSCAN
        # page; then at most every ``mf_items_refresh_s``, behind the requests) and reads the
        # placement's batch lists name (``Ranker.resolve_batch``: once a second per placement; the
        # pool's script call refreshes it)
        assert calls[:3] == [1, 1, 9], q
    _got, calls = asyncio.run(serve(Request("u9")))  # no pool: one call, then the whole ranking
    assert calls[:3] == [1, 1, 9]
    # the placement's weights changed after the pools were ranked: the whole ranking, with the new weights
    redis_client.hset(k.recs_placement("default"), "weights", json.dumps({"popular": 1.0}))
    got, calls = asyncio.run(serve(Request("u0")))
    assert calls[:3] == [1, 1, 9] and got.weights == {"popular": 1.0}
    assert all(w == ["popular"] for _i, _s, w in got.items)


def test_pools_are_fenced_by_the_user_offset(isolated, redis_client):
    k = RedisKeys(isolated.redis.prefix)
    state(redis_client, k, 23)

    async def body(r: Any) -> None:
        uc = cands(isolated, r)
        # the user step has not applied offset 150 yet (_off 100): not ranked, still pending
        uc.note([accepted("u0", 150)])
        assert await uc.rank() == 0
        assert not await r.exists(k.recs_user_cands("u0", "default")) and "u0" in uc.pending
        await r.hset(k.recs_user_state("u0"), "_off", 150)
        assert await uc.rank() == 1 and not uc.pending
        assert await r.hget(k.recs_user_cands("u0", "default"), "off") == "150"
        assert 0 < await r.pttl(k.recs_user_cands("u0", "default")) <= 3600 * 1000
        # a pool ranked from an older state (another worker, before a rebalance) does not replace it
        write = r.register_script(WRITE_LUA)
        assert await write(keys=[k.recs_user_cands("u0", "default"), k.recs_user_state("u0")],
                           args=[120, 1, 60_000, "ids", "x"]) == 0
        assert await r.hget(k.recs_user_cands("u0", "default"), "ids") != "x"
        # a pool ranked from a state that is gone now (the user was erased meanwhile) is not written;
        # a cold user's pool (ranked without any state: fence -1) is
        gone = [k.recs_user_cands("u9", "default"), k.recs_user_state("u9")]
        assert await write(keys=gone, args=[5, 1, 60_000, "ids", "x"]) == 0 and not await r.exists(gone[0])
        assert await write(keys=gone, args=[-1, 1, 60_000, "ids", "x"]) == 1 and await r.exists(gone[0])
        # a redelivered batch (offsets at or below the fence) ranks the same pool again
        before = await r.hgetall(k.recs_user_cands("u0", "default"))
        uc.note([accepted("u0", 140)])
        assert await uc.rank() == 1
        after = await r.hgetall(k.recs_user_cands("u0", "default"))
        assert {f: v for f, v in after.items() if f != "time"} == {f: v for f, v in before.items() if f != "time"}
        # the user's state moves (a new recent item): the next batch's pool follows it
        await r.lpush(k.recs_user_seq("u0"), "i9|3|2000|0")
        await r.hset(k.recs_user_state("u0"), "_off", 151)
        rec = Recommender(r, k)
        assert await rec.from_precomputed(Request("u0")) is None  # ranked before the user's last event
        rec.cands_script = None
        assert await rec.from_precomputed(Request("u0")) is None  # (the Redis Cluster path too)
        uc.note([accepted("u0", 151)])
        assert await uc.rank() == 1
        assert await r.hget(k.recs_user_cands("u0", "default"), "ids") != before["ids"]
        got = await Recommender(r, k).from_precomputed(Request("u0"))
        assert got is not None and got.items == (await Recommender(r, k).compute(Request("u0"))).items

    on_redis(isolated, body)


def test_a_request_without_a_usable_pool_marks_the_user_a_hit_does_not(isolated, redis_client):
    k = RedisKeys(isolated.redis.prefix)
    state(redis_client, k, 24)
    wanted = k.recs_cands_wanted()

    def mark(user: str, placement: str = "default") -> float | None:
        return redis_client.zscore(wanted, wanted_member(placement, user))

    async def body(r: Any) -> None:
        rec = Recommender(r, k, wanted_placements=["default"], wanted_max=100)
        before = time.time() * 1000
        got = await rec.recommend(Request("u0"))  # no pool yet: the whole ranking, and u0 is marked
        assert got.items and before - 1 <= mark("u0") <= time.time() * 1000 + 1
        await rec.recommend(Request("u1", context_item="i3"))  # a request no pool answers: no mark
        await rec.recommend(Request("u1", placement="homepage"))  # a placement without pools: no mark
        await Recommender(r, k).recommend(Request("u2"))  # pools off (nothing to mark for)
        assert mark("u1") is None and mark("u1", "homepage") is None and mark("u2") is None
        plain = Recommender(r, k, wanted_placements=["default"], wanted_max=100)
        plain.cands_script = None  # the Redis Cluster path marks too (one more call, on a miss only)
        await plain.recommend(Request("u3"))
        assert mark("u3") is not None
        # u0's pool ranked: a hit writes nothing
        uc = cands(isolated, r)
        uc.pending = {"u0": (-1, -math.inf)}
        assert await uc.rank() == 1
        await r.zrem(wanted, wanted_member("default", "u0"))
        assert await rec.from_precomputed(Request("u0")) is not None and mark("u0") is None
        # a pool older than the refresh age is still served, and re-ranked behind (u0 marked)
        aged = Recommender(r, k, wanted_placements=["default"], wanted_max=100, refresh_ms=60_000)
        assert await aged.from_precomputed(Request("u0")) is not None and mark("u0") is None  # young: no mark
        await r.hset(k.recs_user_cands("u0", "default"), "time", int(time.time() * 1000) - 61_000)
        assert await aged.from_precomputed(Request("u0")) is not None and mark("u0") is not None
        await r.zrem(wanted, wanted_member("default", "u0"))
        aged.cands_script = None  # (the Redis Cluster path: one more call)
        assert await aged.from_precomputed(Request("u0")) is not None and mark("u0") is not None
        await r.zrem(wanted, wanted_member("default", "u0"))
        assert await rec.from_precomputed(Request("u0")) is not None and mark("u0") is None  # refresh off
        # u0's next event applied (the fence moved): the pool is stale, u0 is wanted again
        await r.hset(k.recs_user_state("u0"), "_off", 151)
        assert await rec.from_precomputed(Request("u0")) is None and mark("u0") is not None
        # bounded: the oldest marks go first
        small = Recommender(r, k, wanted_placements=["default"], wanted_max=3)
        await r.delete(wanted)
        for n in range(5):
            await small.recommend(Request(f"new{n}"))
            await asyncio.sleep(0.002)  # distinct millisecond scores
        assert await r.zrange(wanted, 0, -1) == [wanted_member("default", f"new{n}") for n in (2, 3, 4)]

    on_redis(isolated, body)


def test_the_worker_ranks_pools_only_for_users_who_asked(isolated, redis_client):
    k = RedisKeys(isolated.redis.prefix)
    state(redis_client, k, 25)
    wanted = k.recs_cands_wanted()

    async def body(r: Any) -> None:
        uc = cands(isolated, r)
        api = Recommender(r, k, wanted_placements=PLACEMENTS.split(","), wanted_max=100)
        await api.recommend(Request("u0"))  # a miss: u0 asks, without any new event of u0
        assert await uc.refresh() == 1
        got = await api.from_precomputed(Request("u0"))
        assert got is not None and got.items == (await api.compute(Request("u0"))).items
        assert await uc.refresh() == 0  # drained once: not ranked again without a reason
        # u1 never asked: its new event costs one ZMSCORE entry, no pool
        uc.note([accepted("u1", 101)])
        assert await uc.refresh() == 0 and "u1" not in uc.pending
        assert not any([await r.exists(k.recs_user_cands("u1", pl)) for pl in PLACEMENTS.split(",")])
        # u0 asked lately: its new event re-ranks its pool (no request in between)
        await r.lpush(k.recs_user_seq("u0"), "i9|3|2000|0")
        await r.hset(k.recs_user_state("u0"), "_off", 150)
        uc.note([accepted("u0", 150)])
        assert await uc.refresh() == 1
        assert await r.hget(k.recs_user_cands("u0", "default"), "off") == "150"
        assert await api.from_precomputed(Request("u0")) is not None
        # u2 asked, but longer ago than recs_user_cands_wanted_s: its event ranks nothing; the mark is trimmed
        old = time.time() * 1000 - isolated.recs.user_cands_wanted_s * 1000 - 60_000
        await r.zadd(wanted, {wanted_member("default", "u2"): old})
        uc.note([accepted("u2", 102)])
        assert await uc.refresh() == 0 and not await r.exists(k.recs_user_cands("u2", "default"))
        assert await r.zscore(wanted, wanted_member("default", "u2")) is None
        # a worker started later (the first one stopped, its drain lease lapsed) takes the asks of the
        # last wanted_s (the pools it may have missed)
        await api.recommend(Request("u3"))
        await r.delete(k.recs_cands_drain_lease())
        late = cands(isolated, r)
        assert await late.refresh() >= 1 and await r.exists(k.recs_user_cands("u3", "default"))

    on_redis(isolated, body)


def test_one_worker_of_the_group_drains_the_wanted_set(isolated, redis_client):
    k = RedisKeys(isolated.redis.prefix)
    state(redis_client, k, 26)

    async def body(r: Any) -> None:
        a, b = cands(isolated, r), cands(isolated, r)
        api = Recommender(r, k, wanted_placements=["default"], wanted_max=100)
        await api.recommend(Request("u0"))
        assert await a.refresh() == 1  # a takes the lease and ranks u0's pool
        await api.recommend(Request("u1"))
        assert await b.refresh() == 0 and not await r.exists(k.recs_user_cands("u1", "default"))
        assert await a.refresh() == 1 and await r.exists(k.recs_user_cands("u1", "default"))
        # a's lease lapses (a stopped): b takes over and drains what is asked from then on
        await r.delete(k.recs_cands_drain_lease())
        await api.recommend(Request("u2"))
        assert await b.refresh() >= 1 and await r.exists(k.recs_user_cands("u2", "default"))
        await api.recommend(Request("u3"))
        assert await a.refresh() == 0 and await b.refresh() == 1

    on_redis(isolated, body)
