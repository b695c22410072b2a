"""The online MF learner (aura/models/mf.py): it learns (its progressive validation error falls), keeps
every item vector as its factor matrix grows, and its compiled batch of steps equals one numpy step
per negative, in order."""

from __future__ import annotations

import numpy as np

from aura.models.mf import OnlineMF, _init_vector


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


def reference_steps(V, users, positives, draws, dim, lr, reg):
    """One numpy BPR step per negative, in order (what the compiled loop must equal)."""
    shrink = 1.0 - lr * reg
    index: dict[str, int] = {}
    for p, (user, item, weight) in enumerate(positives):
        i = index.setdefault(item, len(index))
        n = len(index)
        if n < 2:
            continue
        u = users[user]
        for k in range(draws.shape[1]):
            j = int(draws[p, k] * n)
            if j == i:
                continue
            vi, vj = V[i].copy(), V[j].copy()
            diff = vi - vj
            x = float(u.astype(np.float64) @ diff[:dim].astype(np.float64)) + float(diff[dim])
            g = weight / (1.0 + np.exp(min(x, 30.0)))
            V[i, :dim] = vi[:dim] * shrink + u * (lr * g)
            V[j, :dim] = vj[:dim] * shrink - u * (lr * g)
            V[i, dim] = vi[dim] + lr * (g - reg * vi[dim])
            V[j, dim] = vj[dim] + lr * (-g - reg * vj[dim])
            users[user] = u = u + lr * (diff[:dim] * g - u * reg)


def test_the_compiled_steps_equal_one_numpy_step_per_negative_in_order():
    rng = np.random.default_rng(5)
    positives = [(f"u{rng.integers(6)}", f"i{rng.integers(30)}", float(rng.choice([1.0, 2.0]))) for _ in range(400)]
    m = OnlineMF(dim=8, lr=0.05, reg=0.01, n_neg=2, seed=3)
    items = list(dict.fromkeys(i for _, i, _ in positives))  # first-seen order: the rows the learner gives
    start_users = {u: m.user_vector(u).astype(np.float64) for u, _, _ in positives}
    errors = m.learn_many(positives)
    # the same draws, replayed by the reference from the same starting factors
    draws = np.random.default_rng(3).random((len(positives), 2))
    V = np.zeros((len(items), 9))
    for r, item in enumerate(items):
        V[r, :8] = _init_vector(item, 8, 0.1)
    users = dict(start_users)
    reference_steps(V, users, positives, draws, 8, 0.05, 0.01)
    assert np.allclose(m.V[: len(items)], V, atol=1e-4)
    assert all(np.allclose(m.users[u], users[u], atol=1e-4) for u in users)
    assert len(errors) == len(positives) and m.pv_n == 2 * (len(positives) - 1) and m.pv_err == sum(errors)
