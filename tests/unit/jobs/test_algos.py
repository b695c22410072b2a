"""Offline evaluation (jobs/algos.py): recommendations exclude interacted items, leave-last-out, HR@k and
NDCG@k, the interaction matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import sparse

from aura.models.ease import EASE
from jobs.algos import evaluate, hit_rate_at_k, interaction_matrix, leave_last_out, ndcg_at_k, recommend_all


def tiny() -> sparse.csr_matrix:
    rng = np.random.default_rng(3)
    return sparse.csr_matrix((rng.random((12, 6)) < 0.45).astype(np.float32))


def test_recommend_all_excludes_interacted_items():
    X = tiny()
    dense = X.toarray()
    k = int((dense == 0).sum(axis=1).min())
    assert k >= 1
    idx = recommend_all(EASE(1.0).fit(X), X, k)
    assert all(dense[r, j] == 0 for r in range(X.shape[0]) for j in idx[r])


def test_leave_last_out_holds_out_the_latest_and_breaks_ties_by_input_order():
    rows = [("u1", "a", 1), ("u1", "b", 3), ("u1", "c", 3), ("u1", "d", 2), ("u2", "x", 5)]
    train, test = leave_last_out(rows)
    assert test == {"u1": "c"}  # b and c share t=3; c is listed later
    assert sorted(train) == [("u1", "a", 1), ("u1", "b", 3), ("u1", "d", 2), ("u2", "x", 5)]


def test_hit_rate_and_ndcg():
    ranked = ["a", "b", "c"]
    assert hit_rate_at_k(ranked, "b", 10) == 1.0
    assert hit_rate_at_k(ranked, "z", 10) == 0.0
    assert hit_rate_at_k(ranked, "c", 2) == 0.0
    assert ndcg_at_k(ranked, "a", 10) == 1.0
    assert ndcg_at_k(ranked, "b", 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(ranked, "z", 10) == 0.0
    m = evaluate({"u1": ranked, "u2": ["q"]}, {"u1": "b", "u2": "x", "u3": "y"}, 10)
    assert m["hr@10"] == pytest.approx(1 / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3)) / 3)


def test_interaction_matrix_is_binary_with_fixed_item_index():
    X, users, items = interaction_matrix([("u1", "a"), ("u1", "a"), ("u2", "c")], items=["a", "b", "c"])
    assert users == ["u1", "u2"] and items == ["a", "b", "c"]
    assert X.toarray().tolist() == [[1, 0, 0], [0, 0, 1]]
