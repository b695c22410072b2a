"""Every model type the registry stores (aura/models/registry.py) survives a serialize/restore round trip
unchanged: same type, same state, same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from aura.errors import AuraError
from aura.models.content import ContentModel, ContentSimilarity
from aura.models.ease import EASE
from aura.models.factors import ALS, BPR
from aura.models.itemknn import ItemKNN
from aura.models.mf import OnlineMF
from aura.models.popularity import Popularity
from aura.models.registry import MODEL_TYPES, RegistryError, model_class, restore
from aura.models.trending import Trending


def X() -> sparse.csr_matrix:
    rng = np.random.default_rng(5)
    return sparse.csr_matrix((rng.random((30, 8)) < 0.3).astype(np.float32))


def trained(kind: str):
    if kind == "ease":
        m = EASE(10.0).fit(X())
        m.ids = [f"i{k}" for k in range(8)]
        return m
    if kind == "item_knn":
        return ItemKNN(3).fit(X())
    if kind == "popularity":
        return Popularity().fit(X())
    if kind == "online_mf":
        m = OnlineMF(dim=4, seed=1)
        for u in range(5):
            for i in range(6):
                m.learn_one(f"u{u}", f"i{(u + i) % 7}")
        return m
    if kind == "content_tfidf":
        return ContentModel().fit({"a": {"title": "red apple", "categories": ["fruit"]},
                                   "b": {"title": "green apple", "categories": ["fruit"]},
                                   "c": {"title": "blue car", "categories": ["car"]}})
    if kind == "trending":
        t = Trending(3600_000.0)
        t.learn_one("a", 1.0, 1_000_000)
        t.learn_one("b", 2.0, 2_000_000)
        return t
    if kind == "als":
        return ALS(factors=4, iterations=3).fit(X())
    if kind == "bpr":
        return BPR(factors=4, iterations=5).fit(X())
    if kind == "content_similarity":
        return ContentSimilarity(3).fit_items([f"i{k}" for k in range(8)], {
            f"i{k}": {"title": f"{'red' if k % 2 else 'blue'} thing", "categories": ["c"]} for k in range(7)})
    raise AssertionError(f"add {kind} to the contract test")


def predictions(kind: str, m) -> object:
    if kind in ("ease", "item_knn", "popularity", "als", "bpr", "content_similarity"):
        return np.asarray(m.scores(X()[:5]))
    if kind == "online_mf":
        return (m.score("u1"), m.top("u2", 3, exclude={"i1"}), m.pv_error)
    if kind == "content_tfidf":
        return m.similar_all(2)
    return m.top(5, 3_000_000)


@pytest.mark.parametrize("kind", sorted(MODEL_TYPES))
def test_round_trip_keeps_type_state_and_predictions(kind):
    m = trained(kind)
    assert isinstance(m, model_class(kind))
    back = restore(kind, m.to_bytes())
    assert type(back) is type(m)
    p1, p2 = predictions(kind, m), predictions(kind, back)
    if isinstance(p1, np.ndarray):
        np.testing.assert_array_equal(p1, p2)
    elif kind == "online_mf":
        np.testing.assert_array_equal(p1[0], p2[0])
        assert p1[1] == p2[1] and p1[2] == p2[2]
    else:
        assert p1 == p2


def test_ease_keeps_its_item_index():
    m = trained("ease")
    assert restore("ease", m.to_bytes()).ids == m.ids


def test_unknown_type_is_refused():
    with pytest.raises(RegistryError):
        model_class("nope")
    assert issubclass(RegistryError, AuraError) and issubclass(RegistryError, ValueError)
