"""Item-kNN: cosine similarity between item columns, the top neighbours kept per item."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from aura.models.base import NeighbourModel


class ItemKNN(NeighbourModel):
    """Cosine item-item similarity, top-``neighbours`` kept per item; scores = X @ S."""

    kind = "item_knn"

    def fit(self, X: sparse.csr_matrix) -> ItemKNN:
        Xc = X.tocsc().astype(np.float64)
        norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        Xn = Xc @ sparse.diags(1.0 / norms)
        S = (Xn.T @ Xn).toarray()
        np.fill_diagonal(S, 0.0)
        n = S.shape[0]
        k = min(self.neighbours, max(n - 1, 1))
        idx = np.argpartition(-S, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(n), k)
        vals = np.take_along_axis(S, idx, axis=1).ravel()
        self.S = sparse.csr_matrix((vals, (rows, idx.ravel())), shape=(n, n))
        return self
