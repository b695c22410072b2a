"""Offline evaluation of recommenders (pure numpy/scipy): leave-last-out splits, HR@k and NDCG@k, the
interaction matrix and top-k recommendations of a batch model for every user.

Used by the batch job (jobs/ease.py) and the benchmarks; the models themselves are in aura/models/.
``X`` is a users x items CSR matrix of implicit feedback (1 = interacted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

from aura.models.base import BatchModel, top_k

# --------------------------------------------------------------------------------- metrics


def hit_rate_at_k(ranked: Sequence[str], held_out: str, k: int = 10) -> float:
    """1 if the held-out item is in the first ``k`` recommendations."""
    return 1.0 if held_out in list(ranked[:k]) else 0.0


def ndcg_at_k(ranked: Sequence[str], held_out: str, k: int = 10) -> float:
    """``1 / log2(rank + 2)`` for the held-out item at 0-based ``rank`` < ``k`` (one relevant item)."""
    top = list(ranked[:k])
    if held_out not in top:
        return 0.0
    return 1.0 / math.log2(top.index(held_out) + 2)


def evaluate(recs: dict[str, Sequence[str]], held_out: dict[str, str], k: int = 10) -> dict[str, float]:
    """Mean HR@k and NDCG@k over the users of ``held_out`` (a user without recommendations scores 0)."""
    users = list(held_out)
    hr = [hit_rate_at_k(recs.get(u, []), held_out[u], k) for u in users]
    nd = [ndcg_at_k(recs.get(u, []), held_out[u], k) for u in users]
    return {f"hr@{k}": float(np.mean(hr)) if users else 0.0, f"ndcg@{k}": float(np.mean(nd)) if users else 0.0,
            "users": float(len(users))}


def leave_last_out(interactions: Iterable[tuple[str, str, int]]) -> tuple[list[tuple[str, str, int]], dict[str, str]]:
    """Per user, the chronologically last interaction is held out; ties on the timestamp keep the
    input order (the one listed last is "last", as RecBole's stable sort does)."""
    by_user: dict[str, list[tuple[int, int, str]]] = {}
    for k, (u, i, t) in enumerate(interactions):
        by_user.setdefault(u, []).append((t, k, i))
    train: list[tuple[str, str, int]] = []
    test: dict[str, str] = {}
    for u, evs in by_user.items():
        evs.sort()
        if len(evs) < 2:
            train += [(u, i, t) for t, _k, i in evs]
            continue
        test[u] = evs[-1][2]
        train += [(u, i, t) for t, _k, i in evs[:-1]]
    return train, test


def interaction_matrix(rows: Iterable[tuple[str, str]], users: list[str] | None = None,
                       items: list[str] | None = None) -> tuple[sparse.csr_matrix, list[str], list[str]]:
    """(user, item) pairs -> binary CSR matrix with its user and item id lists."""
    pairs = list(rows)
    users = users or sorted({u for u, _ in pairs})
    items = items or sorted({i for _, i in pairs})
    ui = {u: k for k, u in enumerate(users)}
    ii = {i: k for k, i in enumerate(items)}
    r = [ui[u] for u, i in pairs if u in ui and i in ii]
    c = [ii[i] for u, i in pairs if u in ui and i in ii]
    X = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(users), len(items)))
    X.data[:] = 1.0  # duplicates summed -> binary
    return X, users, items


def recommend_all(model: BatchModel, X: sparse.csr_matrix, k: int, block: int = 1024) -> np.ndarray:
    """Top-``k`` item indices for every user row of ``X``, excluding the row's interacted items."""
    out = []
    for start in range(0, X.shape[0], block):
        rows = X[start:start + block]
        s = model.scores(rows)
        out.append(top_k(s, k, exclude=rows.toarray() > 0))
    return np.vstack(out) if out else np.zeros((0, k), dtype=int)
