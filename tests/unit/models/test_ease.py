"""EASE (aura/models/ease.py) equals the direct per-column constrained least-squares solution."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from aura.models.ease import EASE


def tiny() -> sparse.csr_matrix:
    rng = np.random.default_rng(3)
    return sparse.csr_matrix((rng.random((12, 6)) < 0.45).astype(np.float32))


def test_ease_matches_the_direct_constrained_least_squares_solution():
    X = tiny().toarray().astype(np.float64)
    lam = 2.5
    model = EASE(lam).fit(sparse.csr_matrix(X))
    n = X.shape[1]
    for j in range(n):
        others = [k for k in range(n) if k != j]
        A = X[:, others]
        b = np.linalg.solve(A.T @ A + lam * np.eye(n - 1), A.T @ X[:, j])
        expected = np.zeros(n)
        expected[others] = b
        np.testing.assert_allclose(model.B[:, j], expected, rtol=1e-4, atol=1e-5)
    assert np.all(np.diag(model.B) == 0)
