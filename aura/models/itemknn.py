"""Item-kNN: cosine similarity between item columns, the top neighbours kept per item."""

from __future__ import annotations

import io

import numpy as np
from scipy import sparse

from aura.models.base import BatchModel


class ItemKNN(BatchModel):
    """Cosine item-item similarity, top-``neighbours`` kept per item; scores = X @ S."""

    kind = "item_knn"

    def __init__(self, neighbours: int = 100) -> None:
        self.neighbours = neighbours
        self.S = sparse.csr_matrix((0, 0))

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

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        return (X_users.astype(np.float64) @ self.S).toarray()

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        out = []
        for r in range(self.S.shape[0]):
            row = self.S.getrow(r)
            pairs = sorted(zip(row.indices.tolist(), row.data.tolist(), strict=True), key=lambda t: -t[1])
            out.append([(j, s) for j, s in pairs[:k] if s > 0])
        return out

    def _state(self) -> dict[str, np.ndarray]:
        S = self.S.tocsr()
        return {"data": S.data, "indices": S.indices, "indptr": S.indptr, "shape": np.array(S.shape),
                "neighbours": np.array([self.neighbours])}

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemKNN:
        z = np.load(io.BytesIO(data))
        m = cls(int(z["neighbours"][0]))
        m.S = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return m
