"""Item-kNN (aura/models/itemknn.py) is the cosine of item columns with a zero diagonal."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from aura.models.itemknn import ItemKNN


def tiny() -> sparse.csr_matrix:
    rng = np.random.default_rng(3)
    return sparse.csr_matrix((rng.random((12, 6)) < 0.45).astype(np.float32))


def test_item_knn_is_cosine_of_item_columns_with_zero_diagonal():
    X = tiny()
    model = ItemKNN(neighbours=10).fit(X)
    D = X.toarray().astype(np.float64)
    norms = np.linalg.norm(D, axis=0)
    norms[norms == 0] = 1
    cos = (D.T @ D) / np.outer(norms, norms)
    np.fill_diagonal(cos, 0)
    np.testing.assert_allclose(model.S.toarray(), cos, atol=1e-9)
    np.testing.assert_allclose(model.scores(X[:2]), D[:2] @ cos, atol=1e-9)
