"""Popularity: how many users interacted with each item; the batch baseline every model must beat."""

from __future__ import annotations

import io

import numpy as np
from scipy import sparse

from aura.models.base import BatchModel


class Popularity(BatchModel):
    kind = "popularity"

    def __init__(self) -> None:
        self.counts = np.zeros(0)

    def fit(self, X: sparse.csr_matrix) -> Popularity:
        self.counts = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
        return self

    def scores(self, X_users: sparse.csr_matrix) -> np.ndarray:
        return np.tile(self.counts, (X_users.shape[0], 1))

    def item_neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        """No item-item notion: every item's list is empty (the user lists carry the model)."""
        return [[] for _ in range(len(self.counts))]

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    @classmethod
    def from_bytes(cls, data: bytes) -> Popularity:
        m = cls()
        m.counts = np.load(io.BytesIO(data))["counts"]
        return m
