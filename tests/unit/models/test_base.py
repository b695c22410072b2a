"""Top-k selection of the batch models (aura/models/base.py)."""

from __future__ import annotations

import numpy as np

from aura.models.base import top_k


def test_top_k_orders_descending_and_never_returns_excluded():
    s = np.array([[0.1, 0.9, 0.5, 0.7]])
    assert top_k(s, 2).tolist() == [[1, 3]]
    assert top_k(s, 2, exclude=np.array([[False, True, False, False]])).tolist() == [[3, 2]]
