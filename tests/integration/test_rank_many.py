"""The batched ranking (aura/ranking/batch.py ``compute_many``, the campaign drainer's) against real
Redis: every request gets exactly ``Ranker.compute``'s answer (items, scores, sources, strategy), with
filters, preferences, boosts, diversity, users without history and mixed placements in one batch; and
the campaign messages' recommendations (``recommendations_many``) are those items with their metadata."""

from __future__ import annotations

import random
from typing import Any

import pytest

from aura.keys import RedisKeys
from aura.ranking.batch import compute_many
from aura.ranking.blend import Diversity, Filters
from aura.ranking.ranker import Ranker
from aura.ranking.request import Request
from aura.state.campaign_render import recommendations_many
from tests.integration.test_first_pass import run
from tests.integration.test_recs_serving import seed

pytestmark = [pytest.mark.integration]

SHAPES = [
    Request("u0"), Request("u2", limit=15), Request("u3", limit=1),
    Request("u0", filters=Filters(min_price=10, max_price=30)),
    Request("u2", filters=Filters(exclude_categories=frozenset({"a", "b"}))),
    Request("u3", filters=Filters(in_stock_only=False)),
    Request("u0", filters=Filters(boost_categories={"c": 2.0})),
    Request("u2", diversity=Diversity(max_per_category=1)),
    Request("u4"), Request("nobody"), Request("u1", placement="email"), Request("u0", limit=4),
]


def shape(result: Any) -> tuple[Any, ...]:
    return ([(i, round(s, 9), sorted(w)) for i, s, w in result.items], result.strategy, result.weights, result.model)


@pytest.mark.parametrize("seed_", [41, 42])
def test_compute_many_answers_as_compute(isolated, redis_client, seed_):
    k = RedisKeys(isolated.redis.prefix)
    seed(redis_client, k, random.Random(seed_))

    async def body(r: Any) -> tuple[list[Any], list[Any]]:
        ranker = Ranker(r, k)
        return await compute_many(ranker, SHAPES), [await ranker.compute(q) for q in SHAPES]

    many, one = run(isolated, body)
    assert len(many) == len(SHAPES)
    for q, got, want in zip(SHAPES, many, one, strict=True):
        assert shape(got) == shape(want), q
    assert any(r.items for r in many)  # the seeded state ranks something: the comparison is not vacuous


def test_recommendations_many_carry_metadata(isolated, redis_client):
    k = RedisKeys(isolated.redis.prefix)
    seed(redis_client, k, random.Random(43))
    redis_client.hset(k.recs_item_meta("i1"), mapping={"title": "Item one", "url": "https://x/i1"})

    async def body(r: Any) -> tuple[Any, Any]:
        ranker = Ranker(r, k)
        return (await recommendations_many(ranker, r, k, ["u0", "u2", "u0", "nobody"], 4),
                await compute_many(ranker, [Request(u, limit=4) for u in ("u0", "u2", "nobody")]))

    recs, ranked = run(isolated, body)
    assert set(recs) == {"u0", "u2", "nobody"}
    for u, res in zip(["u0", "u2", "nobody"], ranked, strict=True):
        assert [x["item_id"] for x in recs[u]] == [i for i, _s, _w in res.items][:4]
        assert len(recs[u]) == 4
        for x in recs[u]:
            title, url = redis_client.hmget(k.recs_item_meta(x["item_id"]), "title", "url")
            assert (x["title"], x["url"]) == (title or x["item_id"], url or "")
