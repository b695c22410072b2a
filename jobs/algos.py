"""Offline evaluation of recommenders (pure numpy/scipy): leave-last-out and time-window splits, HR@k,
NDCG@k and catalog coverage, the interaction matrix and top-k recommendations of a batch model for every
user.

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


# ------------------------------------------------------------------- time-window evaluation


def time_split(interactions: Iterable[tuple[str, str, int]], train_from: int, train_to: int,
               eval_to: int) -> tuple[list[tuple[str, str, int]], dict[str, set[str]]]:
    """Train on [train_from, train_to); hold out, per user seen in training, the items they interacted
    with in [train_to, eval_to) that they had not interacted with in training (what a recommender
    trained at ``train_to`` should have proposed)."""
    train = [(u, i, t) for u, i, t in interactions if train_from <= t < train_to]
    seen: dict[str, set[str]] = {}
    for u, i, _t in train:
        seen.setdefault(u, set()).add(i)
    held: dict[str, set[str]] = {}
    for u, i, t in interactions:
        if train_to <= t < eval_to and u in seen and i not in seen[u]:
            held.setdefault(u, set()).add(i)
    return train, held


def evaluate_sets(recs: dict[str, Sequence[str]], held: dict[str, set[str]], n_items: int,
                  k: int = 10) -> dict[str, float]:
    """Mean HR@k (any held-out item in the top k), NDCG@k (binary relevance, ideal = min(|held|, k)
    hits at the top) over the users of ``held``, and coverage: the share of the ``n_items`` catalog
    recommended to anyone in the top k."""
    hr, nd, shown = [], [], set()
    for u, items in held.items():
        top = list(recs.get(u, []))[:k]
        shown.update(top)
        gains = [1.0 / math.log2(r + 2) for r, i in enumerate(top) if i in items]
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(items), k)))
        hr.append(1.0 if gains else 0.0)
        nd.append(sum(gains) / ideal if ideal else 0.0)
    return {f"hr@{k}": float(np.mean(hr)) if hr else 0.0, f"ndcg@{k}": float(np.mean(nd)) if nd else 0.0,
            f"coverage@{k}": len(shown) / n_items if n_items else 0.0, "users": float(len(hr))}
