"""Popularity (aura/models/popularity.py) counts the users of each item."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from aura.models.popularity import Popularity


def tiny() -> sparse.csr_matrix:
    rng = np.random.default_rng(3)
    return sparse.csr_matrix((rng.random((12, 6)) < 0.45).astype(np.float32))


def test_popularity_counts_users_per_item():
    X = tiny()
    np.testing.assert_array_equal(Popularity().fit(X).counts, X.toarray().sum(axis=0))
