"""What the batch recommenders share: a bytes round trip of their numpy state and top-k selection.

Every batch model (popularity, item-kNN, EASE, content similarity) has ``fit(X)`` over a users x items CSR matrix of
implicit feedback (1 = interacted), ``scores(rows)`` (users x items), ``item_neighbours(k)`` and
``to_bytes``/``from_bytes`` (the registry stores the bytes).
"""

from __future__ import annotations

import io
from typing import Self

import numpy as np
from scipy import sparse


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` best scores per row (descending), excluded entries never chosen."""
    s = np.array(scores, dtype=np.float64, copy=True)
    if s.ndim == 1:
        s = s[None, :]
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(k, s.shape[1])
    idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(s, idx, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(idx, order, axis=1)


class BatchModel:
    """The shared part of the batch models: state as named numpy arrays, saved compressed."""

    kind = "base"

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, **self._state())
        return buf.getvalue()

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError


class NeighbourModel(BatchModel):
    """A model that is a sparse item x item similarity ``S`` with its top ``neighbours`` per item
    (item-kNN, content similarity): a user's scores are ``x @ S``; saved as the CSR arrays of ``S``."""

    def __init__(self, neighbours: int = 100) -> None:
        self.neighbours = neighbours
        self.S = sparse.csr_matrix((0, 0))

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        return (X_users.astype(np.float64) @ self.S).toarray()

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        S = self.S.tocsr()
        out = []
        for r in range(S.shape[0]):
            lo, hi = S.indptr[r], S.indptr[r + 1]
            pairs = sorted(zip(S.indices[lo:hi].tolist(), S.data[lo:hi].tolist(), strict=True),
                           key=lambda t: -t[1])
            out.append([(j, s) for j, s in pairs[:k] if s > 0])
        return out

    def _state(self) -> dict[str, np.ndarray]:
        S = self.S.tocsr()
        return {"data": S.data, "indices": S.indices, "indptr": S.indptr, "shape": np.array(S.shape),
                "neighbours": np.array([self.neighbours])}

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        z = np.load(io.BytesIO(data))
        m = cls(int(z["neighbours"][0]))
        m.S = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return m
