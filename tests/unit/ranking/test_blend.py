"""The dict ranking (aura/ranking/blend.py, pure): recency-weighted item-kNN, normalisation, per-placement
blending, filters and boosts, diversity (category caps, MMR), "users like you" (``users_knn``)."""

from __future__ import annotations

import pytest

from aura.ranking.blend import (
    DEFAULT_WEIGHTS,
    Diversity,
    Filters,
    apply_filters,
    blend,
    diversify,
    meta_of,
    normalise,
    rank,
    recency_knn,
    users_knn,
)

META = {
    "a": {"categories": ["books"], "price": 10.0, "available": True},
    "b": {"categories": ["books"], "price": 50.0, "available": True},
    "c": {"categories": ["toys"], "price": 5.0, "available": False},
    "d": {"categories": ["toys"], "price": 20.0, "available": True},
    "e": {"categories": ["home"], "price": None, "available": True},
}


def test_recency_knn_weights_newer_items_more():
    lists = [[("x", 1.0), ("y", 0.5)], [("y", 1.0), ("z", 1.0)]]
    s = recency_knn([("new", 1.0), ("old", 2.0)], lists, decay=0.5)
    assert s == {"x": 1.0, "y": 0.5 + 0.5 * 2.0 * 1.0, "z": 1.0}


def test_normalise_scales_to_one_and_handles_non_positive():
    assert normalise({"a": 2.0, "b": 1.0}) == {"a": 1.0, "b": 0.5}
    assert normalise({"a": -1.0, "b": -3.0}) == {"a": 1.0, "b": 0.0}
    assert normalise({}) == {}


def test_blend_sums_weighted_normalised_sources_and_explains():
    scores, why = blend({"cooc": {"a": 4.0, "b": 2.0}, "trending": {"b": 10.0}, "mf": {"a": 1.0}},
                        {"cooc": 1.0, "trending": 0.5, "mf": 0.0})
    assert scores == {"a": 1.0, "b": 0.5 + 0.5}
    assert why == {"a": ["cooc"], "b": ["cooc", "trending"]}


def test_filters_seen_ids_stock_category_price_and_boosts():
    scores = {k: 1.0 for k in META} | {"unknown": 1.0}
    assert set(apply_filters(scores, META, {"a"}, Filters())) == {"b", "d", "e", "unknown"}
    assert set(apply_filters(scores, META, set(), Filters(in_stock_only=False, exclude_seen=False))) == set(scores)
    assert set(apply_filters(scores, META, set(), Filters(exclude_ids=frozenset({"b"})))) == {"a", "d", "e",
                                                                                             "unknown"}
    assert set(apply_filters(scores, META, set(), Filters(include_ids=frozenset({"a", "c"})))) == {"a"}
    assert set(apply_filters(scores, META, set(), Filters(categories=frozenset({"books"})))) == {"a", "b"}
    assert set(apply_filters(scores, META, set(), Filters(exclude_categories=frozenset({"books"})))) == {
        "d", "e", "unknown"}
    assert set(apply_filters(scores, META, set(), Filters(min_price=8, max_price=30))) == {"a", "d"}
    boosted = apply_filters(scores, META, set(), Filters(boost_items={"d": 3.0}, boost_categories={"books": 2.0}))
    assert boosted["d"] == 3.0 and boosted["a"] == 2.0 and boosted["e"] == 1.0


def test_category_cap_and_mmr_diversify():
    ranked = [("a", 1.0), ("b", 0.95), ("d", 0.9), ("e", 0.5)]
    assert [i for i, _ in diversify(ranked, META, 3, Diversity(max_per_category=1))] == ["a", "d", "e"]
    assert [i for i, _ in diversify(ranked, META, 3, Diversity())] == ["a", "b", "d"]
    mmr = [i for i, _ in diversify(ranked, META, 3, Diversity(mmr_lambda=0.5))]
    assert mmr[:2] == ["a", "d"]  # b repeats a's category: pushed down
    assert [i for i, _ in diversify(ranked, META, 3, Diversity(mmr_lambda=1.0))] == ["a", "b", "d"]


def test_rank_end_to_end_is_deterministic():
    sources = {"cooc": {"a": 1.0, "b": 1.0, "c": 5.0}, "popular": {"d": 1.0}}
    out = rank(sources, {"cooc": 1.0, "popular": 0.1}, META, {"a"}, Filters(), Diversity(), 3)
    assert [(i, why) for i, _s, why in out] == [("b", ["cooc"]), ("d", ["popular"])]  # c out of stock, a seen
    assert out[0][1] == pytest.approx(0.2)


def test_meta_of_and_default_weights():
    assert meta_of(['["x"]', "2.5", "1", None]) == {"categories": ["x"], "price": 2.5, "available": True}
    assert meta_of([None, None, None, None]) is None
    assert meta_of(['["x"]', "", "1", "1"]) is None
    assert all(w >= 0 for ws in DEFAULT_WEIGHTS.values() for w in ws.values())


def test_users_knn_weighs_neighbours_and_recency():
    out = users_knn([("v", 1.0), ("w", 0.5)], [["i1|1|9|0", "i2|2|8|0"], ["i2|1|9|0"]], decay=0.5)
    assert out == {"i1": 1.0, "i2": 1.0 * 0.5 * 2 + 0.5 * 1}
