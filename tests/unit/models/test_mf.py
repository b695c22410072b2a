"""The online MF learner (aura/models/mf.py): it learns (its progressive validation error falls) and keeps
every item vector as its factor matrix grows."""

from __future__ import annotations

import numpy as np

from aura.models.mf import OnlineMF


def test_online_mf_progressive_validation_error_falls_on_structured_data():
    rng = np.random.default_rng(0)
    m = OnlineMF(dim=8, lr=0.05, seed=0)
    groups = {g: [f"g{g}i{k}" for k in range(10)] for g in range(4)}
    for it in (i for g in groups.values() for i in g):
        m.item_row(it)
    errors = []
    for _epoch in range(6):
        m.pv_n = m.pv_err = 0
        for _ in range(800):
            u = int(rng.integers(40))
            m.learn_one(f"u{u}", groups[u % 4][int(rng.integers(10))])
        errors.append(m.pv_error)
    assert errors[-1] < errors[0] - 0.2, errors
    top = [i for i, _ in m.top("u1", 5)]
    assert sum(i.startswith("g1") for i in top) >= 4


def test_online_mf_set_item_past_its_capacity_keeps_every_vector():
    # set_item grows the factor matrix before writing the row: loading the published item factors
    # crosses every power of two
    mf = OnlineMF(dim=4)
    vectors = {f"i{k}": np.full(5, k, dtype=np.float32) for k in range(40)}
    for item, vec in vectors.items():
        mf.set_item(item, vec)
    assert all(np.array_equal(mf.V[mf.index[item]], vec) for item, vec in vectors.items())
