"""The vectorized ranking (aura/ranking/vector.py) against the dict ranking it twins (aura/ranking/blend.py):
the same blend on random sources; the pool's lazy filter pass (records decoded in score order until the
page is full) answers as the full pass; replies parsed the same in RESP2 and RESP3."""

from __future__ import annotations

import random

import numpy as np
import pytest

from aura.ranking.blend import Diversity, Filters, apply_filters, blend, recency_knn
from aura.ranking.vector import Candidates, flat_scores, pick_pool, rank_pool
from aura.state.catalog import FILTER_DELETED, filter_record, parse_filter_record


@pytest.mark.parametrize("seed", range(5))
def test_candidates_blend_as_the_dict_blend(seed: int) -> None:
    rng = random.Random(seed)
    items = [f"i{n}" for n in range(200)]
    weights = {"cooc": 1.0, "mf": 0.3, "trending": 0.05, "popular": 0.0, "content": 0.5}
    recent = [(rng.choice(items), float(rng.randint(1, 3))) for _ in range(4)]
    lists = [[(j, rng.random()) for j in rng.sample(items, 30)] for _ in recent]
    sources = {"cooc": recency_knn(recent, lists, 0.8),
               "mf": {i: rng.uniform(-2, 1) for i in rng.sample(items, 80)},
               "trending": {i: float(rng.randint(0, 3)) for i in rng.sample(items, 50)},
               "popular": {i: rng.random() for i in rng.sample(items, 50)},
               "content": {}}
    c = Candidates()
    for r, ((_item, w), lst) in enumerate(zip(recent, lists, strict=True)):
        c.add("cooc", [j for j, _s in lst], [s for _j, s in lst], factor=(0.8 ** r) * w)
    for name in ("mf", "trending", "popular"):
        c.add(name, list(sources[name]), list(sources[name].values()))
    total, masks = c.blend(weights)
    want, why = blend(sources, weights)
    got = {i: total[j] for i, j in c.index.items() if any(m[j] for m in masks.values())}
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert set(masks) == {"cooc", "mf", "trending"}
    assert {i: [s for s in ("cooc", "mf", "trending") if masks[s][c.index[i]]] for i in got} == why
    best = pick_pool(total, np.logical_or.reduce(list(masks.values())), 25)
    assert sorted(total[best].tolist(), reverse=True) == sorted(want.values(), reverse=True)[:25]


@pytest.mark.parametrize("seed", range(5))
def test_the_lazy_filter_pass_answers_as_the_full_pass(seed: int) -> None:
    rng = random.Random(seed)
    pool = [f"i{n}" for n in range(150)]
    scores = [rng.choice([1.0, 0.5, rng.random()]) for _ in pool]
    docs = [{"stock": rng.choice([None, 0, 3]), "price": rng.choice([None, 5.0, 20.0]),
             "categories": rng.sample(["a", "b", "c"], rng.randint(0, 2))} for _ in pool]
    records = [rng.choice([filter_record(d), filter_record(d), None, FILTER_DELETED]) for d in docs]
    seen = set(rng.sample(pool, 20))
    f = Filters(exclude_seen=rng.random() < 0.5, min_price=rng.choice([None, 4.0]),
                in_stock_only=rng.random() < 0.7)
    for limit in (1, 10, 40, 200):
        meta = {i: parse_filter_record(r) for i, r in zip(pool, records, strict=True)}
        kept = apply_filters(dict(zip(pool, scores, strict=True)), meta, seen, f)
        full = sorted(kept.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        assert rank_pool(pool, scores, records, seen, f, Diversity(), limit) == full


def test_replies_parse_the_same_in_resp2_and_resp3() -> None:
    ids2, s2 = flat_scores(["a", "1.5", "b", "-0.25"])
    ids3, s3 = flat_scores([["a", 1.5], ["b", -0.25]])
    assert ids2 == ids3 == ["a", "b"] and s2.tolist() == s3.tolist() == [1.5, -0.25]
    ids, s = flat_scores([])
    assert ids == [] and len(s) == 0
