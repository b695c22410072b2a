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


def test_time_split_holds_out_later_new_items_of_known_users():
    from jobs.algos import time_split

    rows = [("a", "i1", 10), ("a", "i2", 20), ("b", "i1", 15), ("a", "i3", 35), ("a", "i1", 36),
            ("c", "i4", 40), ("b", "i5", 99), ("a", "i9", 5)]
    train, held = time_split(rows, 10, 30, 60)
    assert sorted(train) == [("a", "i1", 10), ("a", "i2", 20), ("b", "i1", 15)]
    assert held == {"a": {"i3"}}  # i1 already seen; c unknown in training; b's i5 after the window


def test_evaluate_sets_hr_ndcg_coverage():
    import math

    import pytest

    from jobs.algos import evaluate_sets

    recs = {"a": ["x", "i3", "y"], "b": ["z", "x"], "c": ["i7", "i8"]}
    held = {"a": {"i3"}, "b": {"q"}, "c": {"i7", "i8", "i9"}}
    m = evaluate_sets(recs, held, n_items=10, k=10)
    ideal_c = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["hr@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 0 + (1 + 1 / math.log2(3)) / ideal_c) / 3)
    assert m["coverage@10"] == pytest.approx(6 / 10) and m["users"] == 3


def test_train_job_builds_only_trainable_types_with_known_configuration():
    import pytest

    from jobs.train import TrainError, build

    assert build("item_knn", {"neighbours": 5}).neighbours == 5
    assert build("ease", {"lambda": 10}).lam == 10
    for kind, cfg in [("online_mf", {}), ("ease", {"k": 1}), ("popularity", {"x": 1})]:
        with pytest.raises(TrainError):
            build(kind, cfg)
