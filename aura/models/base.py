"""What the batch recommenders share: a bytes round trip of their numpy state and top-k selection.

Every batch model (popularity, item-kNN, EASE) has ``fit(X)`` over a users x items CSR matrix of
implicit feedback (1 = interacted), ``scores(rows)`` (users x items), ``item_neighbours(k)`` and
``to_bytes``/``from_bytes`` (the registry stores the bytes).
"""

from __future__ import annotations

import io

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
