"""Batch ALS and BPR (implicit's kernels, numpy fold-in): they learn block structure, the ALS fold-in of
a training user's row reproduces the user factors the fit learnt, and progress is reported."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from aura.models.base import top_k
from aura.models.factors import ALS, BPR


def blocks(seed: int = 3) -> sparse.csr_matrix:
    """Two groups of 40 users x 20 items; each user took half of their group's items."""
    rng = np.random.default_rng(seed)
    X = np.zeros((80, 40), dtype=np.float32)
    for u in range(80):
        base = 0 if u < 40 else 20
        X[u, base + rng.choice(20, 10, replace=False)] = 1.0
    return sparse.csr_matrix(X)


def in_group_share(model, X: sparse.csr_matrix) -> float:
    idx = top_k(model.scores(X), 5, exclude=X.toarray() > 0)
    hits = [(j < 20) == (u < 40) for u in range(X.shape[0]) for j in idx[u]]
    return float(np.mean(hits))


def test_als_and_bpr_recommend_within_the_group() -> None:
    X = blocks()
    ticks: list[tuple[int, int]] = []
    als = ALS(factors=8, iterations=8, regularization=0.1).fit(X, progress=lambda n, t: ticks.append((n, t)))
    assert ticks[-1] == (8, 8) and len(ticks) == 8
    assert in_group_share(als, X) > 0.95
    bpr = BPR(factors=8, iterations=80, learning_rate=0.05).fit(X)
    assert in_group_share(bpr, X) > 0.8
    n = als.item_neighbours(5)
    same = [(j < 20) == (i < 20) for i, lst in enumerate(n) for j, _s in lst]
    assert len(same) >= 100 and np.mean(same) > 0.75  # chance: 0.49


def test_als_fold_in_is_the_fit_users_least_squares_step() -> None:
    X = blocks(5)
    als = ALS(factors=6, iterations=10, regularization=0.1, alpha=5.0)
    als.fit(X)
    # one more half-step on the fitted item factors: the fold-in is exactly the ALS user update
    V = als.V.astype(np.float64)
    row = X[3]
    items = row.indices
    A = V.T @ V + 5.0 * V[items].T @ V[items] + 0.1 * np.eye(6)
    want = np.linalg.solve(A, 6.0 * V[items].sum(axis=0))
    assert np.allclose(als.user_factors(row)[0], want, atol=1e-4)
    assert np.allclose(als.user_factors(sparse.csr_matrix((1, 40), dtype=np.float32)), 0.0)
