"""EASE, the item-item linear model the batch job trains (jobs/ease.py) and the registry serves.

Embarrassingly Shallow Autoencoder (Steck 2019): ``B = I - P diagMat(1 / diag(P))`` with
``P = (X'X + lambda I)^-1`` and a zero diagonal; a user's scores are ``x @ B``.
"""

from __future__ import annotations

import io

import numpy as np
from scipy import sparse

from aura.models.base import BatchModel, top_k


class EASE(BatchModel):
    """``B`` (items x items, float32) and the item id of each row/column (``ids``, set by the job)."""

    kind = "ease"

    def __init__(self, lam: float = 500.0) -> None:
        self.lam = lam
        self.B = np.zeros((0, 0), dtype=np.float32)
        self.ids: list[str] = []  # item id of each row/column (set by the job)

    @staticmethod
    def gram(X: sparse.csr_matrix) -> np.ndarray:
        Xf = X.astype(np.float64)
        return np.asarray((Xf.T @ Xf).toarray())

    def fit(self, X: sparse.csr_matrix | None = None, G: np.ndarray | None = None) -> EASE:
        G = self.gram(X) if G is None else G.copy()
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.B = B.astype(np.float32)
        return self

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        return np.asarray(X_users.astype(np.float32) @ self.B)

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        idx = top_k(self.B, k)
        return [[(int(j), float(self.B[r, j])) for j in idx[r] if self.B[r, j] > 0] for r in range(self.B.shape[0])]

    def _state(self) -> dict[str, np.ndarray]:
        return {"B": self.B, "lam": np.array([self.lam]), "ids": np.array(self.ids, dtype=str)}

    @classmethod
    def from_bytes(cls, data: bytes) -> EASE:
        z = np.load(io.BytesIO(data))
        m = cls(float(z["lam"][0]))
        m.B = z["B"]
        m.ids = [str(x) for x in z["ids"]] if "ids" in z else []
        return m
